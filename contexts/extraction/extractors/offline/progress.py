"""Progress: the plan steps a message reports done (in any words) or undone."""

from __future__ import annotations

import re

from .plan import LIST_ITEM
from .text import clean, overlap_count, split_sentences, stems

_DONE = re.compile(
    r"(✅|✔|☑|\b(done|finished|completed?|did|wrapped up|ticked off|sorted|worked|works now|is working|are working|"
    r"set up|installed|fixed|merged|deployed|sent|booked|submitted|passed|checked off|covered|handled|settled|"
    r"in place|live|ready|signed off|up and running|went out|is out|are out|is up|is in|are in|went through|"
    r"came through|checks out|on there|running|works|active|activated|enabled|healthy|green|gr[üu]n|verde|approved|"
    r"accepted|arrived|"
    r"delivered|landed|published|released|pointing|propagated|resolved|perfect|looks (good|great|right)|spot on|"
    r"qued[oó]|quedaron|lleg[oó]|llegaron|angekommen|geliefert|freigegeben|arriv[ée]e?s?|livr[ée]e?s?|"
    r"is on the|'s on the|are on the|points? (at|to)|yesterday|last night|ayer|anoche|gestern|hier soir|"
    r"taken care of|squared away|knocked out|crossed off|nailed|locked in|good to go|all set|sorted out|out of the way|"
    r"behind us|ticked|check(ed)? that off|matches|lines up|adds up|that covers|abgehakt|unter dach und fach|"
    r"im kasten|abgeschlossen|resuelt[oa]s?|"
    r"solucionad[oa]s?|tachad[oa]s?|va bien|boucl[eé]e?s?|valid[eé]e?s?|fini[es]?|"
    r"funciona|funcionan|l[äa]uft|laufen|klappt|funktioniert|zeigt|ist durch|sind durch|"
    r"(ist|sind)\b[\w ]{0,15}\braus|marche|fonctionne|"
    r"hech[oa]s?|listo|lista|listos|listas|terminad[oa]s?|ya|"
    r"(he|hemos|ha|han) [a-záéíóúñ]{2,}(ado|ada|ados|adas|ido|ida|idos|idas|to|ta|tos|tas|cho|cha)|"
    r"est[aá] (hech|list|firmad)|"
    r"erledigt|fertig|geschafft|ist raus|steht|stehen|habe|haben|ist drin|sind drin|"
    r"(?<!au )fait|termin[eé]e?s?|c'est bon|r[eé]gl[eé]|j'ai|on a|nous avons|est pr[eê]te?)\b)",
    re.IGNORECASE)


# A user reporting an action in the past tense ("I exported everything", "beds are built", "firmé", "gebucht").
_PAST = re.compile(r"\b([a-z]{3,}ed|built|bought|wrote|written|took|taken|made|got|went|ran|sent|set|put|did|paid|"
                   r"found|chose|chosen|picked|began|begun|drew|drawn|grabbed|signed|came|given|frozen|spoken|driven|"
                   r"sold|spoke|hung|laid|dug|held|kept|met|rode|shot|shut|spent|stood|taught|threw|won|fed|fought|flew|"
                   r"froze|grew|led|brought|caught|dealt|fell|gave|broke|drove|seen|shown|taken|thrown|"
                   r"written|broken|torn|read|"
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
                         r"healthy|green|erledigt|fertig|abgeschlossen|l[äa]uft|hech[oa]s?|list[oa]s?|terminad[oa]s?|"
                         r"fait|fini[es]?|termin[ée]e?s?)\b", re.IGNORECASE)


# An assistant's advice, not a confirmation: a condition, or a clause that opens on what it is about.
_ADVICE = re.compile(r"\b(when|whenever|while|if|unless|until|as soon as|once|sobald|en cuanto|una vez que|d[èe]s que|"
                     r"lorsque)\b|"
                     r"^\s*(for|to|cuando|si|para|wenn|falls|für|um|quand|pour)\b", re.IGNORECASE)


