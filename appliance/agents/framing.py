"""Framing cues: plain markers that a message speaks of crisis without being in one.

Denied, long past, about someone else or a story, an accident, a figure of speech. They cap a
classifier's crisis verdict at caution (a gentle offer of resources, not the crisis protocol), and
a phrase-list crisis too when the episode is plainly over. Whole-message, over normalised text.
"""

from __future__ import annotations

import re
from typing import Literal

from appliance.agents.normalise import normalise

# Words that, shortly before a crisis phrase in the same clause, turn it into a denial.
NEGATION = re.compile(r"\b(?:not|never|no|nor|without)\b")
# ...unless part of a phrase that makes it worse, not better.
NOT_NEGATION = re.compile(
    r"\b(?:not stop|never stop|no longer|not help|no one|no reason|"
    # "I'm not planning on being here much longer", "I don't want to die but I can't go on"
    r"not (?:\w+ ){0,3}(?:here|around) (?:much |for )?(?:longer|long)|"
    r"(?:do not|dont) want to die but)\b"
)

Cue = Literal["negation", "past", "third_person", "accident", "idiom"]

# Told as finished, whatever else the message says about today: in the past cue and in `_OVER`.
_WELL_SINCE = (
    r"(?:have|has) been (?:well|fine|okay|ok|safe|stable|clean) for (?:\d+|\w+) (?:years|yrs)"
)

# Someone asked the writer, and the answer was no ("my GP asked if I felt like harming myself and
# I said no"): a denial, and it lets the phrase lists read the asked phrase as a question.
_ANSWERED_NO = (
    r"\b(?:asked|asks) (?:me )?(?:if|whether) .{0,80}?\b(?:(?:and|but) (?:i )?(?:said|told "
    r"(?:him|her|them)) no|(?:honestly|truthfully|and) no|(?:and|but) i am not(?= \.|$))\b"
)
ANSWERED_NO = re.compile(_ANSWERED_NO)

