"""A deterministic crisis detector: phrase lists over normalised text, no model involved.

It runs on every incoming message before any model is called, so a person in crisis is answered
with crisis resources even when every engine is down. It is deliberately conservative: a clear
statement of intent, plan or abuse is a crisis; a negated one ("I would never hurt myself") or an
ambiguous one is `caution`; everyday idioms ("this homework is killing me") match nothing, because
every pattern names who would be harmed. English only; other languages need their own lists.

The text is normalised first (`normalise.py`), and framing cues (`framing.py`) turn a denied or
plainly past statement into caution. The result carries categories and counts, never the text, so
it is safe to log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from appliance.agents.framing import (
    ANSWERED_NO,
    CAPS_CLAUSE,
    NEGATION,
    NOT_NEGATION,
    framed,
    told_as_past,
)
from appliance.agents.normalise import STRETCHED, normalise
from appliance.agents.screen import compile_screen
from appliance.config.schema import CrisisCategory

Level = Literal["none", "caution", "crisis"]
_LEVELS: tuple[Level, ...] = ("none", "caution", "crisis")


@dataclass(frozen=True, slots=True)
class CrisisSignal:
    level: Level
    categories: tuple[CrisisCategory, ...] = ()

    @property
    def is_crisis(self) -> bool:
        return self.level == "crisis"

    def merge(self, other: CrisisSignal) -> CrisisSignal:
        level = max(self.level, other.level, key=_LEVELS.index)
        categories = tuple(dict.fromkeys((*self.categories, *other.categories)))
        return CrisisSignal(level, categories if level != "none" else ())


NO_SIGNAL = CrisisSignal("none")

# Phrase lists ------------------------------------------------------------------------------------

_SELF = r"(?:myself|my self|my own life|my life)"
_OTHER = (
    r"(?:him|her|them|you|someone|somebody|anyone|people|everyone|everybody|"
    r"my (?:\w+ )?(?:dad|father|mom|mum|mother|stepdad|stepmom|brother|sister|boss|teacher|"
    r"husband|wife|partner|boyfriend|girlfriend|ex|neighbou?r|classmates?|coworkers?|family|kids?|"
    r"son|daughter|baby))"
)
_ABUSER = (
    r"(?:he|she|they|dad|mum|mom|my (?:[\w']+ )?(?:dad|father|mom|mum|mother|stepdad|stepfather|stepmom|"
    r"stepmother|partner|boyfriend|girlfriend|husband|wife|ex|uncle|aunt|brother|sister|cousin|"
    r"grandpa|grandfather|grandad|teacher|coach|boss|carer|caregiver|priest|parents|son|"
    r"daughter|landlord|flatmate|roommate)|someone|a man|a woman)"
)
_INTENT = (
    r"(?:want to|going to|will|plan to|planning to|about to|need to|have to|decided to|"
    r"ready to|trying to|tried to|try to)"
)

_CRISIS: dict[CrisisCategory, tuple[str, ...]] = {
    "suicide": (
        rf"\b(?:kill|killing|killed|end|ending|ended|take|taking) {_SELF}\b",
        r"\bend it all\b",
        rf"\b{_INTENT} end (?:it|everything|things)\b(?! (?:with|between|here|there|for|now|early|today|on)\b)",
        r"\b(?:commit|committing|attempt|attempted|attempting) suicide\b",
        r"\bsuicidal\b",
        r"\bsuicide (?:plan|note|attempt|thoughts?)\b",
        r"\bthinking (?:about|of) suicide\b",
        r"\bunalive (?:myself|me)\b",
        r"\b(?:want|wanted|wanting|ready) to die\b",
        r"\bwish (?:i|that i) (?:was|were|had been) (?:dead|never born)\b",
        r"\bwish i could (?:die|disappear forever)\b",
        r"\b(?:hope|wish|want) (?:i|to) (?:do not|never|not) wake up\b",
        r"\b(?:please )?(?:do not|never) let me wake up\b",
        r"\bpray(?:ing|ed|s)? (?:\w+ )?(?:not to|i do not|to not|that i do not) (?:see|wake up|make it "
        r"to|get to) (?:tomorrow|the morning)\b",
        r"\b(?:want|wish|need) to not (?:be alive|exist|be here anymore)\b",
        r"\bmy life insurance (?:would|will|could) (?:\w+ )?(?:help|pay|sort|cover|set)\b",
        r"\blast \w+ (?:i will|i would|ill) ever (?:do|have|see|eat|make|drink|write)\b",
        r"\b(?:wrote|written|writing|finished) my last (?:note|letter|goodbye)s?\b",
        r"\bsend (?:everyone|my family|them|all of them|my friends) (?:a |my )?goodbyes?\b",
        r"\b(?:the |my )?ligature(?:'s| is| s)? (?:on|tied|ready|tight|up)\b",
        r"\bdid something (?:stupid|silly|bad|dumb) with (?:my|the|all my|all the) "
        r"(?:meds|pills|tablets|medication)\b",
        r"\b(?:sleep|go to sleep) and (?:never|not) wake up\b",
        r"\b(?:better off|be better) (?:dead|without me)\b",
        r"\bno (?:reason|point) (?:to|in) (?:live|living|being alive|going on|go on)\b",
        r"\bdo not want to (?:live|be alive|be here anymore|exist|wake up)\b",
        r"\bnever want to wake up\b",
        r"\b(?:not sure|do not know if|do not know whether) i want to (?:live|be alive|go on|be here)\b",
        r"\b(?:nobody|no one|noone) would (?:miss|notice|care if) (?:me|i)\b",
        r"\b(?:hang|hanging|shoot|drown|poison|overdose|od) (?:myself|on (?:my|pills))\b",
        r"\b(?:jump|jumping) (?:off|from|in front of) (?:a|the|my) (?:bridge|roof|building|train|"
        r"cliff|balcony)\b",
        r"\btake (?:all|a lot of|too many) (?:my |the |of my )?(?:pills|tablets|meds)\b",
        r"\b(?:saying|said|say) (?:my )?(?:final )?goodbyes? (?:for good|forever)\b",
        # Farewells and finality.
        r"\b(?:goodbye|bye) (?:forever|for good|for real|world|cruel world)\b",
        r"\b(?:suicide|goodbye|farewell) (?:note|letter|message|video)s?\b",
        r"\b(?:after|once|when) i am (?:dead|gone for good)\b",
        r"\bafter i am gone\b",
        r"\b(?:my|this is (?:my|the)) (?:last|final) (?:message|goodbye|words|letter)\b",
        r"\b(?:last|final) time (?:you will|you ll|anyone will) hear from me\b",
        r"\b(?:you|anyone|nobody|no one) will (?:never|not) hear from me (?:again|after)\b",
        r"\b(?:will not|am not going to|not going to) be (?:here|around|alive) (?:much longer|"
        r"for much longer|after tonight|"
        r"by (?:morning|tomorrow))\b",
        r"\b(?:will|would) be (?:dead|gone) (?:before|by) (?:morning|tomorrow|the weekend)\b",
        # Means: gathered, researched, at hand.
        r"\b(?:lethal|fatal|deadly) (?:dose|amount|overdose)\b",
        r"\bhow many (?:\w+ )?(?:pills|tablets|paracetamol|tylenol|painkillers|meds) "
        r"(?:would|does|will) (?:it take|kill|be enough)\b",
        r"\b(?:stockpil\w*|hoard\w*|saving up|saved up) (?:my |all my |the )?"
        r"(?:\w+ )?(?:pills|tablets|meds|medication|prescriptions?)\b",
        r"\b(?:painless|quickest|fastest|easiest|surest) (?:way|ways|method|methods) to "
        r"(?:die|go|end it)\b",
        r"\bnoose\b",
        r"\b(?:belt|rope|cord|cable|wire|ligature|noose)(?:'s| is)? (?:already |now )?(?:round|around) "
        r"my neck\b",
        rf"\b{_INTENT} (?:step|jump|throw myself|walk|lie down|run) (?:out )?in front of (?:a|the) "
        r"(?:\w+ )?(?:train|lorry|truck|bus|car|tube|express|tram)\b",
        r"\b(?:wrote|written|writing|write) my own (?:eulogy|obituary)\b",
        r"\b(?:signing|logging|checking) off (?:for good|forever|permanently|for the last time)\b",
        r"\bsee you on the other side\b(?! of)",
        r"\b(?:so )?(?:nobody|no one) (?:finds|will find|would find|can find) me\b",
        r"\bhow (?:much|many) (?:\w+ ){0,4}(?:would|will|to) stop my heart\b",
        r"\b(?:letters?|notes?|messages?|videos?|recordings?) (?:\w+ ){0,6}(?:for )?after$",
        r"\b(?:i am|i feel) (?:so )?(?:done|finished) with (?:life|living|being alive)\b",
        r"\bengine running\b",
        r"\bturned (?:on )?the gas (?:on )?and (?:i am )?(?:sitting|lying|waiting|closed)\b",
        # Acute danger: on the edge, over the rail.
        r"\bi am (?:standing |sitting |right )?(?:on|at) (?:the )?(?:edge|ledge) of (?:the |a |my )?"
        r"(?:roof|bridge|building|cliff|balcony|platform|car park|window|motorway|tracks)\b",
        r"\bi am (?:standing |sitting |right )?(?:on|at) the (?:platform|roof|cliff|bridge) edge\b",
        r"\bi am (?:\w+ )?(?:in|into) the (?:river|sea|lake|water|canal|reservoir|loch|ocean) up to "
        r"my (?:knees|waist|chest|neck)\b",
        r"\bi am (?:walking|wading) (?:out )?into the (?:sea|lake|river|water|ocean|canal|reservoir)\b",
        r"\b(?:climbed|am|i am|standing) (?:over|on the (?:wrong|other) side of) the "
        r"(?:railing|rail|barrier|wall|fence|edge)\b",
        # An overdose already taken.
        r"\bi (?:just |have |already |have just )?overdosed\b(?! on (?:caffeine|coffee|espresso|"
        r"sugar|chocolate|sweets|candy|carbs|cheese|netflix|tv|telly|sun|sunshine|cake|pizza))",
        r"\b(?:took|taken|swallowed) (?:\w+ ){0,4}(?:pills|tablets|meds|medication|dose|doses|"
        r"methadone|insulin|paracetamol|painkillers) (?:\w+ ){0,2}on purpose\b",
        r"\bi (?:just |have )?(?:drank|drunk|swallowed) (?:some |a bottle of |the )?"
        r"(?:bleach|antifreeze|weedkiller|rat poison)\b",
        r"\b(?:took|taken|swallowed|ate|drank|downed) (?:the |a )?(?:whole|entire|full) "
        r"(?:blister )?(?:box|bottle|pack|packet|strip|prescription|tub)\b",
        r"\b(?:took|taken|swallowed|downed) (?:way too many|a handful of|a bunch of|a load of|"
        r"loads of|[2-9]\d|\d{3}) (?:of )?(?:my |the |his |her )?(?:\w+ )?"
        r"(?:pills|tablets|meds|paracetamol|tylenol|painkillers)\b",
        r"\b(?:swallowed|took|taken) (?:all|every one) (?:of )?(?:my|the|his|her) (?:\w+ )?"
        r"(?:pills|tablets|meds|medication)\b(?! (?:this morning|today|on time|like|as "
        r"(?:prescribed|usual)|with (?:breakfast|food)|for the (?:day|week)))",
    ),
    "self_harm": (
        r"\b(?:hurt|hurting|harm|harming|cut|cutting|burn|burning|injure|injuring|starve|"
        r"starving) myself\b",
        r"\bself harm(?:ing|ed)?\b",
        r"\b(?:cutting|burning myself) again\b",
        r"\bstarted cutting\b",
        r"\burges? to (?:cut|burn|self harm|hurt myself)\b",
        r"\b(?:cut|cutting|burned|burning|burnt|scratched|hit|hitting|punched|bit|bite) "
        r"(?:myself|my (?:arms?|wrists?|thighs?|legs?|skin|stomach|face)) "
        r"(?:again|on purpose|deliberately|to feel|until (?:it|they|i) (?:bled|bleeds?|bruised?))\b",
        r"\b(?:relapsed|relapse) (?:on |and )?(?:self harm|cutting|cut)\b",
        r"\b(?:blade|razor)s? (?:to|on|against|across) my (?:arms?|wrists?|thighs?|legs?|skin)\b",
        r"\b(?:pin|compass|blade|razor|scissors|knife|lighter|match|key|cigarette)s? (?:out )?"
        r"(?:in|into|on|across|against) my (?:arms?|wrists?|skin|legs?|thighs?|stomach)\b",
        r"\bfresh (?:cuts|scratches|burns) on my (?:arms?|wrists?|legs?|thighs?|stomach)\b",
        r"\bmy (?:new|fresh|latest) (?:cuts|burns)\b",
        r"\b(?:hide|hiding|covering|cover) (?:up )?(?:the |my )?(?:new |fresh )?(?:cuts|burns) "
        r"(?:from|with|under)\b",
        r"\b(?:hit|hitting|punch\w*|slap\w*|scratch\w*|dug|dig\w*|pull\w*|bit|bite|biting|burn\w*|"
        r"cut\w*|stab\w*|pinch\w*) (?:\w+ ){0,2}my (?:arms?|wrists?|skin|legs?|thighs?|stomach|"
        r"face|hands?|fingers?|eyelashes|head|body)\b(?: \w+){0,6} on purpose\b",
        r"\b(?:hit|hitting|punch|punched|punching|slap|slapped|slapping|scratch|scratched|"
        r"scratching|bite|biting|bit) myself (?:when|whenever|until|again|every|as (?:a )?punishment|"
        r"to)\b",
    ),
    "harm_to_others": (
        rf"\b{_INTENT} (?:kill|hurt|shoot|stab|murder|attack|strangle|poison|glass|smother|"
        rf"suffocate|batter|knife) {_OTHER}\b",
        r"\b(?:feel like|urges? to|thoughts? of|keep thinking (?:about|of)) (?:smother|suffocat|shak|"
        r"drown)\w* (?:my |the )?(?:baby|newborn|child|son|daughter|kids?)\b",
        r"\b(?:keep|kept) (?:seeing|picturing|imagining) myself (?:dropping|hurting|smothering|"
        r"drowning|shaking|stabbing|suffocating) (?:my |the )?(?:baby|newborn|child|son|daughter|"
        r"kids?)\b",
        r"\bshoot up (?:the|my|a) (?:school|office|class|church|mall|work)\b",
        r"\b(?:bring|bringing|brought) a (?:gun|knife|weapon) to (?:school|work|class)\b",
        rf"\b(?:have|got|bought) a (?:gun|knife|weapon) (?:for|to use on) {_OTHER}\b",
        r"\b(?:put|putting|slip|slipping) something in (?:his|her|their|my [\w']+) "
        r"(?:drink|food|coffee|tea)\b",
    ),
    "abuse": (
        rf"\b{_ABUSER} (?:hits|hit|beats|beat|kicks|kicked|chokes|choked|strangles|strangled|"
        r"punches|punched|slaps|slapped|raped|rapes|molested|molests|abuses|abused|burns|burned|"
        r"touches|touched|pushed|pushes|shoved|shoves|grabbed|grabs|pins|pinned|drags|dragged|"
        r"locks|locked|forces|forced|whips|whipped) me\b",
        rf"\b{_ABUSER} (?:hurts|hurt|hits|hit|beats|beat) (?:me|us) (?:when|whenever|every|if)\b",
        rf"\b{_ABUSER} (?:says|said|told me) (?:he|she|they)(?: will| would|'ll|'d) "
        r"(?:kill|hurt) me\b",
        rf"\b{_ABUSER} (?:keeps|kept|has been|is always) (?:hitting|hurting|beating|kicking|punching|"
        r"choking|slapping|touching|grabbing) me\b",
        r"\b(?:someone|somebody|a person|a man|a woman) who (?:hurts|hits|beats|abuses) me\b",
        r"\b(?:raped|molested|sexually assaulted|groped) me\b",
        r"\bi am (?:being )?(?:hit|beaten|hurt|choked|strangled|kicked|punched) (?:at home|by "
        r"(?:my|him|her|them))\b",
        rf"\b{_ABUSER} (?:threatened|threatens|says he will|says she will) to (?:kill|hurt) me\b",
        r"\bi (?:was|am|have been|got|get) (?:being )?(?:raped|molested|abused|sexually assaulted|"
        r"assaulted|beaten|trafficked)\b",
        r"\b(?:being|been) (?:abused|molested|beaten|raped)\b",
        r"\b(?:sexual|physical|domestic) (?:abuse|violence|assault) (?:at home|by|from)\b",
        r"\b(?:afraid|scared|terrified) (?:to go|of going) home\b",
        r"\bnot safe at home\b",
        r"\bmy abuser (?:lives|sleeps|is (?:home|here|back|in the house|downstairs|upstairs)|"
        r"moved back)\b",
        rf"\bto hide what {_ABUSER} (?:does|did|has done|keeps doing)\b",
        rf"\b(?:afraid|scared|terrified) (?:that )?{_ABUSER} (?:will|is going to|might) "
        r"(?:kill|hurt) me\b",
        r"\b(?:will not|does not) let me (?:leave|go out|see anyone|eat)\b",
    ),
}

_CAUTION: dict[CrisisCategory, tuple[str, ...]] = {
    "suicide": (
        r"\bsuicide\b",
        r"\b(?:feel|feeling|feels|am|so) (?:so |completely |totally )?(?:hopeless|worthless)\b",
        r"\bcan not (?:go on|take (?:it|this|much more) anymore|do this anymore|keep going)\b",
        r"\bno way out\b",
        r"\bwant to disappear\b",
        r"\bgive up on (?:everything|life)\b",
        r"\btired of (?:living|being alive|life)\b",
        r"\bgoing to die\b",
        r"\bkill (?:himself|herself|themselves|themself)\b",  # someone else: help for the helper
    ),
    "self_harm": (r"\bpunish(?:ing)? myself\b",),
    "harm_to_others": (
        rf"\b(?:could|would|might) (?:kill|hurt|strangle) {_OTHER}\b",
        rf"\b(?:kill|hurt|shoot|stab) {_OTHER}\b",
    ),
    "abuse": (
        rf"\b{_ABUSER} (?:hurts|hurt|yells at|screams at|scares|controls) me\b",
        r"\b(?:abuse|abusive|abuser)\b",
    ),
}

# Words that follow a crisis phrase and make it an accident or a figure of speech: at most caution.
_SOFTENER = re.compile(
    r" (?:shaving|cooking|by accident|accidentally|while|at (?:the )?(?:gym|work)|"
    # "on a tin", but not "overdosed on my tablets"
    r"on (?:a|the|my)(?! (?:\w+ )?(?:pills|tablets|meds|medication|insulin|prescription|"
    r"antidepressants|painkillers|sleeping))|"
    r"playing|trying to|to (?:finish|get|make|meet|pass)|with (?:work|homework|this|that|"
    r"(?:his|her|their) (?:words|kindness|story))|over (?:this|that|work|nothing)|studying|working|"
    r"laughing|of (?:embarrassment|laughter|shame|boredom)|deeply|emotionally|so much)\b"
)
_NEGATION_WINDOW = 4  # words before the phrase
# A question someone asked ("my GP asked if I felt like harming myself"), when the message says the
# answer was no: the phrase is then at most a caution. Answered yes, or not answered, it stands.
_ASKED = re.compile(r"\b(?:asked|asks|asking) (?:me |us )?(?:if|whether) (?:\w+ ){0,6}$")
_RATHER = re.compile(r"\b(?:rather|sooner)\b")
_THAN = re.compile(
    r" than (?!(?:\w+ )?(?:live|living|go on|going on|keep|carry on|be here|be alive|stay|face|"
    r"wake|feel|spend|another|exist|ever|do this|be me|carry))"
)


def _alternation(patterns: list[str] | tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns))


# One expression per category, and one screen for everything (`screen.py`): most clauses match
# nothing, and then one linear-time pass decides.
_CRISIS_RE = {cat: _alternation(pats) for cat, pats in _CRISIS.items()}
_CAUTION_RE = {cat: _alternation(pats) for cat, pats in _CAUTION.items()}
PHRASES: tuple[str, ...] = tuple(
    p for pats in (*_CRISIS.values(), *_CAUTION.values()) for p in pats
)
_SCREEN = compile_screen(PHRASES)


def detect(text: str) -> CrisisSignal:
    """Classify one message: `crisis`, `caution` or `none`, with the categories that matched."""
    signal = NO_SIGNAL
    clauses = normalise(text)
    if STRETCHED.search(text.lower()):  # "killll", "dieeee": try stretched letters as one too
        clauses += normalise(text, repeats=1)
    if _SCREEN.search("\n".join(clauses)) is None:  # the usual case: no phrase in any clause
        return NO_SIGNAL
    asked_no = ANSWERED_NO.search(" . ".join(clauses)) is not None
    for clause in clauses:
        found = _clause_signal(clause, asked_no)
        if found.is_crisis and framed(clause) in CAPS_CLAUSE:  # "I have no thoughts of ..."
            found = CrisisSignal("caution", found.categories)
        signal = signal.merge(found)
    if signal.is_crisis and told_as_past(text):  # "I used to cut; clean for three years"
        return CrisisSignal("caution", signal.categories)
    return signal


def detect_all(texts: list[str]) -> CrisisSignal:
    signal = NO_SIGNAL
    for text in texts:
        signal = signal.merge(detect(text))
    return signal


def _clause_signal(clause: str, asked_no: bool = False) -> CrisisSignal:
    if _SCREEN.search(clause) is None:  # proves no phrase matches
        return NO_SIGNAL
    crisis: list[CrisisCategory] = []
    caution: list[CrisisCategory] = []
    for category, pattern in _CRISIS_RE.items():
        level = _level(clause, pattern, asked_no)
        if level == "crisis":
            crisis.append(category)
        elif level == "caution":
            caution.append(category)
    for category, pattern in _CAUTION_RE.items():
        if pattern.search(clause):
            caution.append(category)
    if crisis:
        return CrisisSignal("crisis", tuple(dict.fromkeys(crisis)))
    if caution:
        return CrisisSignal("caution", tuple(dict.fromkeys(caution)))
    return NO_SIGNAL


def _level(clause: str, pattern: re.Pattern[str], asked_no: bool = False) -> Level:
    """`crisis` if any match stands plainly, `caution` if every match is denied, softened, or a
    question the message answers no (`asked_no`)."""
    level: Level = "none"
    for match in pattern.finditer(clause):
        before = _words_before(clause, match.start())
        if (
            _negated(before)
            or (asked_no and _ASKED.search(clause, 0, match.start()))
            or _SOFTENER.match(clause, match.end())
            or _compared(before, clause, match.end())
        ):
            level = "caution"
        else:
            return "crisis"
    return level


def _words_before(clause: str, start: int) -> str:
    """The few words before a phrase, where a denial or a comparison would stand."""
    return " ".join(clause[:start].split()[-_NEGATION_WINDOW:])


def _compared(before: str, clause: str, end: int) -> bool:
    """A comparison, "I'd sooner jump off a cliff than do karaoke", is a figure of speech, unless
    what it is set against is living itself ("I'd rather jump than go on like this")."""
    return _RATHER.search(before) is not None and _THAN.match(clause, end) is not None


def _negated(before: str) -> bool:
    if not before:
        return False
    return NEGATION.search(NOT_NEGATION.sub(" ", before)) is not None