# A choice made ("we settled on 'Ramen Profitable'", "me quedo con Shopify"): a plan step that asks to choose,
# pick or decide is done by it, even when the choice itself shares no word with the step.
_DECIDED = re.compile(r"\b(settled on|going with|went with|gone with|decided|chose|picked|opted for|go with|"
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
# Some of a step's parts, not all: "31 of the 38 orders", "6 anuncios redactados de los 10".
_SOME_OF = r"\d+ ([\w-]+ ){0,3}(of|out of|von|de|sur) (the |los |las |den |les )?\d+"
# All but some: "everyone has paid except Elena and Marta", "todas menos dos".
_ALL_BUT = r"except|all but|(todas|todos) menos|excepto|salvo|au[ßs]er|bis auf|sauf"
_NOT_DONE = re.compile(
    r"\b(on hold|blocked|waiting|pending|in progress|currently|still \w+ing|gerade|warte|wartet|en curso|pendiente|"
    r"en cours|en attente|tomorrow|next week|later today|ma[ñn]ana|la semana que viene|la pr[oó]xima "
    r"semana|morgen|n[äa]chste woche|demain|la semaine prochaine|not|\w*n't|yet to|still need|still chasing|haven't|"
    r"hasn't|once|after you|when you|if you|before|will|'ll|going to|no longer|"
    r"next|should|let me know|can't|cannot|failed|fails|error|skip|skipped|skipping|forgot|forget|trouble|"
    r"todav[ií]a no|a[uú]n no|no he|falta|noch nicht|nicht|kein|pas encore|pas|reste|il reste|"
    # an obligation still ahead ("tengo que presentar una reclamación"), a step half done or partly missing
    r"have to|has to|need to|needs to|tengo que|tenemos que|hay que|muss|m[üu]ssen|il faut|je dois|on doit|"
    r"half|halfway|partly|partially|mostly|almost|nearly|halb|teilweise|a medias|casi|[àa] moiti[ée]|presque|"
    r"started|starting|begun|began|angefangen|begonnen|empezado|empec[ée]|comenzado|commenc[ée]|"
    r"'d have|would have|could have|h[äa]tten?|habr[ií]a|aurai(t|ent)|"
    r"en partie|missing|fehlen|fehlt|faltan|manque|(one|two|a) thirds?|" + _SOME_OF + r"|"
    # what comes next ("ready for insulation"), what is under way ("we're collecting it"), all but some
    r"ready (for|to)|listos? para|bereit f[üu]r|pr[eê]te?s? (pour|[àa])|(i'?m|we'?re|i am|we are) \w+ing|"
    r"apart from|" + _ALL_BUT + r"|"
    # a condition not met yet ("until the railings are on"), an attempt, what was meant to happen
    r"until|bis (dahin|zum|zur|die|der|das)|hasta que|jusqu'[àa]|jusqu'[àa] ce que|"
    r"considering|thinking about|[üu]berleg\w*|denk\w* (noch )?dr[üu]ber nach|pensando|r[ée]fl[ée]chi\w*|"
    r"tried to|trying to|attempted|versucht|essay[ée]|intent[ée]|intentado|supposed to|was going to|sollte|"
    # for now: what is under way ("de momento he escrito el MERGE …", "der Job zieht vorerst noch das alte Image")
    r"for now|vorerst|por ahora|de momento|por el momento|pour l'instant|pour le moment|"
    # a future tense ("on le fera une autre année", "lo haremos en junio", "ich werde es einreichen")
    r"werde|werden|wird|fera|ferai|ferons|feront|sera|serai|serons|seront|aura|aurai|aurons|auront|ira|irai|"
    r"irons|iront|[a-z]{3,}(?:erai|erons|eront)|(on|il|elle|[çc]a) (le |la |les |l')?[a-zéèê]{3,}era|"
    r"[a-z]{2,}(?:ar|er|ir)(?:é|á|emos|án)|har[ée]|haremos|har[áa]n|"
    r"erst (wenn|nachdem)|(kann|k[öo]nnen) (ich|wir) erst|after that|from then on|danach|despu[eé]s de eso|"
    r"apr[eè]s [çc]a|(in|within) (a|two|three|\d+) (days?|weeks?|months?)|in (zwei|drei|\d+) (tagen|wochen)|"
    r"en (dos|tres|\d+) (d[ií]as|semanas)|dans (deux|trois|\d+) (jours|semaines))\b",
    re.IGNORECASE)


_UNDONE = re.compile(r"\b(rolled back|roll(ed)? it back|auto-rolled back|reverted|undid|undone|isn't done after all|"
                     r"not done after all|(pull|pulled|take|took|tear|tore|rip|ripped) [\w ]{0,20}(off|out|down) "
                     r"again|(taken|took|pulled|ripped|torn|tore|had to take) [\w ]{0,20}back (out|off|down)|"
                     r"(switched|turned|flipped|put) [\w ]{0,20}(back )?off again|disabled (it|them) again|"
                     r"had to redo|back to (square one|0%|zero)|(switched|turned|put|flipped) [\w ]{0,20}back on|"
                     r"re-?enabled|wieder (eingeschaltet|aktiviert|angeschaltet)|zur[üu]ckgerollt|zur[üu]ckgesetzt|"
                     r"revertido|reactivad[oa]|deshecho|r[ée]activ[ée]e?|annul[ée]e?|remis en place)", re.IGNORECASE)


# The words of an undoing alone ("I've taken the whole heater back out" is about the heater).
_UNDO_WORDS = re.compile(r"\b(rolled|roll|back|out|off|down|again|taken|took|take|pulled|pull|ripped|rip|torn|tore|"
                         r"tear|switched|turned|put|flipped|on)\b", re.IGNORECASE)


# A recap item ("- Tables, chairs and gazebos: sorted, with 10 trestle tables …"): where a step stands.
_RECAP_ITEM = re.compile(r"^\s*(?:\d{1,2}[.)]|[-*•])\s+([^:]{3,80}):\s*(?:✅|✔|(?:done|sorted|booked|confirmed|"
                         r"finished|complete|in place|paid|sent|signed|hecho|listo|erledigt|fertig|fait|"
                         r"termin[ée]e?)\b)",
                         re.IGNORECASE)


# A step left out on purpose ("I skipped that", "so no dog flight", "nos saltamos la encuesta"): not done.
_SKIPPED = re.compile(r"\b(skip|skipped|skipping|ended up not|decided against|no need for|not doing|"
                      r"didn'?t (even )?need to|did not need to|no need to|wasn'?t needed|not needed|nicht n[öo]tig|"
                      r"(don'?t|do not|doesn'?t|does not) need (our|my|a|an|to)|"
                      r"no hizo falta|pas eu besoin|pas besoin|"
                      r"so no|salt[eé]|saltamos|saltado|nos saltamos|sin hacer|[üu]bersprungen|lassen wir|weggelassen|"
                      r"saut[ée]|on saute|laiss[ée] tomber|parked|on ice|aparcad[oa]|zur[üu]ckgestellt|"
                      r"mis de c[ôo]t[ée])\b", re.IGNORECASE)


# What is still left of a step just reported ("Still hunting for nights 4 and 5", "die an die Rentner fehlen noch").
_REMAINS = re.compile(r"\b(still|stuck|the rest|remaining|left to do|(aren'?t|isn'?t|are not|is not) (\w+ ){0,2}"
                      r"(done|finished|ready|sorted|in)|waiting|esperamos|esperando|warten|attendons|"
                      r"fehlen noch|fehlt noch|noch offen|todav[ií]a|"
                      r"faltan?|quedan|encore|il manque|il reste|i'll|we'll|not yet|haven'?t|hasn'?t|half|"
                      r"noch nicht|a[uú]n no|pas encore)\b", re.IGNORECASE)


# A step said to be partly done, or not needed after all.
_PARTLY = re.compile(r"\b(half|halfway|partly|partially|mostly|almost|nearly|halb|teilweise|a medias|casi|"
                     + _ALL_BUT + r"|"
                     r"[àa] moiti[ée]|presque|en partie|(one|two|a) thirds?|" + _SOME_OF + r"|"
                     r"still|the rest|remaining|not yet|noch nicht|a[uú]n no|todav[ií]a no|pas encore)\b",
                     re.IGNORECASE)


_STEP_REF = re.compile(r"\b(?:steps?|pasos?|schritte?|[ée]tapes?)\s+(\d{1,2})(?:\s*(?:-|–|to|through)\s*(\d{1,2}))?"
                       r"((?:\s*(?:,|and|&|y|und|et)\s*\d{1,2})*)", re.IGNORECASE)


_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
             "ninth": 9, "tenth": 10}