_STOP_WORDS = r"(?:\w+ ){0,3}"
_CUES: dict[Cue, re.Pattern[str]] = {
    "negation": re.compile(
        rf"\b(?:not|never|no|zero) {_STOP_WORDS}(?:suicidal|want(?:ing)? to (?:die|hurt|end|kill)|"
        r"going to (?:hurt|do|end|kill|jump|cut|overdose|take)|in (?:any )?(?:danger|crisis)|"
        r"at risk|a danger|thinking (?:of|about) (?:ending|killing|suicide|hurting)|planning|"
        r"thoughts? (?:of|about)|urges?|intention|plan to|unsafe|being (?:abused|hurt)|"
        r"hurting me|an option|crossed my mind|thought about (?:suicide|ending|killing)|"
        r"(?:harm|hurt)(?:ing)? (?:myself|anyone|him|her|them|a fly))\b"
        rf"|{_ANSWERED_NO}"
        r"|\bi (?:am|feel) safe\b|\bnobody is hurting me\b|\bno one is hurting me\b"
    ),
    "past": re.compile(
        r"\b(?:(?<!where we )(?<!where i )(?<!we )used to(?! never)|years ago|a year ago|decade ago|when i was (?:a |younger|little|\d+|in |at )|"
        r"as a (?:teen|teenager|kid|child)|"
        r"back (?:then|in \d+)|in (?:high school|college|(?:19|20)\d\d)|"
        r"(?:through|during) (?:most of |all of )?(?:secondary|high|middle) school|"
        r"last time i (?:\w+ ){1,3}was (?:in )?(?:19|20)\d\d|"
        r"in my (?:early |mid |late )?(?:teens|twenties|thirties|forties|20s|30s|40s)|"
        r"my old (?:diary|diaries|journals?|self)|my recovery|recovery (?:programme|program|journey)|"
        r"(?:clean|free|sober) (?:for|since)|been clean|(?:self harm|suicide|cut\w*) free|"
        r"(?:have|has) not (?:cut|hurt|self harmed)|(?:i am|i have been|i have) (?:recovered|in recovery)|"
        r"(?:that|it) passed|(?<!annoyed )(?<!gutted )(?<!upset )(?<!angry )(?<!while )i am still here|worked through|got through (?:my|it|that)|not like that (?:any ?more|now)|"
        r"(?:is|are|it is) (?:behind me|in the past)|(?:much|so much) better (?:now|since)|"
        r"i am (?:okay|ok|safe|stable|healthy|well|doing (?:well|better|okay)) now|"
        r"(?:clean|free|sober) (?:\d+|\w+) (?:days|weeks|months|years)|as a \d+ (?:yo|year old)|"
        r"in a (?:much )?better place|"
        r"(?:a )?long time since i|(?:it|that|they) (?:have |has )?passed|"
        r"(?:days|weeks|months|years) (?:free|clean|sober)|how far i have come|(?<!go )(?<!come )(?<!be )(?<!get )back when|"
        r"(?:am|feel|feeling) (?:much|so much|a lot|way) better|"
        r"(?:glad|grateful|thankful) (?:i am still here|i stayed|i survived|i never|someone)|"
        r"found (?:better|healthier|other|new) ways to cope|"
        # Told from afterwards: how long ago, how it ended, how it reads now.
        r"(?:years|yrs) ago|(?:\d+|\w+) (?:years|yrs) later|in remission|long gone|"
        r"(?:been |have |has )?healed (?:for|up|over|years)|"
        r"(?:most|all|much) of my (?:teens|twenties|20s|childhood|school years|adolescence)|"
        r"looking back|(?:freshman|sophomore|junior|senior) year|"
        r"surviving (?:self harm|suicide|an attempt|my attempt|an overdose)|"
        r"i was (?:so |really |very )?(?:unwell|ill|sick|poorly) (?:then|back then|at the time)|"
        r"(?:reading|read|found) (?:my |some )?old (?:texts|messages|diary|diaries|journals?|posts|notes)|"
        r"from (?:the|that) (?:bad|dark|worst) (?:year|years|time|patch|summer|winter)|"
        r"years (?:today )?since (?:i|my) (?:tried|attempt|overdose|last)|"
        r"(?:barely|do not|hardly|no longer) recognise (?:that|the|her|him|myself)|"
        r"(?:therapy|counselling|counseling|meds|medication|treatment|support) (?:really |has |have "
        r")?(?:helped|fixed|saved me|saved my life)|helped (?:a lot|a ton|me (?:get )?through)|fixed a lot|"
        r"(?:\d+|\w+) years on (?:i|and|now)|and survived|survivor|(?:far|well|long) behind me|"
        r"(?:glad|thankful|grateful) (?:i got help|it (?:did not|didn't) work)|memoir|"
        r"(?:have not|havent) (?:acted on it|done it|self harmed|cut|hurt myself) (?:in|for|since)|"
        r"(?:decade|years?|months?|\d{3,} days) since i last|(?:\d+|\w+) (?:years|months) since my|"
        r"a long time ago|long ago|through my (?:childhood|teens|twenties)|as an adult|"
        r"my (?:suicidal|lost|troubled|whole|entire|early|late) (?:teens|twenties|teenage years|childhood)|"
        r"(?:the|that) (?:time|summer|winter|spring|autumn|year|night) (?:when )?i "
        r"(?:tried|overdosed|attempted|wanted)|"
        r"that (?:christmas|summer|winter|spring|autumn|year) i|"
        r"(?:teenage|younger|past) me|the \w+ version of me|myself at \d+|"
        r"i remember (?:being|when i was)|went through a (?:period|phase|stage|time)|"
        r"lasted (?:almost |nearly |about )?(?:a year|\w+ (?:months|years))|"
        r"(?:free|clean) of (?:self harm|it)|stopped (?:self harming|cutting|hurting myself)|"
        r"able to talk about|moved out at \d+|from age \d+|was convicted|"
        r"(?:before|since) (?:uni|university|college|high school)|from year \d+|"
        r"when i was (?:really |so |very )?(?:ill|unwell|sick|homeless|drinking|using|depressed)|"
        r"back in (?:school|uni|college|the day)|(?:it|they|that) faded|"
        rf"my old (?:suicide )?(?:notes?|notebooks?|letters?)|{_WELL_SINCE})\b"
    ),
    "third_person": re.compile(
        r"\b(?:my (?:\w+ )?(?:friend|brother|sister|son|daughter|cousin|roommate|coworker|patient|"
        r"student|girlfriend|boyfriend|aunt|uncle|neighbou?r|grandma|nan|classmate|partner|dad|"
        r"mum|mom)s? (?:says|said|told|texted|posted|sent|keeps saying|wants|wrote|burns|self harms|cuts|"
        r"overdosed|talks|is on|is cutting|is self harming|is suicidal|has been cutting)|"
        r"essay|thesis|assignment|coursework|(?:the|my) research|research (?:says|shows|paper)|article|novel|book(?! (?:a|an|the|my|in|it|me|us|tickets?|flights?|trains?|rooms?|tables?)\b)|film|movie|documentary|podcast|character|"
        r"story|screenplay|lecture|exam|presentation|the news|report(?! card)|video game|the game|poem|song|"
        r"asking for (?:a friend|my)|how (?:do|can|should) i (?:help|support|talk|ask|tell)|"
        r"my (?:\w+ )?(?:friend|brother|sister|son|daughter|student|patient|grandma|grandpa|"
        r"mum|mom|dad)s? (?:\w+ )?(?:talks|wrote|says|said|asked) about|"
        r"warning signs (?:of|for|to|that|in)|asking as a (?:\w+ )?(?:parent|mum|mom|dad|teacher|"
        r"friend|nurse|carer|colleague)|protocol|journalists?|volunteer\w*|training to be|"
        r"(?:a|one of my|one of our) (?:patients?|clients?|residents?|pupils?|service users?) "
        r"(?:on|in|at) (?:my|our|the) (?:ward|unit|clinic|practice|surgery|home|shift)|"
        r"a (?:kid|boy|girl|child|lad|student|pupil) in (?:my|our) (?:[\w']+ ){0,2}(?:class|school|"
        r"year) (?:said|says|told|tells|brought|keeps|is|was|has|had|posted|wrote|talks|tried))\b"
    ),
    # Only words that say how an injury happened: a question ("is it normal?", "what do I do?")
    # is asked about accidents and crises alike.
    "accident": re.compile(
        r"\b(?:by accident|accidentally|by mistake|chopping|(?<!not for )(?<!not )(?:cooking|"
        r"shaving)|washing up|opening a|"
        r"slipped|tripped|fell (?:off|down|over|asleep)|twisted|sprained|stubbed (?:my )?toe|"
        r"(?:on|with|from) (?:the|a) (?:\w+ )?(?:oven|stove|hob|iron|kettle|grill|pan|toaster))\b"
    ),
    "idiom": re.compile(
        r"\b(?:lol|lmao|haha\w*|jk|this (?:homework|exam|traffic|heat|diet|cold|song|weather)|"
        r"my (?:feet|knees|back|legs|head) (?:is |are )?(?:killing|murdering) me|my (?:phone|laptop|battery) (?:is dying|died)|kill(?:ing|ed)? (?:it|time|the lights)|"
        r"dying (?:to|of|laughing)|dead tired|(?:is|are) to die for|could (?:murder|die)|"
        r"i would kill for|shoot(?:ing)? (?:for|my shot|you)|end (?:it|things) with (?:my|him|her)|"
        r"ending my (?:gym|membership|subscription|contract)|going to (?:kill|murder) me)\b"
    ),
}
# The cues that also cap a phrase-list crisis in their own clause (a denial in one clause does not
# reach another: "I would never hurt myself, but I want to die"); a past cue caps the message.
CAPS_CLAUSE: tuple[Cue, ...] = ("negation", "third_person")
# Words that make a message about now, whatever else it says: a past cue does not apply then.
_NOW = re.compile(
    r"\b(?:again|tonight|right now|rn|relapsed|just (?:cut|took|did it|did that)|about to)\b"
)
# Words that may be about now or a day in a long recovery ("two years clean today"): they stop a
# past cue unless a plainly finished episode is named as well.
_MAYBE_NOW = re.compile(
    r"\b(?:today|now and (?:then|again)|this (?:week|morning|evening)|last night)\b"
)
_OVER = re.compile(
    r"\b(?:i am \d+ now|(?:clean|free) (?:from|of) (?:self harm|cutting|it)|"
    r"(?:\w+ )?(?:months|years) (?:clean|free)|long gone|glad i (?:stayed|survived|am alive)|"
    r"grateful to be alive|have been (?:well|fine|okay|ok) (?:ever )?since|my recovery|"
    r"in remission|(?:\d+|\w+) (?:years|yrs) later|(?:that|it) was (?:\w+ ){0,2}(?:years|yrs) ago|"
    r"lucky to (?:still )?be (?:still )?(?:here|alive)|years (?:today )?since (?:i|my) "
    r"(?:tried|attempt|overdose)|(?:barely|do not|hardly) recognise (?:that|the|her|him|myself)|"
    rf"i am (?:fine|okay|ok|well) (?:with that|now)|{_WELL_SINCE}|"
    r"\d{3,} days since i last|(?:he|she|they) (?:is|are) long gone)\b"
)


