"""The offline extractor: deterministic rules, no network. The default when no model is configured.

Rules for English, Spanish, German and French; tuned on the dev half of tests/data/conversations only.

- goal: the first user message that says what they want (greetings, "can you help me?" and other
  content-free sentences left out); later questions and meta-remarks ("let's change the approach") never
  replace it. A change ("actually …", "instead of …", "en fait", "eigentlich", "en realidad") that talks
  about the goal more than about a plan step replaces it with the new content, the earlier goal kept after it;
- plan: the latest numbered (or, in a reply that talks about steps/plans, bulleted) list of at least
  two items in an assistant reply;
- progress: steps the user reports done in any words ("that part's sorted", "✅ step 3", a past tense, "ya
  está", "ist erledigt", "c'est fait") or the assistant confirms, matched to plan steps by number or by
  words; a step reported undone ("rolled back", "had to pull them off again") leaves progress;
- summary: who said what, extractive: the informative sentences of every turn (names, numbers, dates,
  decisions score highest); past the bound the least informative go first, the opening request stays.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from django.conf import settings

from ..containment import OVERRIDE
from .base import Deadline, ExtractionResult, Extractor, PromptMessage, Usage

_GREETING = re.compile(
    r"^\s*(hi|hello|hey|hiya|good (morning|afternoon|evening)|thanks|thank you|hola|buenas( tardes| noches)?|"
    r"buenos d[ií]as|hallo|guten (tag|morgen|abend)|servus|bonjour|bonsoir|salut|coucou)\b[^,.!?\n]{0,20}[,.!]?\s*",
    re.IGNORECASE)
_REQUEST = re.compile(
    r"\b(i\s*(want|need|would like|'d like|am trying|'m trying|have to|must|wanna|plan)|help me|can you|could you|"
    r"would you|please|how (do|can|should) i|i'm looking|looking to|we need|my goal|goal is|trying to|"
    r"i'?m planning|i am planning|we'?re (moving|migrating|planning|getting|thinking)|i'?m (moving|thinking|"
    r"organising|organizing|retiling)|quiero|necesito|me gustar[ií]a|ich (will|m[oö]chte|muss|brauche)|wir (wollen|"
    r"m[uü]ssen|brauchen)|je (veux|voudrais|dois|cherche)|nous (voulons|devons|cherchons|d[eé]m[eé]nageons))\b",
    re.IGNORECASE,
)
_CONSTRAINT = re.compile(r"\b(budget|deadline|due|must|has to|have to|needs to|within|by (monday|tuesday|"
                         r"wednesday|thursday|friday|saturday|sunday|the end)|presupuesto|plazo|frist|budget)\b",
                         re.IGNORECASE)
_GOAL_CHANGE = re.compile(
    r"\b(actually|instead|change of plans?|scratch that|new goal|forget (that|the)|changed my mind|rather than|"
    r"i'?d rather|we'?d rather|en realidad|mejor|en (lugar|vez) de|cambio de planes|eigentlich|lieber|statt|"
    r"stattdessen|en fait|finalement|plut[oô]t|au lieu de)\b",
    re.IGNORECASE)
# Words that only talk about the conversation itself ("let's change the approach", "can you help me plan?").
_META = frozenset(re.findall(r"\S+", """actually instead change changed plan plans planning approach rethink idea
help start think let lets wait hmm ok okay well question organise organize organised organized get going go sure maybe
process where what how why which rather scratch forget mind new goal something anything things thing way
ayuda ayudas ayudar organizar plan empezar hilfe helfen planen plan anfangen aide aider organiser plan commencer
"""))
_LIST_ITEM = re.compile(r"^\s*(?:(?:step\s*)?(\d{1,2})[.):]|[-*•])\s+(.+?)\s*$", re.IGNORECASE)
_PLAN_CUE = re.compile(r"\b(plan|steps?|here'?s how|we'?ll|let'?s|approach|roadmap|first|then|next|checklist|"
                       r"pasos|plan|vorschlag|schritte|so würde|étapes|voici|plan)\b", re.IGNORECASE)
_DONE = re.compile(
    r"(✅|✔|☑|\b(done|finished|completed?|did|wrapped up|ticked off|sorted|worked|works now|is working|are working|"
    r"set up|installed|fixed|merged|deployed|sent|booked|submitted|passed|checked off|covered|handled|settled|"
    r"in place|live|ready|signed off|up and running|went out|is out|are out|is up|is in|are in|went through|"
    r"came through|checks out|on there|running|works|active|activated|enabled|healthy|approved|accepted|arrived|"
    r"delivered|landed|published|released|pointing|propagated|resolved|perfect|looks (good|great|right)|spot on|"
    r"qued[oó]|quedaron|lleg[oó]|llegaron|angekommen|geliefert|freigegeben|arriv[eé]e?s?|livr[eé]e?s?|"
    r"is on the|'s on the|are on the|points? (at|to)|yesterday|last night|ayer|anoche|gestern|hier soir|"
    r"taken care of|squared away|knocked out|crossed off|nailed|locked in|good to go|all set|sorted out|out of the way|"
    r"behind us|ticked|check(ed)? that off|matches|lines up|adds up|that covers|abgehakt|unter dach und fach|"
    r"im kasten|abgeschlossen|resuelt[oa]s?|"
    r"solucionad[oa]s?|tachad[oa]s?|va bien|boucl[eé]e?s?|valid[eé]e?s?|fini[es]?|"
    r"funciona|funcionan|l[äa]uft|laufen|klappt|funktioniert|zeigt|ist durch|sind durch|"
    r"(ist|sind)\b[\w ]{0,15}\braus|marche|fonctionne|"
    r"hecho|listo|lista|listos|listas|terminad[oa]s?|ya|he |hemos |est[aá] (hech|list|firmad)|"
    r"erledigt|fertig|geschafft|ist raus|steht|stehen|habe|haben|ist drin|sind drin|"
    r"fait|termin[eé]e?s?|c'est bon|r[eé]gl[eé]|j'ai|on a|nous avons|est pr[eê]te?)\b)",
    re.IGNORECASE)
# A user reporting an action in the past tense ("I exported everything", "beds are built", "firmé", "gebucht").
_PAST = re.compile(r"\b([a-z]{3,}ed|built|bought|wrote|written|took|taken|made|got|went|ran|sent|set|put|did|paid|"
                   r"found|chose|chosen|picked|began|begun|drew|drawn|grabbed|signed|came|given|frozen|spoken|driven|"
                   r"sold|hung|laid|dug|held|kept|met|rode|shot|shut|spent|stood|taught|threw|won|fed|fought|flew|"
                   r"froze|grew|led|brought|caught|dealt|fell|gave|broke|drove|seen|shown|taken|thrown|"
                   r"written|broken|torn|"
                   r"hice|hizo|hicimos|puse|pusimos|tuve|tuvimos|fuimos|vino|vinieron|escrit[oa]s?|puest[oa]s?|"
                   r"abiert[oa]s?|vist[oa]s?|"
                   r"[a-záéíóú]{3,}(?:ado|ada|ados|adas|ido|ida|idos|idas)|[a-z]{3,}(?:é|í|ó)|"
                   r"(?:auf|ein|an|ab|aus|zu|vor|mit|nach|um|weg|durch|fest|hoch|los|zur[üu]ck|weiter)?ge[a-zäöüß]{3,}(?:t|en)|"
                   r"(?:be|ver|er|ent|zer|emp|miss|[üu]ber|unter)[a-zäöüß]{3,}(?:t|en)|[a-zäöü]{3,}iert|"
                   r"[a-záéíóú]{3,}(?:aron|ieron)|[a-zàâçéèêëîïôûù]{3,}(?:é|ée|és|ées)|"
                   r"(?:est|sont|ai|as|a|avons|avez|ont) [a-zàâçéèêëîïôûù]{2,}(?:i|is|it|its|ite|ites|u|us|ue|ues))\b",
                   re.IGNORECASE)
# Words that only say a step is done, whatever the step ("it's running", "that part's sorted"): left out when
# finding which step a clause talks about ("the site's running" is not about "Keep Netlify running").
_STATE_ONLY = re.compile(r"\b(done|finished|completed?|wrapped up|ticked off|checked off|sorted|working|works( now)?|"
                         r"running|in place|live|ready|up and running|handled|settled|covered|checks out|active|"
                         r"healthy|green)\b", re.IGNORECASE)
# An assistant's advice, not a confirmation: a condition, or a clause that opens on what it is about.
_ADVICE = re.compile(r"\b(when|whenever|if|unless|until)\b|^\s*(for|to|cuando|si|para|wenn|falls|für|um|quand|pour)\b",
                     re.IGNORECASE)
# A choice made ("we settled on 'Ramen Profitable'", "me quedo con Shopify"): a plan step that asks to choose,
# pick or decide is done by it, even when the choice itself shares no word with the step.
_DECIDED = re.compile(r"\b(settled on|going with|went with|decided|chose|picked|opted for|go with|"
                      r"it'?s our [\w ]+ then|me quedo con|nos quedamos con|elegimos|eleg[ií]|decidimos|decid[ií]|"
                      r"wir nehmen|ich nehme|"
                      r"entschieden|on (a choisi|prend)|nous avons choisi|j'ai choisi|on part sur)\b", re.IGNORECASE)
_CHOICE_STEP = re.compile(r"^\W*(choose|pick|decide|select|agree|settle|elegir|escoger|decidir|seleccionar|choisir|"
                          r"d[ée]cider|s[ée]lectionner|w[äa]hlen|ausw[äa]hlen|entscheiden|festlegen)\b", re.IGNORECASE)
# A report that names no step but points back at what was just discussed ("that part's sorted", "das ist erledigt").
_ANAPHOR = re.compile(r"^\W*(that|this|it|those|these|eso|esto|eso ya|das|dies|es|ça|c'est|cela)\b|\b(that|this) "
                      r"(part|bit|one|step)\b", re.IGNORECASE)
# A state that holds since some time ("TTL has been at 300 since yesterday"): what a step set up.
_SINCE = re.compile(r"\b(has|have)\s+been\b.*\bsince\b|\bdesde\b|\bseit\b|\bdepuis\b", re.IGNORECASE)
_NOT_DONE = re.compile(
    r"\b(on hold|blocked|waiting|pending|in progress|currently|still \w+ing|gerade|warte|wartet|en curso|pendiente|"
    r"en cours|en attente|tomorrow|next week|later today|ma[ñn]ana|la semana que viene|la pr[oó]xima "
    r"semana|morgen|n[äa]chste woche|demain|la semaine prochaine|not|n't|yet to|still need|still chasing|haven't|"
    r"hasn't|once|after you|when you|if you|before|will|going to|"
    r"next|should|let me know|can't|cannot|failed|fails|error|skip|skipped|skipping|forgot|forget|trouble|"
    r"todav[ií]a no|a[uú]n no|no he|falta|noch nicht|nicht|kein|pas encore|pas|reste|il reste)\b",
    re.IGNORECASE)
_UNDONE = re.compile(r"\b(rolled back|roll(ed)? it back|auto-rolled back|reverted|undid|undone|isn't done after all|"
                     r"not done after all|(pull|pulled|take|took|tear|tore|rip|ripped) [\w ]{0,20}(off|out|down) "
                     r"again|had to redo|back to (square one|0%|zero))", re.IGNORECASE)
_STEP_REF = re.compile(r"\b(?:steps?|pasos?|schritte?|[ée]tapes?)\s+(\d{1,2})(?:\s*(?:-|–|to|through)\s*(\d{1,2}))?"
                       r"((?:\s*(?:,|and|&|y|und|et)\s*\d{1,2})*)", re.IGNORECASE)
_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
             "ninth": 9, "tenth": 10}
_ORDINAL_REF = re.compile(r"\b(" + "|".join(_ORDINALS) + r")\s+(?:step|one|item|task)\b", re.IGNORECASE)
_ALL_DONE = re.compile(r"\b(all|every)\s+(the\s+)?steps?\b.*\b(done|finished|complete)", re.IGNORECASE)
_STOP = frozenset(re.split(r"\s+", """a an the to of for and or in on at by with from into my our your this that it
is are be was were i
we you me us do did done finish finished finishing complete completed step steps now just also so then have has
had been all up out as its it's i've we've i'm please ok okay great thanks there here too yes got get
el la los las un una unos unas de del al y o en con por para mi mis tu su sus que es ya lo le se he ha
der die das den dem des ein eine einen einem einer und oder im mit von zu zum zur fur auf ich wir ist sind habe
haben schon jetzt auch beim vom am ins
le les une des du et ou dans avec pour sur je nous mon ma mes est sont ai a on c'est bon fait""".strip()))
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_MARKDOWN = re.compile(r"\*\*|__|[*`#>]+|(?<!\w)_|_(?!\w)")
_NUMBERISH = re.compile(r"\d")
_DECISION = re.compile(
    r"\b(decided|decision|going with|went with|chose|choose|agreed|approved|refunded|refund|opened|booked|signed|"
    r"confirmed|scheduled|will|won't|instead|fixed|found|because|cause|root cause|workaround|credit|deadline|"
    r"budget|decidimos|vamos a|elegimos|he emitido|reservado|entschieden|gebucht|bestätigt|nehmen|décidé|choisi|"
    r"réservé|on part|remboursé|prévu)\b", re.IGNORECASE)
