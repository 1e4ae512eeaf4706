"""Evaluation scoring: the event matcher against sed_eval, segment counts, STT rows against jiwer, the paired bootstrap."""

from __future__ import annotations

import itertools

import jiwer
import numpy as np
import pytest

from data_pipelines.events import Event, match_events, segment_counts
from train_jobs.eval_reports import (
    SWEEP_THRESHOLDS,
    detector_row,
    detector_summary,
    file_score,
    bootstrap_interval,
    paired_bootstrap,
    stt_row,
    stt_summary,
    summarize,
)

TYPES = ["glitch", "pause"]


def _random_file(rng: np.random.Generator, duration_ms: int = 6000) -> tuple[list[Event], list[Event]]:
    """References, and estimates made from them by jitter, drops and insertions (so near-collar cases are common)."""
    refs, ests = [], []
    for t in TYPES:
        for _ in range(int(rng.integers(0, 5))):
            start = int(rng.integers(0, duration_ms - 600))
            end = start + int(rng.integers(5, 600))
            refs.append(Event(t, start, end))
            if rng.random() < 0.8:
                s = max(0, start + int(rng.integers(-300, 300)))
                ests.append(Event(t, s, max(s + 1, end + int(rng.integers(-400, 400))), float(rng.random())))
        for _ in range(int(rng.integers(0, 3))):
            s = int(rng.integers(0, duration_ms - 300))
            ests.append(Event(t, s, s + int(rng.integers(5, 300)), float(rng.random())))
    return refs, ests


def test_event_matcher_counts_equal_sed_eval_on_randomized_files():
    import dcase_util  # sed_eval's own container type
    import sed_eval

    rng = np.random.default_rng(7)
    files = [_random_file(rng) for _ in range(300)]
    # Times go to sed_eval in ms (its "seconds"), so collar boundaries compare exactly as Fathom's integer ms do.
    metric = sed_eval.sound_event.EventBasedMetrics(event_label_list=TYPES, t_collar=200.0, percentage_of_length=0.5)
    ours = {t: [0, 0, 0] for t in TYPES}
    for i, (refs, ests) in enumerate(files):

        def container(events):
            return dcase_util.containers.MetaDataContainer(
                [{"event_label": e.artifact_type, "onset": float(e.start_ms), "offset": float(e.end_ms), "filename": f"f{i}"} for e in events]
            )

        metric.evaluate(reference_event_list=container(refs), estimated_event_list=container(ests))
        for t, m in match_events(refs, ests, TYPES).items():
            ours[t][0] += m.true_positives
            ours[t][1] += len(m.false_positives)
            ours[t][2] += len(m.missed)
    theirs = metric.results_class_wise_metrics()
    for t in TYPES:
        stats = metric.class_wise[t]
        assert (int(stats["Ntp"]), int(stats["Nfp"]), int(stats["Nfn"])) == tuple(ours[t]), t
        assert theirs[t]["f_measure"]["f_measure"] == pytest.approx(2 * ours[t][0] / (2 * ours[t][0] + ours[t][1] + ours[t][2]))
    assert sum(v[0] for v in ours.values()) > 200 and sum(v[1] for v in ours.values()) > 200  # both outcomes well exercised


def _brute_force_tp(refs: list[Event], ests: list[Event]) -> int:
    """The largest one-to-one matching by trying every assignment (tiny inputs only)."""

    def ok(r, e):
        return abs(r.start_ms - e.start_ms) <= 200 and abs(r.end_ms - e.end_ms) <= max(200, 0.5 * (r.end_ms - r.start_ms))

    best = 0
    if len(refs) <= len(ests):
        for perm in itertools.permutations(range(len(ests)), len(refs)):
            best = max(best, sum(ok(refs[i], ests[j]) for i, j in enumerate(perm)))
    else:
        for perm in itertools.permutations(range(len(refs)), len(ests)):
            best = max(best, sum(ok(refs[i], ests[j]) for j, i in enumerate(perm)))
    return best


def test_matching_is_maximal_and_names_every_false_positive_and_miss():
    rng = np.random.default_rng(3)
    for _ in range(150):
        refs, ests = _random_file(rng, 2000)
        matched = match_events(refs, ests, TYPES)
        for t in TYPES:
            r = [e for e in refs if e.artifact_type == t]
            e = [x for x in ests if x.artifact_type == t]
            m = matched[t]
            assert m.true_positives == _brute_force_tp(r, e)
            assert len(m.false_positives) == len(e) - m.true_positives and set(m.false_positives) <= set(e)
            assert len(m.missed) == len(r) - m.true_positives and set(m.missed) <= set(r)


def test_segment_counts_by_hand():
    refs = [Event("glitch", 100, 200), Event("glitch", 2500, 3100)]  # segments 0; 2, 3
    ests = [Event("glitch", 150, 160), Event("glitch", 1200, 1300), Event("pause", 0, 10)]  # 0; 1 / pause 0
    counts = segment_counts(refs, ests, TYPES, 4000)
    assert counts == {"glitch": (1, 1, 2), "pause": (0, 1, 0)}
    assert segment_counts([], [Event("glitch", 4500, 5200)], TYPES, 4000)["glitch"] == (0, 2, 0)  # segments 4 and 5: the grid grows


