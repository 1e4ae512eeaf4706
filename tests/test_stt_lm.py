"""Word language model of a custom model's transcripts: Kneser-Ney probabilities, the
checkpoint round trip, and shallow fusion in the beam search."""

from __future__ import annotations

import math

import numpy as np
import pytest

from train_jobs.base_models import base_checkpoint
from train_jobs.models.stt import load_stt_checkpoint, with_language_model
from train_jobs.stt_decoding import beam_search
from train_jobs.stt_lm import EOS, LmScorer, LmWeights, WordLM, build_word_lm
from train_jobs.stt_vocab import BLANK, VOCAB

TEXTS = ["the patient has a heart murmur", "the patient has a fever", "a heart rate of ninety", "the fever broke"]


def _frames(*dists: dict[str, float]) -> np.ndarray:
    """[T, V] log-probs from per-frame {token: probability} ("_" is the blank)."""
    out = np.full((len(dists), len(VOCAB)), 1e-6)
    for t, dist in enumerate(dists):
        for token, p in dist.items():
            out[t, BLANK if token == "_" else VOCAB.index(token)] = p
    out /= out.sum(axis=1, keepdims=True)
    return np.log(out)


def _spell(text: str, **alternatives: float) -> np.ndarray:
    """Peaked frames spelling ``text`` with blanks between; alternatives={"3": p} puts a competing
    letter at a character position (keyword "c<i>_<letter>") with probability p."""
    frames = []
    for i, ch in enumerate(text):
        dist = {ch: 0.99}
        for key, p in alternatives.items():
            pos, letter = key[1:].split("_")
            if int(pos) == i:
                dist = {ch: 1 - p, letter: p}
        frames += [dist, {"_": 0.99}]
    return _frames(*frames)


@pytest.fixture(scope="module")
def lm() -> WordLM:
    return build_word_lm(TEXTS)


def test_every_context_is_a_distribution(lm):
    predictable = [*lm.words, EOS]
    contexts = [lm.start(), (lm.index["<s>"], lm.index["the"]), (lm.index["has"], lm.index["a"]), (lm.index["fever"],) * 2, ()]
    for history in contexts:
        assert math.isclose(sum(lm.prob(lm.index[w], history) for w in predictable), 1.0, rel_tol=1e-9)
    for order in (1, 2, 4):  # every order keeps only the context it conditions on
        other = build_word_lm(TEXTS, order=order)
        long = (other.index["the"], other.index["patient"], other.index["has"], other.index["a"])
        assert other.context(long) == long[len(long) - order + 1 :] if order > 1 else other.context(long) == ()
        assert math.isclose(sum(other.prob(other.index[w], long) for w in [*other.words, EOS]), 1.0, rel_tol=1e-9)


def test_seen_continuations_beat_unseen_ones(lm):
    h = (lm.index["has"], lm.index["a"])
    assert lm.prob(lm.index["heart"], h) > 3 * lm.prob(lm.index["ninety"], h)
    assert lm.prob(lm.index["fever"], h) > lm.prob(lm.index["broke"], h)


def test_round_trip_through_the_checkpoint(lm):
    data = with_language_model(base_checkpoint("general"), TEXTS)
    _, meta = load_stt_checkpoint(data)
    again = meta.language_model
    assert again is not None and again.vocab == lm.vocab
    h = (lm.index["a"], lm.index["heart"])
    assert again.prob(lm.index["murmur"], h) == lm.prob(lm.index["murmur"], h)
    _, plain = load_stt_checkpoint(base_checkpoint("general"))
    assert plain.language_model is None  # checkpoints without one still load
    with pytest.raises(ValueError, match="at least one"):
        build_word_lm(["", "  "])


def test_fusion_corrects_a_misspelling_the_acoustics_prefer(lm):
    # The acoustics prefer "hart" over "heart" ("e" at 0.4 against nothing, i.e. drop-out), the
    # transcripts say "heart".
    lp = _frames(
        {"a": 0.99}, {"_": 0.99}, {" ": 0.99}, {"h": 0.99}, {"_": 0.6, "e": 0.4}, {"a": 0.99}, {"r": 0.99}, {"t": 0.99},
        {"_": 0.99}, {" ": 0.99}, {"r": 0.99}, {"a": 0.99}, {"t": 0.99}, {"e": 0.99}, {"_": 0.99},
    )
    assert beam_search(lp) == "a hart rate"
    assert beam_search(lp, lm=LmScorer(lm)) == "a heart rate"


def test_clear_evidence_for_a_new_word_survives_the_language_model(lm):
    lp = _spell("the patient has a cough")
    assert beam_search(lp, lm=LmScorer(lm)) == "the patient has a cough"


def test_weights_zero_change_nothing(lm):
    lp = _spell("the fever broke", c5_a=0.45)
    scorer = LmScorer(lm, LmWeights(lm_weight=0.0, word_bonus=0.0, oov_logprob=-11.0))
    assert beam_search(lp, lm=scorer) == beam_search(lp)


def test_gain_bounds_hold_for_every_step(lm):
    """The beam search skips an extension whose bound cannot reach its beam: every step's delta
    must stay within the bound for its kind of character."""
    scorer = LmScorer(lm)
    rng = np.random.default_rng(0)
    letters = [c for c in VOCAB if c not in ("_", " ") and VOCAB.index(c) != BLANK]
    checked = 0
    for text in [*TEXTS, "the pxtient hs a fevr", "zzz heart"]:
        state = scorer.start()
        for ch in text + " " + "".join(rng.choice(letters, 4)):
            space, letter = scorer.gain_bounds(state)
            for c in range(len(VOCAB)):
                if c == BLANK:
                    continue
                _, delta = scorer.step(state, c)
                assert delta <= (space if VOCAB[c] == " " else letter) + 1e-12, (text, ch, VOCAB[c])
                checked += 1
            state, _ = scorer.step(state, VOCAB.index(ch))
    assert checked > 1000


def test_pruned_beam_search_finds_what_the_exhaustive_one_finds(monkeypatch):
    """Skipping extensions by their bound is exact: on a base model's log-probs of held-out speech,
    with the domain's terms boosted and a language model of its sentences, the search returns
    the same text as one that makes every extension."""
    import torch

    import train_jobs.stt_decoding as decoding
    from data_pipelines.stt_corpus import make_utterance, utterance_seed, utterance_text
    from train_jobs.base_models import load_base_model

    torch.set_num_threads(1)
    model, meta = load_base_model("medical")
    waves = [make_utterance(utterance_seed(4242, i), domain="medical")[0] for i in range(24)]
    with torch.inference_mode():
        lps = [lp.numpy() for lp in decoding._log_probs(model, waves, torch.device("cpu"))]
    scorer = LmScorer(build_word_lm([utterance_text(utterance_seed(4343, i), domain="medical") for i in range(400)]))
    terms = tuple(meta.vocabulary)
    pruned = [beam_search(lp, boost_terms=terms, lm=scorer) for lp in lps]
    real_reach = decoding._reach

    def no_bound(*args):
        real_reach(*args)  # still called as the search calls it
        return math.inf, math.inf

    monkeypatch.setattr(decoding, "_reach", no_bound)
    assert [beam_search(lp, boost_terms=terms, lm=scorer) for lp in lps] == pruned