_FILLER = re.compile(r"^(good|great|nice|perfect|excellent|sure|ok|okay|thanks|thank you|cool|sounds good|got it|"
                     r"fine|noted|bien|perfecto|gracias|gut|prima|super|danke|parfait|merci|d'accord|très bien|"
                     r"brilliant|lovely|fun|wonderful|makes sense|good call|smart|will do|fingers crossed|"
                     r"happy to help|of course|congratulations|enhorabuena|claro|gern|gerne|avec plaisir|bien s[uû]r)"
                     r"\b[^.!?]{0,25}[.!?]?$", re.IGNORECASE)


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in text if not unicodedata.combining(c))


def _words(text: str) -> set[str]:
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


def _overlap(a: set[str], b: set[str]) -> int:
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
]
_CANONICAL: dict[str, str] = {}


def _stems(text: str) -> set[str]:
    return {_stem(w) for w in _words(text)}


for _group in _SAME:
    for _word in _group.split():
        for _key in (_stem(w) for w in _words(_word)):
            _CANONICAL.setdefault(_key, "=" + _group.split()[0])


def _clean(text: str) -> str:
    return " ".join(_MARKDOWN.sub("", text.replace("\u2019", "'")).split())


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(_clean(text)) if s.strip()]


def _content(sentence: str) -> set[str]:
    """The words of a sentence that say something beyond the conversation itself."""
    return {w for w in _words(sentence) if w not in _META and not w.isdigit() or len(w) > 2 and w.isdigit()}


