"""CTC decoding: greedy vs beam search, term boosting, word timing, long-audio segmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_pipelines.stt_corpus import make_utterance, synthesize_utterance, utterance_seed, utterance_text
from data_pipelines.text import normalize_transcript
from train_jobs.base_models import load_base_model
from train_jobs.stt_decoding import (
    MAX_SEGMENT_S,
    BoostTrie,
    align_words,
    beam_search,
    greedy_decode,
    split_segments,
    transcribe,
    transcribe_batch,
)
from train_jobs.stt_eval import error_rates
from train_jobs.stt_vocab import BLANK, VOCAB

FLOOR = 1e-6  # probability of the tokens a crafted frame does not name


def _frames(*dists: dict[str, float]) -> np.ndarray:
    """[T, V] log-probs from per-frame {token: probability} ("_" is the blank)."""
    out = np.full((len(dists), len(VOCAB)), FLOOR)
    for t, dist in enumerate(dists):
        for token, p in dist.items():
            out[t, BLANK if token == "_" else VOCAB.index(token)] = p
    out /= out.sum(axis=1, keepdims=True)
    return np.log(out)


@pytest.fixture(scope="module")
def base():
    model, meta = load_base_model("general")
    torch.set_num_threads(1)
    return model, meta


def test_greedy_merges_repeats_and_drops_blanks():
    lp = _frames(
        {"h": 0.9}, {"h": 0.9}, {"_": 0.9}, {"i": 0.9}, {" ": 0.9}, {"_": 0.9}, {"o": 0.9}, {"_": 0.9}, {"o": 0.9}
    )
    assert greedy_decode(lp) == "hi oo"


def test_beam_search_sums_paths_that_greedy_misses():
    # Every frame prefers the blank, yet "a" (paths a-a, a-_, _-a: 0.64) beats "" (0.36).
    lp = _frames({"_": 0.6, "a": 0.4}, {"_": 0.6, "a": 0.4})
    assert greedy_decode(lp) == ""
    assert beam_search(lp, beam_size=8) == "a"


def test_beam_search_agrees_with_greedy_on_peaked_frames():
    lp = _frames({"o": 0.97}, {"_": 0.97}, {"k": 0.97}, {" ": 0.97}, {"g": 0.97}, {"o": 0.97})
    assert beam_search(lp, beam_size=16) == greedy_decode(lp) == "ok go"


def _stint_or_stent(p_e: float) -> np.ndarray:
    return _frames({"s": 0.99}, {"t": 0.99}, {"e": p_e, "i": 1 - p_e}, {"n": 0.99}, {"t": 0.99}, {"_": 0.99})


def test_boosting_flips_a_near_tie_toward_the_boosted_term():
    lp = _stint_or_stent(0.45)
    assert beam_search(lp) == "stint"
    assert beam_search(lp, boost_terms=["stent placement", "stent"]) == "stent"


def test_boosting_does_not_override_clear_evidence_or_reward_abandoned_prefixes():
    # "stent" gains 5 * CHAR_BONUS + WORD_BONUS = 7 nats; a 1e-4 posterior for its "e" is 9.2 nats against it.
    assert beam_search(_stint_or_stent(1e-4), boost_terms=["stent"]) == "stint"
    # "stin" shares "st" with the term but leaves it: its bonus is taken back, "stint" still wins over "stent".
    lp = _stint_or_stent(0.45)
    assert beam_search(lp, boost_terms=["stink"]) == "stint"


def test_boost_trie_normalises_terms_and_skips_unusable_ones():
    trie = BoostTrie(["Kubernetes cluster", "COVID-19", "!!!", "日本"])
    assert len(trie) == 2
    node = 0
    for c in "covid nineteen":
        node = trie.children[node][VOCAB.index(c)]
    assert trie.terminal[node]


def test_words_are_timed_from_the_alignment():
    blank = {"_": 0.9}
    a, b, c, space = ({ch: 0.8, "_": 0.2} for ch in "abc ")
    lp = _frames(blank, a, a, b, blank, space, blank, c, {"c": 0.6, "_": 0.4}, blank)
    words = align_words(torch.from_numpy(lp).float(), "ab c", frame_shift_s=0.04, offset_s=10.0)
    assert [w.word for w in words] == ["ab", "c"]
    assert words[0].start == pytest.approx(10.04) and words[0].end == pytest.approx(10.16)
    assert words[1].start == pytest.approx(10.28) and words[1].end == pytest.approx(10.36)
    assert words[0].confidence == pytest.approx(0.8, abs=1e-3)  # mean posterior of a and b
    assert words[1].confidence == pytest.approx(0.7, abs=1e-3)  # c over its two frames


def test_segments_cover_long_audio_and_cut_in_pauses():
    rng = np.random.default_rng(0)
    speech, silence = 0.3 * rng.standard_normal(16_000 * 7), np.zeros(8_000)  # 7 s bursts, 0.5 s pauses
    wave = np.concatenate([np.concatenate([speech, silence]) for _ in range(8)]).astype(np.float32)
    segments = split_segments(wave)
    assert segments[0][0] == 0 and segments[-1][1] == wave.size
    assert all(a[1] == b[0] for a, b in zip(segments, segments[1:]))
    assert all(0 < e - s <= MAX_SEGMENT_S * 16_000 for s, e in segments)
    assert len(segments) >= 3
    for _, cut in segments[:-1]:
        assert np.abs(wave[cut - 800 : cut + 800]).max() == 0.0  # inside a pause
    assert split_segments(wave[:16_000]) == [(0, 16_000)]


def test_timestamps_are_monotonic_and_inside_the_audio(base):
    model, meta = base
    wave, text = make_utterance(utterance_seed(99, 0))
    result = transcribe(model, meta, wave)
    assert result.duration == pytest.approx(wave.size / 16_000, abs=1e-3)
    assert [w.word for w in result.words] == result.text.split()
    assert result.words, text
    for w in result.words:
        assert 0.0 <= w.start < w.end <= result.duration
        assert 0.0 < w.confidence <= 1.0
    starts = [w.start for w in result.words]
    assert starts == sorted(starts)
    assert all(a.end <= b.start + 1e-6 for a, b in zip(result.words, result.words[1:]))
    assert error_rates([text], [result.text])["character_error_rate"] < 25


def test_long_audio_is_segmented_and_merged_with_offsets(base):
    model, meta = base
    waves, refs = [], []
    for i in range(14):
        w, t = make_utterance(utterance_seed(98, i))
        waves += [w, np.zeros(6_400, np.float32)]  # 0.4 s between sentences
        refs.append(t)
    wave = np.concatenate(waves)
    assert wave.size / 16_000 > 2 * MAX_SEGMENT_S
    result = transcribe(model, meta, wave)
    starts = [w.start for w in result.words]
    assert starts == sorted(starts)
    assert result.words[-1].end > 2 * MAX_SEGMENT_S and result.words[-1].end <= result.duration
    assert error_rates([" ".join(refs)], [result.text])["character_error_rate"] < 20


def test_batch_matches_one_by_one_and_checks_input(base):
    model, meta = base
    waves = [make_utterance(utterance_seed(97, i))[0] for i in range(3)]
    batch = transcribe_batch(model, meta, waves, beam_size=1)
    assert [r.text for r in batch] == [transcribe(model, meta, w, beam_size=1).text for w in waves]
    short = transcribe(model, meta, np.zeros(100, np.float32))
    assert short.duration == pytest.approx(100 / 16_000, abs=1e-3) and short.text == "" and short.words == ()
    with pytest.raises(ValueError, match="NaN"):
        transcribe(model, meta, np.full(1600, np.nan, np.float32))
    with pytest.raises(ValueError, match="1-D"):
        transcribe(model, meta, np.zeros((2, 1600), np.float32))
    with pytest.raises(ValueError, match="beam_size"):
        transcribe(model, meta, waves[0], beam_size=0)


def test_result_serialises_for_the_api(base):
    model, meta = base
    wave, _ = make_utterance(utterance_seed(96, 0))
    out = transcribe(model, meta, wave).to_dict()
    assert set(out) == {"text", "words", "duration"}
    assert all(set(w) == {"word", "start", "end", "confidence"} for w in out["words"])
    assert out["text"] and out["text"] == normalize_transcript(out["text"])
    assert [w["word"] for w in out["words"]] == out["text"].split()


def test_utterance_text_is_the_synthesised_transcript():
    for seed, domain in ((utterance_seed(7, 0), None), (utterance_seed(7, 1), "medical"), (utterance_seed(7, 2), "legal")):
        voices = ("en-us+m3", "en-gb+f2")
        assert utterance_text(seed, domain=domain, voices=voices) == synthesize_utterance(seed, domain=domain, voices=voices).text