_ORDINAL_REF = re.compile(r"\b(" + "|".join(_ORDINALS) + r")\s+(?:step|one|item|task)\b", re.IGNORECASE)
_ALL_DONE = re.compile(r"\b(all|every)\s+(the\s+)?steps?\b.*\b(done|finished|complete)", re.IGNORECASE)


def _clauses(text: str) -> list[str]:
    """Statements (questions left out), split where a sentence joins two ("…, so step 3 is done")."""
    clauses = []
    for sentence in split_sentences(text):  # "iOS 6.2" and "am 4. Oktober" are in one sentence
        if not sentence.strip() or sentence.strip().endswith("?"):
            continue
        parts = re.split(r";|\bbut\b|\bthough\b|\bpero\b|\baber\b|\bmais\b|"
                         r",\s+(?=(?:so|and|then|now|which|y|und|et|they|he|she)\b)|\s+(?=✅)", sentence)
        clauses.extend(p.strip(" .!") for p in parts if p.strip(" .!"))
    return clauses


def _match_step(phrase: str, plan: list[str], done: list[str] = ()) -> str | None:
    """The plan step a phrase talks about; on a tie, one not done yet."""
    words = stems(phrase)
    if not words:
        return None
    best, best_score = None, (0.0, 0, 0.0, False)
    scores = []
    for step in plan:
        step_words = stems(step)
        if not step_words:
            continue
        overlap = overlap_count(words, step_words)
        # two shared words of a short step over two of a long one ("la tabla de staging": "Crear una tabla de staging
        # en BigQuery", not "Hacer un MERGE de staging a la tabla final"); one shared word decides nothing
        share = overlap / len(step_words) if overlap > 1 else 0.0
        score = (overlap / min(len(step_words), 4), overlap, share, step not in done)
        scores.append(score)
        if overlap and score > best_score:
            best, best_score = step, score
    if best_score[3] and scores.count(best_score) > 1:
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