def _goal_from(text: str) -> str | None:
    """What a user message asks for: its first sentences that carry content (questions only as a last resort)."""
    sentences = _sentences(_GREETING.sub("", _clean(text)))
    kept = [s for s in sentences if len(_content(s)) >= 2 and not s.endswith("?")]
    if not kept:
        kept = [s for s in sentences if len(_content(s)) >= 3]
    if not kept:
        return None
    # A request sentence with the sentence before it (the context) or after it (a constraint).
    first = next((i for i, s in enumerate(kept) if _REQUEST.search(s)), 0)
    goal = kept[first]
    if first > 0 and len(goal) < 120:
        goal = kept[first - 1] + " " + goal
    elif first + 1 < len(kept) and len(goal) < 120 and (len(kept[first + 1]) < 90
                                                        or _CONSTRAINT.search(kept[first + 1])):
        goal += " " + kept[first + 1]
    return goal.strip()[: settings.SESSIONCTX_MAX_GOAL_CHARS]


def _changed_goal(text: str, goal: str, plan: list[str]) -> str | None:
    """The new goal when a user message changes it, else None (a question, a meta-remark, a plan detail)."""
    if not _GOAL_CHANGE.search(text):
        return None
    statements = [s for s in _sentences(_GREETING.sub("", _clean(text))) if not s.endswith("?")]
    change = [s for s in statements if _GOAL_CHANGE.search(s) and len(_content(s)) >= 3]
    if not change:
        return None
    said = _stems(" ".join(change))
    about_goal = len(said & _stems(goal))
    about_plan = max((len(said & _stems(step)) for step in plan), default=0)
    if about_goal == 0 or about_plan >= about_goal:
        return None  # it changes a step ("Porto instead of the Sintra day trip"), not what the user wants
    new = " ".join(change)
    new = re.sub(r"^\W*(hmm+|wait|ok(ay)?|so|well|oh)\W+", "", new, flags=re.IGNORECASE)
    new = re.sub(r"^\W*(actually|change of plans?|scratch that|en realidad|eigentlich|en fait|finalement)\W+", "", new,
                 flags=re.IGNORECASE)
    earlier = goal.split(" (earlier: ", 1)[0]
    return f"{new[:1].upper()}{new[1:]} (earlier: {earlier})"[: settings.SESSIONCTX_MAX_GOAL_CHARS]