def _row(refs, ests):
    sweep = {t: [e for e in ests if e.confidence >= t] for t in SWEEP_THRESHOLDS}
    return detector_row(refs, [e for e in ests if e.confidence >= 0.5], sweep, TYPES, 6000)


def test_detector_rows_add_up_to_the_summary_and_the_sweep_includes_the_operating_point():
    rng = np.random.default_rng(11)
    files = [_random_file(rng) for _ in range(40)]
    rows = [_row(r, e) for r, e in files]
    summary = detector_summary(rows, TYPES)
    for t in TYPES:
        tp = sum(row["classes"][t]["tp"] for row in rows)
        fp = sum(len(row["classes"][t]["false_positives"]) for row in rows)
        fn = sum(len(row["classes"][t]["missed"]) for row in rows)
        c = summary["per_class"][t]
        assert (c["true_positives"], c["insertions"], c["deletions"]) == (tp, fp, fn)
        assert c["f1_score"] == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=1e-4)
        at_half = next(s for s in c["threshold_sweep"] if s["threshold"] == 0.5)
        assert at_half["f1_score"] == c["f1_score"]  # the sweep at the operating threshold is the headline
        assert c["best_f1_score"] == max(s["f1_score"] for s in c["threshold_sweep"])
        recalls = [s["recall"] for s in c["threshold_sweep"]]
        assert recalls[0] >= recalls[-1]  # a lower threshold keeps more detections
    assert summary["support"] == sum(len(r) for r, _ in files)


def test_stt_rows_equal_jiwer_and_count_keyterms():
    refs = ["the stent was placed in the artery", "she has atrial fibrillation", "no findings today"]
    hyps = ["the stint was placed in artery", "she has atrial fibrillation", "no finding today please"]
    rows = [stt_row(r, h, ["stent", "atrial fibrillation"]) for r, h in zip(refs, hyps)]
    for row, r, h in zip(rows, refs, hyps):
        assert row["word_error_rate"] == pytest.approx(100 * jiwer.wer(r, h), abs=0.01)
        assert row["character_error_rate"] == pytest.approx(100 * jiwer.cer(r, h), abs=0.01)
    summary = stt_summary(rows)
    assert summary["word_error_rate"] == pytest.approx(100 * jiwer.wer(refs, hyps), abs=0.01)
    assert summary["sentence_error_rate"] == pytest.approx(100 * 2 / 3, abs=0.01)
    assert summary["keyterms"] == {"reference": 2, "recalled": 1, "false_insertions": 0, "recall": 0.5}
    assert [a["type"] for a in rows[0]["alignment"]] == ["equal", "substitute", "equal", "delete", "equal"]


def test_paired_bootstrap_contains_the_observed_difference_and_is_seeded():
    rng = np.random.default_rng(5)
    files = [_random_file(rng) for _ in range(60)]
    good = [_row(r, e) for r, e in files]
    worse = [_row(r, [x for k, x in enumerate(e) if k % 2]) for r, e in files]  # drops half its detections
    result = paired_bootstrap("detector", good, worse, seed=1)
    assert result["ci_low"] <= result["difference"] <= result["ci_high"]
    assert result["difference"] < 0 and result["ci_high"] < 0  # dropping half the detections is clearly worse
    assert paired_bootstrap("detector", good, worse, seed=1) == result
    same = paired_bootstrap("detector", good, good)
    assert same["difference"] == same["ci_low"] == same["ci_high"] == 0.0
    report = summarize("detector", [good, worse], TYPES)
    assert report["comparisons"][0]["difference"] == pytest.approx(
        report["summaries"][1]["f1_score"] - report["summaries"][0]["f1_score"], abs=1e-3
    )
    assert file_score("detector", good[0]) == pytest.approx(detector_summary([good[0]], TYPES)["f1_score"], abs=1e-4)


def test_each_model_has_a_seeded_bootstrap_interval_around_its_headline():
    rng = np.random.default_rng(7)
    files = [_random_file(rng) for _ in range(40)]
    rows = [_row(r, [x for k, x in enumerate(e) if k % 3]) for r, e in files]  # misses a third: F1 well inside (0, 1)
    interval = bootstrap_interval("detector", rows, seed=3)
    report = summarize("detector", [rows], TYPES, seed=3)
    assert report["summaries"][0]["interval"] == interval
    assert interval["value"] == pytest.approx(report["summaries"][0]["f1_score"], abs=1e-4)
    assert interval["ci_low"] < interval["value"] < interval["ci_high"] <= 1.0
    assert bootstrap_interval("detector", rows, seed=3) == interval
    perfect = [_row(r, [Event(x.artifact_type, x.start_ms, x.end_ms, 0.9) for x in r]) for r, _ in files]
    assert (lambda i: (i["ci_low"], i["value"], i["ci_high"]))(bootstrap_interval("detector", perfect)) == (1.0, 1.0, 1.0)