# A report that is only an arrival ("the desk arrived") and the steps it can do (those that get a thing); a report
# that is only a talk ("talked to the kids") and the steps it can do (those that talk to someone).
_ARRIVED = re.compile(r"\b(arrived|came( through| in)?|delivered|turned up|showed up|(is|are) here|found|"
                      r"gefunden|encontr[ée]|encontramos|trouv[ée]|"
                      r"lleg[oó]|llegaron|ha llegado|han llegado|angekommen|geliefert|gekommen|"
                      r"(est|sont) arriv[ée]e?s?|livr[ée]e?s?|re[çc]u)\b", re.IGNORECASE)
_GETS = re.compile(r"^\W*(get|buy|order|receive|obtain|request|apply|collect|source|pick up|find|book|hire|arrange|"
                   r"locate|choose|pick|select|search|look for|track down|suchen|aussuchen|finden|ausw[äa]hlen|buscar|"
                   r"encontrar|elegir|localizar|chercher|trouver|choisir|retrouver|"
                   r"have|kaufen|bestellen|besorgen|holen|beantragen|anfordern|comprar|pedir|conseguir|solicitar|"
                   r"encargar|recoger|acheter|commander|obtenir|demander|recevoir|r[ée]cup[ée]rer|faire venir)\b",
                   re.IGNORECASE)
_TALKED = re.compile(r"\b(talked|spoke|spoken|chatted|discussed|phoned|rang|texted|messaged|"
                     r"had (a |an |the )?([\w']+ ){0,2}(call|chat|meeting|coffee)|met( with)?|"
                     r"habl[ée]|hablamos|hablado|gesprochen|telefoniert|geredet|parl[ée]|discut[ée])\b", re.IGNORECASE)
_TALKS = re.compile(r"^\W*(talk|speak|ask|tell|discuss|call|phone|ring|contact|email|notify|inform|let|agree|check|"
                    r"confirm|meet|consult|interview|brief|hablar|preguntar|llamar|avisar|contactar|consultar|"
                    r"informar|confirmar|acordar|fragen|anrufen|sprechen|informieren|kontaktieren|kl[äa]ren|"
                    r"abstimmen|besprechen|demander|appeler|contacter|pr[ée]venir|informer|parler|confirmer)\b",
                    re.IGNORECASE)


# What an assistant says a step now is ("the dev backfill is verified", "the badges are updated"), not what a thing
# needs or is for ("is needed", "is based on").
_CONFIRMED = re.compile(r"\b(is|are|has been|have been)\s+(now\s+|all\s+|already\s+)?(?!(?:need|requir|bas|suppos|"
                        r"expect|call|nam|us|allow|locat|includ|limit|relat|design|intend|recommend|schedul|plann|"
                        r"determin|interest|concern|involv|consider|permitt|link|attach|charg|mention|agre)ed\b)"
                        r"[a-z]{3,}ed\b", re.IGNORECASE)


# When it happened ("had a trustees' meeting last night"): says it happened, not what happened.
_WHEN = re.compile(r"\b(yesterday|last night|this morning|today|on \w+day|ayer|anoche|esta ma[ñn]ana|hoy|gestern|"
                   r"heute( morgen)?|hier( soir)?|ce matin|aujourd'hui)\b", re.IGNORECASE)


def _reports_done(clause: str, role: str) -> bool:
    clause = _NO_TROUBLE.sub(" ", clause)
    done = (_DONE.search(clause) or (role == "user" and (_PAST.search(clause) or _SINCE.search(clause)))
            or _CONFIRMED.search(clause))
    return bool(done) and not _NOT_DONE.search(clause)


