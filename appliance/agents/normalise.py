"""Text normalisation for the crisis phrase lists and framing cues: lower-case clauses of words.

Accents, curly quotes, contractions, leetspeak and stretched letters are undone, so one phrase
covers the ways people type it; punctuation splits clauses, so a denial in one clause does not
reach another.
"""

from __future__ import annotations

import re
import unicodedata

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
    "sh": "self harm",
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
STRETCHED = re.compile(r"([a-z])\1{2,}")
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
    text = STRETCHED.sub(r"\1" * repeats, text)
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
