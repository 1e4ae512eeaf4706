"""Transcript text: the one normalisation used to train and to score speech-to-text models.

:func:`normalize_transcript` maps a verbatim transcript onto what the character models
spell, so that training targets, reference texts and hypotheses are compared alike:

1. Unicode NFKC (full-width and compatibility forms fold: "Ｈｅｌｌｏ" -> "Hello", "ﬁ" -> "fi");
   typographic apostrophes (’ ‘ ʼ ′ `) become "'".
2. Case folding ("Straße" -> "strasse"), then Latin diacritics are dropped ("café" -> "cafe",
   "søren" -> "soren"); invisible format characters (zero-width space, ...) are removed.
3. Numbers are spelled out in English: integers up to 999,999,999,999 ("1,250" ->
   "one thousand two hundred fifty", no "and"), decimals digit by digit after "point"
   ("3.05" -> "three point zero five"), ordinals ("21st" -> "twenty first"). Integers with
   a leading zero ("007") or beyond the range are read digit by digit. Numbers glued to
   letters are split off ("mp3" -> "mp three").
4. A few symbols are spoken: "%" -> "percent", "&" -> "and", "+" -> "plus", "@" -> "at".
5. Hyphens, dashes and slashes become spaces; every other punctuation mark or symbol becomes
   a space, except apostrophes inside a word ("don't", "o'brien"; "'tis" -> "tis").
6. Whitespace is collapsed to single spaces and trimmed.

The result holds only a-z, "'" and single spaces. Letters outside the Latin alphabet
(Greek, Cyrillic, CJK, ...) are removed like punctuation: the models spell English only,
so such text can be neither learnt nor scored.
"""

from __future__ import annotations

import re
import unicodedata