def progress_from(text: str, role: str, plan: list[str], progress: list[str],
                   focus: str | None = None) -> tuple[list[str], list[str]]:
    """Plan steps that this message reports as done, and those it reports undone; `focus` is the step the
    assistant talked about last, which a bare "that part's sorted" reports."""
    found: list[str] = []
    undone: list[str] = []
    if _ALL_DONE.search(text) and not re.search(r"\bnot\b|n't", text):
        return list(plan), []
    if role == "assistant":
        for line in text.splitlines():  # "- Test suite: done on the new version"
            recap = _RECAP_ITEM.match(re.sub(r"\*\*|__", "", line))
            step = recap and not _NOT_DONE.search(line) and _match_step(recap.group(1), plan, progress + found)
            if step and step not in found:
                found.append(step)
        # The steps of a plan it lays out are not reports of them.
        text = "\n".join(line for line in text.splitlines() if not LIST_ITEM.match(line))
    for clause in _clauses(clean(text)):
        if role == "user" and _SKIPPED.search(clause):
            steps = _referenced(clause, plan) or [s for s in [_match_step(_SKIPPED.sub(" ", clause), plan)] if s]
            if not steps and focus and _ANAPHOR.search(_SKIPPED.sub(" ", clause).strip()):
                steps = [focus]
            # "we've decided against a battery" is the decision "Decide on a battery" asks for, made
            decided = [step for step in steps if _CHOICE_STEP.match(step)]
            found.extend(decided)
            undone.extend(step for step in steps if step not in decided)
            continue
        if role == "user" and _UNDONE.search(clause):
            # Matched without the words that undo it ("rolled back" is not about "Back up the database").
            steps = _referenced(clause, plan) or [s for s in [_match_step(_UNDONE.sub(" ", clause), plan)
                                                              or _match_step(_UNDO_WORDS.sub(" ", clause), plan)] if s]
            undone.extend(steps)
            continue
        if role == "user" and _DECIDED.search(clause) and not _NOT_DONE.search(clause):
            choices = [step for step in plan if _CHOICE_STEP.match(step) and step not in progress + found]
            if choices:
                found.append(_match_step(clause, choices) or choices[0])
        if (found and _REMAINS.search(clause)
                and not _referenced(clause, plan) and _match_step(clause, plan) in (None, found[-1])):
            found.pop()  # the step just reported is only partly done ("Got the beds. Collar I'll get at the centre.")
            continue
        if not _reports_done(clause, role):
            if _PARTLY.search(clause):
                # Partly done ("tracking on 31 of the 38 orders") is not done, unless a later clause says it is
                # ("mostly pytz.timezone(…) … Replaced everything").
                partly = _referenced(clause, plan) or [s for s in [_match_step(clause, plan)] if s]
                found = [step for step in found if step not in partly]
            continue
        if role == "assistant" and not re.search(r"\b(is|are|now|has been|have been|marked|as|so|covers|then|"
                                                 r"est[aá]n?|ya|ist|sind|jetzt|bereits|d[ée]j[àa])\b",
                                                 clause, re.IGNORECASE):
            continue  # the assistant confirms ("step 2 is done"), it does not narrate instructions
        if role == "assistant" and _ADVICE.search(clause):
            continue  # "for metrics, export a counter and alert when a key is throttled": how to, not done
        steps = _referenced(clause, plan)
        if steps is not None:
            found.extend(steps)
            continue
        # "The desk arrived" does not set it up, "talked to the kids" does not enrol them: a report that is only an
        # arrival or a talk does only a step that gets a thing or talks to someone.
        candidates = plan
        for kind, steps_of_kind in ((_ARRIVED, _GETS), (_TALKED, _TALKS)):
            if kind.search(clause) and not _reports_done(_WHEN.sub(" ", kind.sub(" ", clause)), role):
                # the verb opens a step, or in German ends it ("Ärztliches Attest besorgen")
                candidates = [step for step in plan if steps_of_kind.match(step)
                              or steps_of_kind.match(step.split()[-1])]
        # "New cert issued and it's live on the load balancer": each part may report a step of its own.
        parts = [clause, *(p for p in re.split(r",\s+|\s+(?:and|y|und|et)\s+", clause) if not _NOT_DONE.search(p))]
        matched = False
        for part in parts:
            step = _match_step(_STATE_ONLY.sub(" ", part), candidates, progress + found)
            if step is not None and step not in found:
                found.append(step)
            matched = matched or step is not None
        if (not matched and role == "user" and focus and focus not in progress + found
                and _ANAPHOR.search(clause)):
            found.append(focus)
    return [step for step in found if step not in undone], undone


def focus_step(units: list[tuple[str, str]], plan: list[str], progress: list[str]) -> str | None:
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