def _plan_from(text: str) -> list[str] | None:
    """The last list of two or more steps in an assistant reply, or None."""
    lists: list[tuple[bool, list[str]]] = []
    current: list[str] = []
    numbered = False
    for line in text.splitlines():
        match = _LIST_ITEM.match(line)
        if match:
            if not current:
                numbered = match.group(1) is not None
            current.append(match.group(2))
        elif line.strip() and current and line.startswith((" ", "\t")):
            continue  # an indented detail under an item
        elif line.strip() and current:
            lists.append((numbered, current))
            current = []
    if current:
        lists.append((numbered, current))
    cue = bool(_PLAN_CUE.search(text))
    candidates = [items for is_numbered, items in lists if len(items) >= 2 and (is_numbered or cue)]
    if not candidates:
        return None
    steps = []
    for item in max(candidates, key=len) if len(candidates) > 1 else candidates[0]:
        step = _clean(item)
        step = re.sub(r"^\s*step\s*\d+\s*[:.)-]\s*", "", step, flags=re.IGNORECASE)
        steps.append(step[: settings.SESSIONCTX_MAX_STEP_CHARS])
    return steps[: settings.SESSIONCTX_MAX_PLAN_STEPS]


def _clauses(text: str) -> list[str]:
    """Statements (questions left out), split where a sentence joins two ("…, so step 3 is done")."""
    clauses = []
    for sentence in re.split(r"(?<=[.!?])\s+|\n", text):  # "iOS 6.2" is one sentence
        if not sentence.strip() or sentence.strip().endswith("?"):
            continue
        parts = re.split(r";|\bbut\b|\bthough\b|\bpero\b|\baber\b|\bmais\b|"
                         r",\s+(?=(?:so|and|then|now|which|y|und|et)\b)|\s+(?=✅)", sentence)
        clauses.extend(p.strip(" .!") for p in parts if p.strip(" .!"))
    return clauses


