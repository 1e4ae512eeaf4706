"""Transcript normalisation (the documented cases), the vocabulary and transcript decoding."""

from __future__ import annotations

import pytest

from data_pipelines.text import (
    MAX_TRANSCRIPT_BYTES,
    TranscriptError,
    decode_transcript,
    normalize_transcript,
    number_to_words,
)
from train_jobs.stt_vocab import BLANK, VOCAB, decode, encode


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, World!", "hello world"),
        ("  many   spaces\tand\nlines ", "many spaces and lines"),
        ("Don't stop; rock 'n' roll", "don't stop rock n roll"),
        ("O'Brien’s students’ books", "o'brien's students books"),
        ("well-known e-mail/fax", "well known e mail fax"),
        ("e.g. U.S.A.", "e g u s a"),
        ("Ｈｅｌｌｏ ﬁne", "hello fine"),
        ("Straße café Søren naïve", "strasse cafe soren naive"),
        ("zero\u200bwidth", "zerowidth"),
        ("20% off & C++ at R@home", "twenty percent off and c plus plus at r at home"),
        ("Москва and hello", "and hello"),
        ("«quoted» — “smart” …", "quoted smart"),
    ],
)
def test_normalisation_of_text(text, expected):
    assert normalize_transcript(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", "zero"),
        ("7 days", "seven days"),
        ("13", "thirteen"),
        ("40", "forty"),
        ("105", "one hundred five"),
        ("999", "nine hundred ninety nine"),
        ("1000", "one thousand"),
        ("1,250", "one thousand two hundred fifty"),
        ("999999", "nine hundred ninety nine thousand nine hundred ninety nine"),
        ("1,000,000 users", "one million users"),
        ("3.05", "three point zero five"),
        ("0.5", "zero point five"),
        ("3.5kg", "three point five kg"),
        ("21st 2nd 3rd 12th 100th", "twenty first second third twelfth one hundredth"),
        ("007", "zero zero seven"),
        ("10:30", "ten thirty"),
        ("mp3", "mp three"),
        ("covid-19", "covid nineteen"),
        ("-5", "five"),
        ("1990s", "one thousand nine hundred ninety s"),
        ("123456789012345", "one two three four five six seven eight nine zero one two three four five"),
        ("٣ cats", "three cats"),  # Arabic-Indic digit
        ("end 5.", "end five"),
    ],
)
def test_digits_are_spelled_out(text, expected):
    assert normalize_transcript(text) == expected


def test_number_words_cover_the_range_and_refuse_outside_it():
    assert number_to_words(45_678) == "forty five thousand six hundred seventy eight"
    assert number_to_words(200_000) == "two hundred thousand"
    with pytest.raises(ValueError, match="0 <= n"):
        number_to_words(-1)


def test_normalisation_is_idempotent_and_only_uses_the_vocabulary():
    for text in ("The 3rd of May, 2024 at 10:30!", "It costs $1,250.50 — 20% off", "Dr. O'Neil's MRI (T2)"):
        once = normalize_transcript(text)
        assert normalize_transcript(once) == once
        assert set(once) <= set(VOCAB[1:])
        assert "  " not in once and once == once.strip()


@pytest.mark.parametrize("text", ["", "   ", "?!... ---", "日本語", "\u200b"])
def test_nothing_speakable_is_an_error(text):
    with pytest.raises(TranscriptError, match="no words"):
        normalize_transcript(text)


def test_decode_transcript_accepts_utf8_with_bom_and_returns_it_verbatim():
    data = "\ufeffThe patient's BP was 120/80.\n".encode()
    assert decode_transcript(data) == "The patient's BP was 120/80.\n"


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (b"hello\x00world", "binary"),
        (bytes(range(1, 32)) * 4, "binary"),
        ("caf\u00e9".encode("latin-1"), "not valid UTF-8"),
        (b"\xff\xfeh\x00i\x00", "binary"),  # UTF-16 text
        (b"... !!!", "no words"),
        (b"a" * (MAX_TRANSCRIPT_BYTES + 1), "limit"),
    ],
)
def test_decode_transcript_refuses_what_is_not_a_transcript(data, match):
    with pytest.raises(TranscriptError, match=match):
        decode_transcript(data)


def test_transcript_error_is_a_value_error():
    assert issubclass(TranscriptError, ValueError)


def test_vocabulary_round_trip_and_errors():
    assert VOCAB[BLANK] == "<blank>" and VOCAB[1] == " " and VOCAB[2] == "'" and len(VOCAB) == 29
    text = normalize_transcript("Don't panic, it's 42")
    ids = encode(text)
    assert BLANK not in ids
    assert decode(ids) == text
    assert decode([BLANK, *ids, BLANK]) == text
    with pytest.raises(ValueError, match="outside the vocabulary"):
        encode("Hello")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        decode([len(VOCAB)])