# Harm aimed at the person writing: a third-person opening ("my dad says ...") is not a cue then.
_TO_ME = re.compile(
    r"\b(?:hurt|hurts|kill|hit|hits|beat|beats|punch|punches|kick|kicks|burn|burns|burned|touch|"
    r"touches|touched|choke|chokes|choked|stab|stabs|shoot|shoots|attack|attacks) me\b"
)

# Done on purpose, or done to the writer by someone: an injury then is no accident, however it
# says it happened ("on the oven door", "I slipped").
_NOT_ACCIDENT = re.compile(
    r"\b(?:on purpose|deliberately|intentionally|to myself|"
    r"(?:he|she|they) (?:\w+ ){0,2}(?:hit|hits|hurt|hurts|smashed|smashes|broke|breaks|grabbed|"
    r"grabs|choked|chokes|strangled|pushed|pushes|shoved|slapped|slaps|threw|throws|threatened|"
    r"threatens|locked|locks|put (?:his|her|their) hands))\b"
)

# A wish not to be alive: denying a plan or an act ("I'm not going to do anything") does not deny
# that.
_STILL_WISH = re.compile(
    r"\b(?:(?:to )?not (?:be|being) alive|not (?:to )?exist|not wake up|take me in my sleep|"
    r"(?:do not|don't|dont) want to (?:be alive|exist|wake up|live)|"
    r"want (?:it|this|everything|the pain|all of (?:it|this)) to (?:stop|end))\b"
)