def _match_step(phrase: str, plan: list[str], done: list[str] = ()) -> str | None:
    """The plan step a phrase talks about; on a tie, one not done yet."""
    words = _stems(phrase)
    if not words:
        return None
    best, best_score = None, (0.0, 0, False)
    scores = []
    for step in plan:
        step_words = _stems(step)
        if not step_words:
            continue
        overlap = _overlap(words, step_words)
        score = (overlap / min(len(step_words), 4), overlap, step not in done)
        scores.append(score)
        if overlap and score > best_score:
            best, best_score = step, score
    if best_score[2] and scores.count(best_score) > 1:
        return None  # as close to two steps not done yet ("the first four weeks" of four "Weeks …" steps): unsure
    return best if best_score[0] >= 0.25 else None


def _referenced(clause: str, plan: list[str]) -> list[str] | None:
    """Steps a clause names by number ("step 2", "steps 1-3", "the third step"), or None if it names none."""
    numbers: list[int] = []
    for m in _STEP_REF.finditer(clause):
        start = int(m.group(1))
        end = int(m.group(2)) if m.group(2) else start
        numbers.extend(range(start, end + 1))
        numbers.extend(int(n) for n in re.findall(r"\d{1,2}", m.group(3) or ""))
    numbers.extend(_ORDINALS[m.group(1).lower()] for m in _ORDINAL_REF.finditer(clause))
    return [plan[n - 1] for n in numbers if 1 <= n <= len(plan)] if numbers else None


# "without errors" says it went well: not the negation _NOT_DONE looks for.
_NO_TROUBLE = re.compile(r"\b(without|with no|no|sin|ohne|sans)\s+(any\s+)?(errors?|problems?|issues?|trouble|"
                         r"errores|problemas?|fehler|probleme?|erreurs?|probl[eè]mes?)\b", re.IGNORECASE)


def _reports_done(clause: str, role: str) -> bool:
    clause = _NO_TROUBLE.sub(" ", clause)
    done = (_DONE.search(clause) or (role == "user" and (_PAST.search(clause) or _SINCE.search(clause)))
            or role == "user" and re.search(r"\b(is|are)\s+(now\s+|all\s+)?[a-z]{3,}ed\b", clause, re.IGNORECASE))
    return bool(done) and not _NOT_DONE.search(clause)


