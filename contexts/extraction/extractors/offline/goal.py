"""The goal: what the user wants, and when a later message changes it."""

from __future__ import annotations

import re

from django.conf import settings

from .text import clean, split_sentences, stems, words

GREETING = re.compile(
    r"^\s*(hi|hello|hey|hiya|good (morning|afternoon|evening)|thanks|thank you|hola|buenas( tardes| noches)?|"
    r"buenos d[ií]as|hallo|guten (tag|morgen|abend)|servus|bonjour|bonsoir|salut|coucou)\b[^,.!?\n]{0,20}[,.!]?\s*",
    re.IGNORECASE)


_REQUEST = re.compile(
    r"\b(i\s*(want|need|would like|'d like|am trying|'m trying|have to|must|wanna|plan)|help me|can you|could you|"
    r"would you|please|how (do|can|should) i|i'm looking|looking to|we need|my goal|goal is|trying to|"
    r"i'?m planning|i am planning|we'?re (moving|migrating|planning|getting|thinking)|i'?m (moving|thinking|"
    r"organising|organizing|retiling)|quiero|necesito|me gustar[ií]a|ich (will|m[oö]chte|muss|brauche)|wir (wollen|"
    r"m[uü]ssen|brauchen)|je (veux|voudrais|dois|cherche)|nous (voulons|devons|cherchons|d[eé]m[eé]nageons)|"
    r"(asked|asking|told) (me|us) to|(i|we)'?d love to|wants|want us|me encantar[ií]a|ich w[üu]rde gern|j'aimerais)\b|"
    r"\b(goal|aim|objective|target|ziel|objetivo|objectif)\s*:",
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
# A sentence that opens on the change ("Actually, …", "Scratch that: …"); elsewhere a change word only changes the
# goal with a wish after it ("we'd never actually paid anything", "Geysir instead of the Blue Lagoon" do not).
_CHANGE_OPENS = re.compile(
    r"^\W*(actually|instead|change of plans?|scratch that|new goal|forget (that|the)|(i'?ve |we'?ve )?changed (my|our) "
    r"minds?|en realidad|cambio de planes|eigentlich|stattdessen|planwechsel|en fait|finalement|plut[oô]t)\b",
    re.IGNORECASE)
# A message that says outright the goal is no longer what it was; its wish that follows is the new goal.
_OUTRIGHT_CHANGE = re.compile(
    r"\b(change of (direction|plans?)|plan ?[äa]nderung|planwechsel|cambio de (planes|rumbo)|changement de (plan|cap)|"
    r"new goal|the (actual|real) (problem|goal|issue|question)|(i|we) (don't|do not|no longer) (\w+ ){0,2}care|"
    r"not interested any ?more|(ist|sind) (mir )?nicht mehr wichtig|ya no me importa|"
    r"scratch that|forget (that|the)|changed (my|our) minds?|neues ziel|nuevo objetivo|nouvel objectif)\b",
    re.IGNORECASE)
_TOLD = re.compile(r"\b(wants? us to|asked us to|told us to|(we|i) (should|must|need to)|wir sollen|ich soll|"
                   r"debemos|tenemos que|on doit|nous devons)\b", re.IGNORECASE)
_WISH = re.compile(r"\b(let'?s|we'll|i'll|we'd|i'd|rather|prefer|vamos a|prefiero|preferimos|lass uns|lieber|on va|"
                   r"je pr[ée]f[eè]re|on pr[ée]f[eè]re)\b", re.IGNORECASE)


# Words that only talk about the conversation itself ("let's change the approach", "can you help me plan?").
_META = frozenset(re.findall(r"\S+", """actually instead change changed plan plans planning approach rethink idea
help start think let lets wait hmm ok okay well question organise organize organised organized get going go sure maybe
process where what how why which rather scratch forget mind new goal something anything things thing way
ayuda ayudas ayudar organizar plan empezar hilfe helfen planen plan anfangen aide aider organiser plan commencer
"""))


def _content(sentence: str) -> set[str]:
    """The words of a sentence that say something beyond the conversation itself."""
    return {w for w in words(sentence) if w not in _META and not w.isdigit() or len(w) > 2 and w.isdigit()}


# What a goal sentence adds after its point: a reason, an alternative turned down, an aside, a list of details.
_ASIDE = re.compile(r"\s*\([^)]*\)|\s*;.*$|[,;]?\s+\b(rather than|instead of|because|since|so that|weil|damit|porque|"
                    r"ya que|en lugar de|parce que|puisque|au lieu de)\b.*$", re.IGNORECASE)
_LABEL = re.compile(r"^\W*(so,? )?((my|our|the|mein|unser|das|mi|nuestro|el|mon|notre|l')\s*)?(new |neues? |nuevo |"
                    r"nouvel |real |actual )?(goal|aim|objective|target|ziel|objetivo|objectif)"
                    r"(\s*:|\s+(is|ist|es|est)\b)\s*(to |that |de |d')?", re.IGNORECASE)
# A question that says what the user wants done: "How do I get the hold lifted?"
_HOW = re.compile(r"^\W*(so,? |and )?how (do|can|should|would) (i|we)( best)? |"
                  r"^\W*¿?c[oó]mo (puedo|podemos|hago para) |^\W*wie (kann|k[öo]nnen|bekomme|schaffe) (ich|wir) |"
                  r"^\W*comment (puis-je|je peux|faire pour|on peut) ", re.IGNORECASE)
_ABOUT_HELP = re.compile(r"\b(a plan|help|advice|steps|ayuda|consejo|hilfe|rat|aide|conseils?)\b", re.IGNORECASE)
# A request that points back at the sentence before ("I want to top it up"): that sentence says what "it" is.
_BACK = re.compile(r"\b(it|them|this|these|those)\b", re.IGNORECASE)


def _point(sentence: str) -> str:
    """A goal sentence without its asides: "I want to X (…) rather than Y" -> "I want to X"."""
    sentence = _LABEL.sub("", sentence)
    if re.search(r":\s+[^:]*,[^:]*,", sentence):  # "… from Manchester: me, my husband, our two kids"
        sentence = sentence.split(":", 1)[0]
    point = _ASIDE.sub("", sentence).strip(" ,;:")
    if re.search(r"\brather\b.*\bthan\b", point):  # "I'd rather have a small car than faff about with a van"
        point = point[: point.rindex(" than ")]
    return point if len(_content(point)) >= 2 else sentence


def goal_from(text: str) -> str | None:
    """What a user message asks for: its first sentences that carry content (questions only as a last resort)."""
    sentences = split_sentences(GREETING.sub("", clean(text)))
    kept = [s for s in sentences if len(_content(s)) >= 2 and not s.endswith("?")]
    if not kept:
        kept = [s for s in sentences if len(_content(s)) >= 3]
    if not kept:
        return None
    # A request sentence with the sentence before it (the context) or after it (a constraint).
    first = next((i for i, s in enumerate(kept) if _REQUEST.search(s)), None)
    asked = [_HOW.sub("", s).rstrip("?") for s in sentences if s.endswith("?") and _HOW.match(s)]
    asked = [a for a in asked if len(_content(a)) >= 2]
    if asked and (first is None or len(_content(kept[first])) < 5):
        return asked[0][:1].upper() + asked[0][1:]  # "… I need that money. How do I get the hold lifted?"
    if first is None:  # no request: the first sentence that says something ("urgent-ish." does not)
        first = next((i for i, s in enumerate(kept) if len(_content(s)) >= 3), 0)
    goal = _point(kept[first])
    if first > 0 and len(goal) < 120 and (_BACK.search(goal) or len(_content(goal)) < 4 or _ABOUT_HELP.search(goal)):
        before = _point(kept[first - 1])
        goal = before + ("" if before[-1:] in ".!" else ".") + " " + goal
    elif first == 0 and first + 1 < len(kept) and len(goal) < 120 and (len(kept[first + 1]) < 90
                                                        or _CONSTRAINT.search(kept[first + 1])):
        goal += " " + kept[first + 1]
    return goal.strip()[: settings.SESSIONCTX_MAX_GOAL_CHARS]


def _is_change(sentence: str) -> bool:
    """Whether a sentence with a change word changes the goal: it opens on the change, or wishes for something
    (after "actually", when that is the change word: "we'd never actually paid anything" wishes for nothing)."""
    if _CHANGE_OPENS.match(sentence):
        return True
    after = sentence[_GOAL_CHANGE.search(sentence).start():]
    wishing = after if after.lower().startswith("actually") else sentence
    return bool(_REQUEST.search(wishing) or _WISH.search(wishing))


# What opens a change before its content: "Hmm, actually, change of plans: …"
_OPENER = re.compile(r"^(\W*(hmm+|wait|ok(ay)?|so|well|oh|actually|change of (plans?|direction)|scratch that|sorry|"
                     r"en realidad|eigentlich|(kleine )?plan ?[äa]nderung|en fait|finalement)\b)+\W*", re.IGNORECASE)


def _new_goal(statements: list[str]) -> list[str] | None:
    """The sentences that state the new goal of a message that says outright that the goal changed ("Change of
    direction, sorry. … She wants us to apply to the council's grant instead"), else None."""
    start = next((i for i, s in enumerate(statements) if _OUTRIGHT_CHANGE.search(s)), None)
    if start is None:
        return None
    after = [s for s in statements[start:] if len(_content(_OPENER.sub("", _OUTRIGHT_CHANGE.sub(" ", s)))) >= 3]
    wishes = [s for s in after if _REQUEST.search(s) or _WISH.search(s) or _TOLD.search(s)]
    return wishes[:1] or after[:1] or None


def changed_goal(text: str, goal: str, plan: list[str]) -> str | None:
    """The new goal when a user message changes it, else None (a question, a meta-remark, a plan detail)."""
    statements = [s for s in split_sentences(GREETING.sub("", clean(text))) if not s.endswith("?")]
    # A goal said outright ("Goal is to get every client onto priceMoney …", "Unser Ziel ist …") is the goal now.
    change = [s for s in statements if _LABEL.match(s) and len(_content(_LABEL.sub("", s))) >= 3][:1] or None
    change = change or _new_goal(statements)
    if change is None:
        if not _GOAL_CHANGE.search(text):
            return None
        change = [s for s in statements if _GOAL_CHANGE.search(s) and len(_content(s)) >= 3 and _is_change(s)]
        if not change:
            return None
        said = stems(" ".join(change))
        about_goal = len(said & stems(goal))
        about_plan = max((len(said & stems(step)) for step in plan), default=0)
        if about_goal == 0 or about_plan >= about_goal:
            return None  # it changes a step ("Porto instead of the Sintra day trip"), not what the user wants
    new = " ".join(_point(sentence) for sentence in change)
    new = _OPENER.sub("", new)
    earlier = goal.split(" (earlier: ", 1)[0]
    return f"{new[:1].upper()}{new[1:]} (earlier: {earlier})"[: settings.SESSIONCTX_MAX_GOAL_CHARS]
