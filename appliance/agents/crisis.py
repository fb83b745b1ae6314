"""A deterministic crisis detector: phrase lists over normalised text, no model involved.

It runs on every incoming message before any model is called, so a person in crisis is answered
with crisis resources even when every engine is down. It is deliberately conservative: a clear
statement of intent, plan or abuse is a crisis; a negated one ("I would never hurt myself") or an
ambiguous one is `caution`; everyday idioms ("this homework is killing me") match nothing, because
every pattern names who would be harmed. English only; other languages need their own lists.

The result carries categories and counts, never the text, so it is safe to log.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

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

# Normalisation -----------------------------------------------------------------------------------

_CONTRACTIONS = {
    "can't": "can not",
    "cannot": "can not",
    "won't": "will not",
    "don't": "do not",
    "doesn't": "does not",
    "didn't": "did not",
    "wouldn't": "would not",
    "shouldn't": "should not",
    "couldn't": "could not",
    "isn't": "is not",
    "aren't": "are not",
    "wasn't": "was not",
    "haven't": "have not",
    "hasn't": "has not",
    "havent": "have not",
    "ain't": "am not",
    "i'm": "i am",
    "im": "i am",
    "i've": "i have",
    "ive": "i have",
    "i'll": "i will",
    "i'd": "i would",
    "it's": "it is",
    "he's": "he is",
    "she's": "she is",
    "they're": "they are",
    "wanna": "want to",
    "gonna": "going to",
    "gotta": "got to",
    "dont": "do not",
    "cant": "can not",
    "wont": "will not",
    "didnt": "did not",
    "wouldnt": "would not",
    "u": "you",
    "ppl": "people",
    "kms": "kill myself",
    "kys": "kill yourself",
}
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
)
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'"})
_CLAUSE_BREAK = re.compile(r"[.!?;:\n]+|,|\b(?:but|however|though)\b")
_LEET_CHAR = re.compile(r"[0-9@$]")
_WORD = re.compile(r"[a-z0-9@$']+")
_T = r"[a-z0-9@$']"  # a character of a word
_QUOTE = re.compile(r"(?<![a-z0-9])'|'(?![a-z0-9])")  # an apostrophe that is not inside a word
_STRETCHED = re.compile(r"([a-z])\1{2,}")
_LEETY = re.compile(
    rf"(?<!{_T}){_T}*(?:[a-z]{_T}*[0-9@$]|[0-9@$]{_T}*[a-z]){_T}*(?!{_T})"
)  # a word with both letters and digits or symbols


def normalise(text: str, *, repeats: int = 2) -> list[str]:
    """Clauses of lower-case words: accents, curly quotes, contractions, leetspeak, stretched letters
    ("soooo", to `repeats` letters) undone; punctuation splits clauses so a negation does not reach
    across them. Whole-text substitutions, so a long message costs little."""
    # Each step is skipped when it cannot change the text: this runs before every Kai request.
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text.translate(_APOSTROPHES))
        text = "".join(c for c in text if not unicodedata.combining(c))
    elif "`" in text:
        text = text.translate(_APOSTROPHES)
    text = text.lower().replace("self-harm", "self harm").replace("un-alive", "unalive")
    if "'" in text:
        text = _QUOTE.sub(" ", text)
    text = _STRETCHED.sub(r"\1" * repeats, text)
    if _LEET_CHAR.search(text):
        text = _LEETY.sub(lambda m: m.group().translate(_LEET), text)
    # Contractions are whole words (runs of word characters, as `_WORD` finds them), so they are
    # undone word by word after the split: a dict lookup, not a pass of a large alternation.
    clauses = []
    expand = _CONTRACTIONS.get
    for part in _CLAUSE_BREAK.split(text):
        words = _WORD.findall(part)
        if words:
            clauses.append(" ".join([expand(word, word) for word in words]))
    return clauses


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
        r"\bwill not be (?:here|around|alive) (?:much longer|for much longer|after tonight|"
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
        r"\b(?:so )?(?:nobody|no one) (?:finds|will find|would find|can find) me\b",
        r"\bhow (?:much|many) (?:\w+ ){0,4}(?:would|will|to) stop my heart\b",
        r"\b(?:letters?|notes?|messages?|videos?|recordings?) (?:\w+ ){0,6}(?:for )?after$",
        r"\b(?:i am|i feel) (?:so )?(?:done|finished) with (?:life|living|being alive)\b",
        r"\bengine running\b",
        r"\bturned (?:on )?the gas (?:on )?and (?:i am )?(?:sitting|lying|waiting|closed)\b",
        # Acute danger: on the edge, over the rail.
        r"\bi am (?:standing |sitting |right )?(?:on|at) (?:the )?(?:edge|ledge) of (?:the |a |my )?"
        r"(?:roof|bridge|building|cliff|balcony|platform|car park|window|motorway|tracks)\b",
        r"\b(?:climbed|am|i am|standing) (?:over|on the (?:wrong|other) side of) the "
        r"(?:railing|rail|barrier|wall|fence|edge)\b",
        # An overdose already taken.
        r"\bi (?:just |have |already |have just )?overdosed\b",
        r"\b(?:took|taken|swallowed) (?:\w+ ){0,4}(?:pills|tablets|meds|medication|dose|doses|"
        r"methadone|insulin|paracetamol|painkillers) (?:\w+ ){0,2}on purpose\b",
        r"\bi (?:just |have )?(?:drank|drunk|swallowed) (?:some |a bottle of |the )?"
        r"(?:bleach|antifreeze|weedkiller|rat poison)\b",
        r"\b(?:took|taken|swallowed|ate|drank|downed) (?:the |a )?(?:whole|entire|full) "
        r"(?:box|bottle|pack|packet|strip|prescription|tub)\b",
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
        r"\b(?:hit|hitting|punch\w*|slap\w*|scratch\w*|dug|dig\w*|pull\w*|bit|bite|biting|burn\w*|"
        r"cut\w*|stab\w*|pinch\w*) (?:\w+ ){0,2}my (?:arms?|wrists?|skin|legs?|thighs?|stomach|"
        r"face|hands?|fingers?|eyelashes|head|body)\b(?: \w+){0,6} on purpose\b",
        r"\b(?:hit|hitting|punch|punched|punching|slap|slapped|slapping|scratch|scratched|"
        r"scratching|bite|biting|bit) myself (?:when|whenever|until|again|every|as (?:a )?punishment|"
        r"to)\b",
    ),
    "harm_to_others": (
        rf"\b{_INTENT} (?:kill|hurt|shoot|stab|murder|attack|strangle|poison) {_OTHER}\b",
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
    r" (?:shaving|cooking|by accident|accidentally|on (?:a|the|my)|while|at (?:the )?(?:gym|work)|"
    r"playing|trying to|to (?:finish|get|make|meet|pass)|with (?:work|homework|this|that|"
    r"(?:his|her|their) (?:words|kindness|story))|over (?:this|that|work|nothing)|studying|working|"
    r"laughing|of (?:embarrassment|laughter|shame|boredom)|deeply|emotionally|so much)\b"
)
# Words that, shortly before a crisis phrase in the same clause, turn it into a denial.
_NEGATION = re.compile(r"\b(?:not|never|no|nor|without)\b")
# ...unless part of a phrase that makes it worse, not better.
_NOT_NEGATION = re.compile(r"\b(?:not stop|never stop|no longer|not help|no one|no reason)\b")
_NEGATION_WINDOW = 4  # words before the phrase


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
    if _STRETCHED.search(text.lower()):  # "killll", "dieeee": try stretched letters as one too
        clauses += normalise(text, repeats=1)
    if _SCREEN.search("\n".join(clauses)) is None:  # the usual case: no phrase in any clause
        return NO_SIGNAL
    for clause in clauses:
        found = _clause_signal(clause)
        if found.is_crisis and _framed(clause) in _CAPS_CLAUSE:  # "I have no thoughts of ..."
            found = CrisisSignal("caution", found.categories)
        signal = signal.merge(found)
    if signal.is_crisis and framing(text) == "past":  # "I used to cut; clean for three years"
        return CrisisSignal("caution", signal.categories)
    return signal


def detect_all(texts: list[str]) -> CrisisSignal:
    signal = NO_SIGNAL
    for text in texts:
        signal = signal.merge(detect(text))
    return signal


def _clause_signal(clause: str) -> CrisisSignal:
    if _SCREEN.search(clause) is None:  # proves no phrase matches
        return NO_SIGNAL
    crisis: list[CrisisCategory] = []
    caution: list[CrisisCategory] = []
    for category, pattern in _CRISIS_RE.items():
        level = _level(clause, pattern)
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


def _level(clause: str, pattern: re.Pattern[str]) -> Level:
    """`crisis` if any match stands plainly, `caution` if every match is denied or softened."""
    level: Level = "none"
    for match in pattern.finditer(clause):
        if _negated(clause, match.start()) or _SOFTENER.match(clause, match.end()):
            level = "caution"
        else:
            return "crisis"
    return level


def _negated(clause: str, start: int) -> bool:
    window = " ".join(clause[:start].split()[-_NEGATION_WINDOW:])
    if not window:
        return False
    return _NEGATION.search(_NOT_NEGATION.sub(" ", window)) is not None


# Framing cues ------------------------------------------------------------------------------------
# Plain markers that a message speaks of crisis without being in one: denied, long past, about
# someone else or a story, an accident, a figure of speech. They cap a classifier's crisis verdict
# at caution (a gentle offer of resources, not the crisis protocol), and a phrase-list crisis too
# when the episode is plainly over. Whole-message, over normalised text.

Cue = Literal["negation", "past", "third_person", "accident", "idiom"]

_STOP_WORDS = r"(?:\w+ ){0,3}"
_CUES: dict[Cue, re.Pattern[str]] = {
    "negation": re.compile(
        rf"\b(?:not|never|no|zero) {_STOP_WORDS}(?:suicidal|want(?:ing)? to (?:die|hurt|end|kill)|"
        r"going to (?:hurt|do|end|kill|jump|cut|overdose|take)|in (?:any )?(?:danger|crisis)|"
        r"at risk|a danger|thinking (?:of|about) (?:ending|killing|suicide|hurting)|planning|"
        r"thoughts? (?:of|about)|urges?|intention|plan to|unsafe|being (?:abused|hurt)|"
        r"hurting me|an option|crossed my mind|thought about (?:suicide|ending|killing)|"
        r"(?:harm|hurt)(?:ing)? (?:myself|anyone|him|her|them|a fly))\b"
        r"|\bi (?:am|feel) safe\b|\bnobody is hurting me\b|\bno one is hurting me\b"
    ),
    "past": re.compile(
        r"\b(?:used to|years ago|a year ago|decade ago|when i was (?:a |younger|little|\d+|in |at )|"
        r"as a (?:teen|teenager|kid|child)|"
        r"back (?:then|in \d+)|in (?:high school|college|my (?:teens|twenties))|"
        r"(?:clean|free|sober) (?:for|since)|been clean|(?:self harm|suicide|cut\w*) free|"
        r"(?:have|has) not (?:cut|hurt|self harmed)|(?:i am|i have been|i have) (?:recovered|in recovery)|"
        r"(?:that|it) passed|i am still here|worked through|got through (?:my|it|that)|not like that (?:any ?more|now)|"
        r"(?:is|are|it is) (?:behind me|in the past)|(?:much|so much) better (?:now|since)|"
        r"i am (?:okay|ok|safe|stable|doing (?:well|better|okay)) now|in a (?:much )?better place|"
        r"(?:a )?long time since i|(?:it|that|they) (?:have |has )?passed|"
        r"(?:days|weeks|months|years) (?:free|clean|sober)|how far i have come|back when|"
        r"(?:am|feel|feeling) (?:much|so much|a lot|way) better|"
        r"(?:glad|grateful|thankful) (?:i am still here|i stayed|i survived|i never|someone)|"
        r"found (?:better|healthier|other|new) ways to cope)\b"
    ),
    "third_person": re.compile(
        r"\b(?:my (?:\w+ )?(?:friend|brother|sister|son|daughter|cousin|roommate|coworker|patient|"
        r"student|girlfriend|boyfriend|aunt|uncle|neighbou?r|grandma|nan|classmate|partner|dad|"
        r"mum|mom)s? (?:says|said|told|texted|posted|sent|keeps saying|wants|wrote|burns|self harms|cuts|"
        r"overdosed|talks|is on|is cutting|is self harming|is suicidal|has been cutting)|"
        r"essay|thesis|(?:the|my) research|research (?:says|shows|paper)|article|novel|book|film|movie|documentary|podcast|character|"
        r"story|screenplay|lecture|exam|presentation|the news|report(?! card)|video game|the game|poem|song|"
        r"asking for (?:a friend|my)|how (?:do|can|should) i (?:help|support|talk|ask|tell)|"
        r"my (?:\w+ )?(?:friend|brother|sister|son|daughter|student|patient|grandma|grandpa|"
        r"mum|mom|dad)s? (?:\w+ )?(?:talks|wrote|says|said|asked) about|"
        r"warning signs|protocol|journalists?|volunteer\w*|training to be)\b"
    ),
    "accident": re.compile(
        r"\b(?:by accident|accidentally|by mistake|chopping|(?<!not for )(?:cooking|shaving)|washing up|"
        r"opening a|"
        r"slipped|tripped|fell (?:off|down|over|asleep)|twisted|sprained|stubbed (?:my )?toe|"
        r"is (?:that|it) (?:ok|okay|bad|dangerous|normal)|should i worry|do i need|"
        r"will i be (?:ok|okay|fine)|what (?:do|should) i do)\b"
    ),
    "idiom": re.compile(
        r"\b(?:lol|lmao|haha\w*|jk|this (?:homework|exam|traffic|heat|diet|cold|song|weather)|"
        r"(?<!up to )my (?:feet|knees|back)|my (?:phone|laptop|battery) (?:is dying|died)|kill(?:ing|ed)? (?:it|time|the lights)|"
        r"dying (?:to|of|laughing)|dead tired|(?:is|are) to die for|could (?:murder|die)|"
        r"i would kill for|shoot(?:ing)? (?:for|my shot|you)|end (?:it|things) with (?:my|him|her)|"
        r"ending my (?:gym|membership|subscription|contract)|going to (?:kill|murder) me)\b"
    ),
}
# The cues that also cap a phrase-list crisis in their own clause (a denial in one clause does not
# reach another: "I would never hurt myself, but I want to die"); a past cue caps the message.
_CAPS_CLAUSE: tuple[Cue, ...] = ("negation", "third_person")
# Words that make a message about now, whatever else it says: a past cue does not apply then.
_NOW = re.compile(
    r"\b(?:again|tonight|today|right now|rn|now and|this (?:week|morning|evening)|last night|"
    r"relapsed|just (?:cut|took|did)|about to)\b"
)


# Harm aimed at the person writing: a third-person opening ("my dad says ...") is not a cue then.
_TO_ME = re.compile(
    r"\b(?:hurt|hurts|kill|hit|hits|beat|beats|punch|punches|kick|kicks|burn|burns|burned|touch|"
    r"touches|touched|choke|chokes|choked) me\b"
)

# The writer's own stated intent: no story or study word makes that someone else's.
_MY_INTENT = re.compile(
    r"\bi (?:am going to|will|want to|plan to|am planning to) (?:kill|hurt|end) (?:myself|my life)\b"
)


def framing(text: str) -> Cue | None:
    """The first framing cue found in `text`, or None. Cheap: a few searches over one string."""
    return _framed(" . ".join(normalise(text)))


def _framed(joined: str) -> Cue | None:
    bare = _NOT_NEGATION.sub(" ", joined)
    for cue, pattern in _CUES.items():
        if pattern.search(bare if cue == "negation" else joined):
            if cue == "past" and _NOW.search(joined):
                continue
            if cue in ("third_person", "accident") and _TO_ME.search(joined):
                continue  # "my dad says he'll hurt me": harm aimed at the writer
            if cue == "third_person" and _MY_INTENT.search(joined):
                continue  # "after my exam tomorrow I'm going to kill myself"
            return cue
    return None