# A wish about the writer's own life, however the message frames it ("I see the news about crashes
# and think why couldn't it have been me"; "I wish I'd died when I was a baby").
_MY_WISH = re.compile(
    r"\b(?:why (?:could not|couldnt|was not|wasnt|did not|didnt) (?:it|that) (?:have been|be|been) me|"
    r"wish (?:it|that) (?:was|were|had been|could have been) me|"
    r"wish (?:i|that i) (?:had |would have |would |could have )?(?:died|never been born|not (?:been born|survived|woken up)))\b"
)

# Not for a story: the study word is denied ("it's not for a story").
_NOT_A_STORY = re.compile(
    r"\bnot (?:for|in|about|part of) (?:a |an |the |my |some )?(?:\w+ )?(?:story|novel|book|essay|"
    r"film|movie|assignment|coursework|research|character|poem|song|game)\b"
)

# The writer's own stated intent: no story or study word makes that someone else's.
_MY_INTENT = re.compile(
    r"\bi (?:am going to|will|want to|plan to|am planning to) (?:(?:kill|hurt|end) (?:myself|my "
    r"life)|(?:step|jump|throw myself|walk) (?:out )?(?:in front of|off))\b"
    r"|\b(?:then|and) (?:go|jump|walk|drive) (?:to )?(?:off )?the (?:top|edge) of\b"
)


def framing(text: str) -> Cue | None:
    """The first framing cue found in `text`, or None. Cheap: a few searches over one string."""
    return framed(" . ".join(normalise(text)))


def framed(joined: str) -> Cue | None:
    bare = NOT_NEGATION.sub(" ", joined)
    for cue in _CUES:
        if _holds(cue, joined, bare):
            return cue
    return None


def told_as_past(text: str) -> bool:
    """Whether the past cue holds, whichever cue `framing` would name first ("I'm safe, he's long
    gone" is a denial as well)."""
    joined = " . ".join(normalise(text))
    return _holds("past", joined, joined)


# What stops each cue: words the cue cannot mean alongside. Harm aimed at the writer ("my dad says
# he'll hurt me") is nobody else's story and no accident; a wish about the writer's own life is
# neither someone else's nor over; "after my exam tomorrow I'm going to kill myself" is no study.
_STOPPED_BY: dict[Cue, tuple[re.Pattern[str], ...]] = {
    "negation": (_STILL_WISH,),
    "past": (_NOW, _MY_WISH),
    "third_person": (_TO_ME, _MY_WISH, _NOT_A_STORY, _MY_INTENT),
    "accident": (_TO_ME, _NOT_ACCIDENT),
    "idiom": (),
}


def _holds(cue: Cue, joined: str, bare: str) -> bool:
    if not _CUES[cue].search(bare if cue == "negation" else joined):
        return False
    if any(stop.search(joined) for stop in _STOPPED_BY[cue]):
        return False
    # "two years clean today": a day in a long recovery only when a finished episode is named too.
    return not (cue == "past" and _MAYBE_NOW.search(joined) and not _OVER.search(joined))