def _progress_from(text: str, role: str, plan: list[str], progress: list[str],
                   focus: str | None = None) -> tuple[list[str], list[str]]:
    """Plan steps that this message reports as done, and those it reports undone; `focus` is the step the
    assistant talked about last, which a bare "that part's sorted" reports."""
    found: list[str] = []
    undone: list[str] = []
    if _ALL_DONE.search(text) and not re.search(r"\bnot\b|n't", text):
        return list(plan), []
    if role == "assistant":  # the steps of a plan it lays out are not reports of them
        text = "\n".join(line for line in text.splitlines() if not _LIST_ITEM.match(line))
    for clause in _clauses(_clean(text)):
        if role == "user" and _UNDONE.search(clause):
            # Matched without the words that undo it ("rolled back" is not about "Back up the database").
            steps = _referenced(clause, plan) or [s for s in [_match_step(_UNDONE.sub(" ", clause), plan)] if s]
            undone.extend(steps)
            continue
        if role == "user" and _DECIDED.search(clause) and not _NOT_DONE.search(clause):
            choices = [step for step in plan if _CHOICE_STEP.match(step) and step not in progress + found]
            if choices:
                found.append(_match_step(clause, choices) or choices[0])
        if not _reports_done(clause, role):
            continue
        if role == "assistant" and not re.search(r"\b(is|are|now|has been|have been|marked|as|so|covers|then)\b",
                                                 clause, re.IGNORECASE):
            continue  # the assistant confirms ("step 2 is done"), it does not narrate instructions
        if role == "assistant" and _ADVICE.search(clause):
            continue  # "for metrics, export a counter and alert when a key is throttled": how to, not done
        steps = _referenced(clause, plan)
        if steps is not None:
            found.extend(steps)
            continue
        # "New cert issued and it's live on the load balancer": each part may report a step of its own.
        parts = [clause, *(p for p in re.split(r",\s+|\s+(?:and|y|und|et)\s+", clause) if not _NOT_DONE.search(p))]
        matched = False
        for part in parts:
            step = _match_step(_STATE_ONLY.sub(" ", part), plan, progress + found)
            if step is not None and step not in found:
                found.append(step)
            matched = matched or step is not None
        if (not matched and role == "user" and focus and focus not in progress + found
                and _ANAPHOR.search(clause)):
            found.append(focus)
    return found, undone


def _focus(units: list[tuple[str, str]], plan: list[str], progress: list[str]) -> str | None:
    """The step not done yet that the assistant's last words (in the summary) were about, if any."""
    for label, sentence in reversed(units):
        if label == "User":
            return None
        if label == "Assistant":
            steps = _referenced(sentence, plan) or [
                s for part in (sentence, *re.split(r"[,;:]\s+", sentence)) for s in [_match_step(part, plan, progress)]
                if s]
            open_steps = [step for step in steps if step not in progress]
            if open_steps:
                return open_steps[0]
    return None


def _carried(progress: list[str], plan: list[str]) -> list[str]:
    """Done steps that a revised plan still holds (reworded a little, or as they were)."""
    carried = []
    for done in progress:
        words = _stems(done)
        best = max(plan, key=lambda step: len(words & _stems(step)) / max(len(words | _stems(step)), 1))
        if best not in carried and len(words & _stems(best)) / max(len(words | _stems(best)), 1) >= 0.6:
            carried.append(best)
    return carried


def _weight(sentence: str) -> float:
    """How much a summary sentence tells: names, numbers, identifiers and decisions count most."""
    body = sentence
    tokens = body.split()
    score = 2.0 * sum(1 for t in tokens if _NUMBERISH.search(t))
    score += sum(1.0 for t in tokens[1:] if t[:1].isupper())
    score += 1.5 * len(_DECISION.findall(body))
    return score + 0.1 * len(_words(body))