MAX_TRANSCRIPT_BYTES = 1 << 20  # bytes; a 4 h recording at 200 words/min is ~300 kB of text
MAX_CONTROL_FRACTION = 0.01  # share of control characters (not \t \n \r \f) that marks binary data
MAX_SPELLED = 10**12  # integers at or above this are read digit by digit

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (10**3, "thousand"))
_ORDINAL_WORDS = {
    "one": "first", "two": "second", "three": "third", "four": "fourth", "five": "fifth",
    "six": "sixth", "seven": "seventh", "eight": "eighth", "nine": "ninth", "ten": "tenth",
    "eleven": "eleventh", "twelve": "twelfth", "twenty": "twentieth", "thirty": "thirtieth",
    "forty": "fortieth", "fifty": "fiftieth", "sixty": "sixtieth", "seventy": "seventieth",
    "eighty": "eightieth", "ninety": "ninetieth",
}  # fmt: skip
_SPOKEN_SYMBOLS = {"%": " percent ", "&": " and ", "+": " plus ", "@": " at "}
_APOSTROPHES = dict.fromkeys(map(ord, "\u2019\u2018\u02bc\u2032`\u00b4"), "'")
_LATIN_LIGATURES = str.maketrans({"ø": "o", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i"})

# A number: digits with optional thousands groups and an optional decimal part, then an
# optional ordinal suffix. Matched after case folding, so suffixes are lowercase.
_NUMBER = re.compile(r"(\d{1,3}(?:,\d{3})+|\d+)(?!\d)(?:\.(\d+)(?!\d))?(?:(st|nd|rd|th)(?![a-z]))?")
_DASHES_SLASHES = re.compile(r"[\-\u2010-\u2015\u2212/\\]")
_LOOSE_APOSTROPHE = re.compile(r"(?<![a-z])'|'(?![a-z])")


class TranscriptError(ValueError):
    """A transcript that cannot be used; the message says why."""


def number_to_words(n: int) -> str:
    """English cardinal for 0 <= n < MAX_SPELLED, without "and": 105 -> "one hundred five"."""
    if not 0 <= n < MAX_SPELLED:
        raise ValueError(f"number_to_words spells 0 <= n < {MAX_SPELLED}, got {n}")
    if n < 1000:
        return _below_thousand(n)
    words = []
    for scale, name in _SCALES:
        if n >= scale:
            words += [_below_thousand(n // scale), name]
            n %= scale
    if n:
        words.append(_below_thousand(n))
    return " ".join(words)


def _below_thousand(n: int) -> str:
    words = []
    if n >= 100:
        words += [_ONES[n // 100], "hundred"]
        n %= 100
        if n == 0:
            return " ".join(words)
    if n < 20:
        words.append(_ONES[n])
    else:
        words.append(_TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10]))
    return " ".join(words)


def _digits(s: str) -> str:
    return " ".join(_ONES[int(d)] for d in s)


def _ordinal(cardinal: str) -> str:
    head, _, last = cardinal.rpartition(" ")
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    else:  # hundred, thousand, million, billion, zero
        last += "th"
    return f"{head} {last}".strip()


def _spell_number(m: re.Match) -> str:
    integer, fraction, suffix = m.group(1).replace(",", ""), m.group(2), m.group(3)
    if (len(integer) > 1 and integer[0] == "0") or int(integer) >= MAX_SPELLED:
        words = _digits(integer)
    else:
        words = number_to_words(int(integer))
        if suffix and fraction is None:
            words = _ordinal(words)
    if fraction is not None:
        words += " point " + _digits(fraction)
    return f" {words} "


def _fold_diacritics(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def normalize_transcript(text: str) -> str:
    """Verbatim transcript -> normalised text over a-z, "'" and single spaces (see module doc).

    Raises :class:`TranscriptError` when nothing speakable is left or when letters outside
    the Latin alphabet remain.
    """
    if not isinstance(text, str):
        raise TranscriptError(f"a transcript must be str, got {type(text).__name__}")
    s = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).casefold()
    s = _fold_diacritics(s).translate(_LATIN_LIGATURES)
    s = "".join(
        str(unicodedata.decimal(c)) if c.isdecimal() else c  # other scripts' digits -> 0-9
        for c in s
        if unicodedata.category(c) != "Cf"
    )
    s = _NUMBER.sub(_spell_number, s)
    for symbol, words in _SPOKEN_SYMBOLS.items():
        s = s.replace(symbol, words)
    s = _DASHES_SLASHES.sub(" ", s)
    foreign = any(c.isalpha() and not "a" <= c <= "z" for c in s)
    s = "".join(c if ("a" <= c <= "z" or c == "'") else " " for c in s)
    s = _LOOSE_APOSTROPHE.sub(" ", s)
    s = " ".join(s.split())
    if not s:
        why = "only punctuation, symbols or space"
        if foreign:
            why = "letters outside the English alphabet (a-z) are not transcribed"
        raise TranscriptError(f"transcript holds no words after normalisation: {why}")
    return s


def decode_transcript(data: bytes) -> str:
    """Uploaded transcript bytes -> verbatim text, refusing what cannot be a transcript.

    Checks, in order: size (at most MAX_TRANSCRIPT_BYTES), binary content (NUL bytes or
    over MAX_CONTROL_FRACTION control characters), strict UTF-8 (a leading BOM is dropped),
    and that :func:`normalize_transcript` leaves words. Returns the text as written; callers
    normalise it when they train or score.
    """
    if len(data) > MAX_TRANSCRIPT_BYTES:
        raise TranscriptError(
            f"transcript is {len(data)} bytes; the limit is {MAX_TRANSCRIPT_BYTES} bytes (plain UTF-8 text)"
        )
    if not data:
        raise TranscriptError("transcript file is empty (0 bytes)")
    if b"\x00" in data:
        raise TranscriptError("transcript is binary data (NUL bytes), not UTF-8 text")
    try:
        text = bytes(data).decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise TranscriptError(
            f"transcript is not valid UTF-8 (byte {e.start}: {data[e.start : e.start + 1]!r}); save it as UTF-8 text"
        ) from e
    control = sum(1 for c in text if unicodedata.category(c) == "Cc" and c not in "\t\n\r\f")
    if control > MAX_CONTROL_FRACTION * len(text):
        raise TranscriptError(f"transcript is binary data ({control} control characters), not text")
    normalize_transcript(text)
    return text
