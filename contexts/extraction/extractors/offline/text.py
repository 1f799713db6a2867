"""Words and stems: what the goal, plan, progress and summary rules compare (the four languages)."""

from __future__ import annotations

import re
import unicodedata

_STOP = frozenset(re.split(r"\s+", """a an the to of for and or in on at by with from into my our your this that it
is are be was were i
we you me us do did done finish finished finishing complete completed step steps now just also so then have has
had been all up out as its it's i've we've i'm please ok okay great thanks there here too yes got get
they them their he him his she her who which each every some any if than but not no everyone everybody
everything todo todos toda todas alle tous toutes tout about
el la los las un una unos unas de del al y o en con por para mi mis tu su sus que es ya lo le se he ha
der die das den dem des ein eine einen einem einer und oder im mit von zu zum zur fur auf ich wir ist sind habe
haben schon jetzt auch beim vom am ins
le les une des du et ou dans avec pour sur je nous mon ma mes est sont ai a on c'est bon fait""".strip()))
# A sentence ends at . ! or ?, but not at a day of the month ("am 4. Oktober" stays one sentence; "Grade 3. Can you
# help?" is two).
_MONTH = r"(?:jan|feb|m[äa]r|apr|mai|may|jun|jul|aug|sep|o[ck]t|nov|de[zc])\w*"
_SENTENCE = re.compile(rf"(?<=[.!?])(?<!\b\d\.)(?<!\b\d\d\.)\s+|(?<=\b\d\.)\s+(?!{_MONTH})|"
                       rf"(?<=\b\d\d\.)\s+(?!{_MONTH})", re.IGNORECASE)
_MARKDOWN = re.compile(r"\*\*|__|[*`#>]+|(?<!\w)_|_(?!\w)")


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in text if not unicodedata.combining(c))


def words(text: str) -> set[str]:
    folded = _fold(text).replace("’", "'").replace("'s ", " ").replace("'", " ")
    return {w for w in re.findall(r"[a-z0-9ß]+", folded) if w not in _STOP and len(w) > 1}


def _stem(word: str) -> str:
    """A rough stem shared by a word's inflections in the four languages: its first five letters (after
    a plural or tense ending is cut), e.g. compare/comparison, install/installed, kündigen/Kündigung."""
    if len(word) >= 7 and word.endswith(("t", "en")):
        # German participles: gebucht / buchen, aufgepumpt / aufpumpen
        word = re.sub(r"^(auf|ein|an|ab|aus|zu|vor|mit|nach|um|weg)?ge(?=[a-zß]{3})", r"\1", word)
    for suffix in ("ing", "ed", "es", "en", "s", "t"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiousl":
        word = word[:-1]  # submitted -> submit
    if len(word) > 4 and word.endswith("e"):
        word = word[:-1]  # issue / issued -> issu
    return word[:5]


def overlap_count(a: set[str], b: set[str]) -> int:
    """Stems of `a` that `b` holds, or holds a longer or shorter form of (fotos / fotografiar, mics / micro)."""
    return sum(1 for x in a if x in b or any(min(len(x), len(y)) >= 3 and max(len(x), len(y)) >= 4
                                             and (x.startswith(y) or y.startswith(x))
                                             or _CANONICAL.get(x, x) == _CANONICAL.get(y, "") for y in b))


# Words that name the same thing in a plan step and in a report of it ("the DNS is pointing at the box now" for
# "Switch the A record to the new server"): each group is matched as one word.
_SAME = [
    "server box machine vps host instance droplet servidor",
    "database db datenbank",
    "certificate cert tls ssl zertifikat certificat certificado",
    "dns record nameserver nameservers",
    "buy bought order ordered purchase purchased kaufen gekauft bestellen bestellt comprar compré compramos "
    "acheter acheté",
    "book booked reserve reserved reservation buchen gebucht reservar reservé réserver réservé",
    "write wrote written draft drafted schreiben geschrieben escribir escrito écrire écrit rédiger rédigé",
    "remove removed delete deleted drop dropped decommission decommissioned retire retired löschen gelöscht "
    "eliminar eliminado supprimer supprimé",
    "deploy deployed ship shipped release released rollout launch launched",
    "test tested verify verified validate validated",
    "fix fixed patch patched repair repaired",
    "mic mics microphone microphones mikrofon micro micros micrófono",
    "repo repository repositories",
    "doc docs documentation",
    "email emails mail e-mail correo courriel",
    "quote quotes estimate estimates bid bids angebot angebote devis presupuesto",
    "move moved migrate migrated transfer transferred umziehen umzug migrar migrer",
    "pay paid payment bezahlen bezahlt pagar pagado payer payé",
    "photo photos picture pictures foto fotos bilder bild",
    "invite invites invitation invitations einladung einladungen invitación invitaciones invitations",
    "permission approval approved permit consent licence license genehmigung genehmigt erlaubnis permiso "
    "autorización aprobado autorisation autorisé",
]
_CANONICAL: dict[str, str] = {}


def stems(text: str) -> set[str]:
    return {_stem(w) for w in words(text)}


for _group in _SAME:
    for _word in _group.split():
        for _key in (_stem(w) for w in words(_word)):
            _CANONICAL.setdefault(_key, "=" + _group.split()[0])


def clean(text: str) -> str:
    return " ".join(_MARKDOWN.sub("", text.replace("\u2019", "'")).split())


# An ordinal after an article or preposition ("im 5. Semester", "der 3. Schritt") does not end a sentence either.
_ORDINAL_END = re.compile(r"\b(im|am|zum|vom|beim|ins|zur|der|den|dem|des|die|das|ab|bis|seit|nach|vor|jedes?|"
                          r"jeden|alle)\s\d{1,2}\.$", re.IGNORECASE)


def split_sentences(text: str) -> list[str]:
    sentences: list[str] = []
    for part in (s.strip() for s in _SENTENCE.split(clean(text))):
        if not part:
            continue
        if sentences and _ORDINAL_END.search(sentences[-1]):
            sentences[-1] += " " + part
        else:
            sentences.append(part)
    return sentences