def _bound_summary(units: list[tuple[str, str]], limit: int) -> str:
    """Render; past the limit drop the least informative sentence after the first (the request stays)."""
    units = list(units)
    while len(units) > 2 and len(_render(units)) > limit:
        weakest = min(range(1, len(units)), key=lambda i: (_weight(units[i][1]), i))
        del units[weakest]
    text = _render(units)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _render(units: list[tuple[str, str]]) -> str:
    """Sentences grouped by who said them: "User: … Assistant: …"."""
    out: list[str] = []
    last = None
    for label, sentence in units:
        if label == "Plan":
            out.append(sentence)
            last = None
            continue
        out.append(f"{label}: {sentence}" if label != last else sentence)
        last = label
    return " ".join(out)


def _parse_summary(summary: str) -> list[tuple[str, str]]:
    """A summary this extractor wrote, back into (who, sentence) units."""
    units: list[tuple[str, str]] = []
    label = "User"
    for sentence in re.split(r"(?<=[.!?…])\s+", summary.strip()):
        if not sentence:
            continue
        match = re.match(r"^(User|Assistant): ", sentence)
        if match:
            label, sentence = match.group(1), sentence[match.end():]
        elif sentence.startswith("Assistant proposed a plan: "):
            units.append(("Plan", sentence))
            label = "Assistant"
            continue
        units.append((label, sentence))
    return units


def _summary_units(text: str, role: str, proposed: list[str] | None) -> list[tuple[str, str]]:
    """A message's informative sentences (greetings, fillers, content-free questions left out)."""
    label = "User" if role == "user" else "Assistant"
    units = []
    if proposed:
        # A reply that lays out steps: say what it proposed, and keep what it said around the list.
        units.append(("Plan", "Assistant proposed a plan: " + "; ".join(proposed)[:300].rstrip(";") + "."))
        text = "\n".join(line for line in text.splitlines() if not _LIST_ITEM.match(line))
    for sentence in _sentences(_GREETING.sub("", _clean(text))):
        if (_FILLER.match(sentence) or not _words(sentence) or sentence.endswith(":")
                or sentence.endswith("?") and _weight(sentence) < 2):
            continue
        sentence = sentence if len(sentence) <= 240 else sentence[:239].rstrip() + "…"
        units.append((label, sentence + ("" if sentence[-1] in ".!?…" else ".")))
    return units


def _without_overrides(text: str) -> str:
    """The message without its sentences that give instructions to the extractor (containment.py): they are
    neither a goal nor a fact worth keeping in a summary that agents put in their prompts."""
    if not OVERRIDE.search(text):
        return text
    return "\n".join(" ".join(s for s in re.split(r"(?<=[.!?])\s+", line) if not OVERRIDE.search(s))
                     for line in text.splitlines())


class OfflineExtractor(Extractor):
    name = "offline"
    model = "offline"

    def extract(self, *, previous: dict[str, Any], mode: str, messages: list[PromptMessage],
                deadline: Deadline | None = None) -> ExtractionResult:
        goal = previous.get("goal", "") or ""
        plan = list(previous.get("plan", []) or [])
        progress = list(previous.get("progress", []) or [])
        summary = _parse_summary(previous.get("summary", "") or "")
        for message in messages:
            text = _without_overrides(message.content)
            if message.role == "user":
                # The first message that says what the user wants sets the goal; later ones only change it.
                goal = (_changed_goal(text, goal, plan) or goal) if goal else (_goal_from(text) or "")
            proposed: list[str] | None = None
            if message.role == "assistant":
                new_plan = _plan_from(text)
                if new_plan and new_plan != plan:
                    progress = _carried(progress, new_plan)
                    plan = proposed = new_plan
            if message.role in ("user", "assistant") and plan:
                focus = _focus(summary, plan, progress) if message.role == "user" else None
                done, undone = _progress_from(text, message.role, plan, progress, focus)
                progress = [step for step in progress if step not in undone]
                progress += [step for step in dict.fromkeys(done) if step not in progress and step not in undone]
            if message.role in ("user", "assistant"):
                if proposed:  # a revised plan replaces the one proposed before
                    summary = [u for u in summary if u[0] != "Plan"]
                summary += _summary_units(text, message.role, proposed)
        snapshot: dict[str, Any] = {"summary": _bound_summary(summary, settings.SESSIONCTX_SUMMARY_CHARS)}
        if mode == "planning":
            snapshot.update(goal=goal, plan=plan, progress=progress)
        return ExtractionResult(snapshot=snapshot, usage=Usage(prompt_chars=sum(len(m.content) for m in messages)))
