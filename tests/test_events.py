import json

import numpy as np
import pytest

from data_pipelines.events import Event, drop_short, event_metrics, merge_events, postprocess, probs_to_events

TYPES = ("glitch", "long_pause", "clipping", "noise_burst")


def _probs(n_frames: int, spans: dict[str, list[tuple[int, int, float]]]) -> np.ndarray:
    """[T, C] probabilities: value p on frames [a, b) of each listed type, 0 elsewhere."""
    probs = np.zeros((n_frames, len(TYPES)))
    for artifact_type, runs in spans.items():
        for a, b, p in runs:
            probs[a:b, TYPES.index(artifact_type)] = p
    return probs


def test_vendor_example_three_glitches_merge_into_one_detection():
    # glitch 1000-1100, 1150-1250, 1280-1380 ms with merge_window_ms=200 -> one 1000-1380 ms event
    probs = _probs(200, {"glitch": [(100, 110, 0.9), (115, 125, 0.8), (128, 138, 0.7)]})
    events = postprocess(probs, TYPES, threshold=0.5, merge_window_ms=200, min_duration_ms=50)
    assert [(e.artifact_type, e.start_ms, e.end_ms) for e in events] == [("glitch", 1000, 1380)]
    assert events[0].confidence == pytest.approx(0.8)  # equal-length parts: plain mean


def test_probs_to_events_runs_threshold_and_mean_confidence():
    probs = _probs(50, {"clipping": [(10, 14, 0.6), (20, 22, 0.49)]})
    probs[12, TYPES.index("clipping")] = 1.0
    events = probs_to_events(probs, TYPES, threshold=0.5)
    assert events == [Event("clipping", 100, 140, pytest.approx((0.6 * 3 + 1.0) / 4))]
    # >= threshold counts: a run exactly at the threshold is an event
    assert len(probs_to_events(probs, TYPES, threshold=0.49)) == 2
    assert probs_to_events(probs, TYPES, threshold=0.5, hop_ms=20)[0].end_ms == 280


def test_run_touching_both_ends_of_the_clip():
    probs = np.ones((7, len(TYPES)))
    events = probs_to_events(probs, TYPES, threshold=0.5)
    assert {(e.artifact_type, e.start_ms, e.end_ms) for e in events} == {(t, 0, 70) for t in TYPES}


def test_probs_shape_and_values_are_checked():
    with pytest.raises(ValueError, match="shape"):
        probs_to_events(np.zeros((10, 3)), TYPES, 0.5)
    bad = np.zeros((10, 4))
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        probs_to_events(bad, TYPES, 0.5)


def test_merge_confidence_is_duration_weighted_and_types_stay_apart():
    events = [
        Event("noise_burst", 0, 300, 0.9),
        Event("noise_burst", 400, 500, 0.5),
        Event("clipping", 310, 390, 0.7),  # in the gap, other type: not merged
    ]
    merged = merge_events(events, merge_window_ms=100)
    assert merged == [Event("noise_burst", 0, 500, pytest.approx((300 * 0.9 + 100 * 0.5) / 400)), Event("clipping", 310, 390, 0.7)]
    assert [e.start_ms for e in merge_events(events, merge_window_ms=99)] == [0, 310, 400]


def test_merge_handles_overlaps_and_unsorted_input():
    events = [Event("glitch", 500, 600, 0.4), Event("glitch", 0, 400, 0.8), Event("glitch", 100, 200, 0.2)]
    assert [(e.start_ms, e.end_ms) for e in merge_events(events, 0)] == [(0, 400), (500, 600)]


def test_drop_short_and_postprocess_min_duration():
    assert drop_short([Event("glitch", 0, 49), Event("glitch", 100, 150)], 50) == [Event("glitch", 100, 150)]
    probs = _probs(100, {"glitch": [(10, 14, 0.9)], "clipping": [(50, 60, 0.9)]})
    events = postprocess(probs, TYPES, min_duration_ms=50)
    assert [(e.artifact_type, e.start_ms, e.end_ms) for e in events] == [("clipping", 500, 600)]
    # merging happens before dropping: two short runs merge into one long enough event
    probs = _probs(100, {"glitch": [(10, 13, 0.9), (15, 18, 0.9)]})
    assert [(e.start_ms, e.end_ms) for e in postprocess(probs, TYPES, min_duration_ms=50)] == [(100, 180)]


def test_postprocess_sorts_by_start_then_type():
    probs = _probs(100, {"noise_burst": [(10, 20, 0.9)], "clipping": [(10, 20, 0.9)], "glitch": [(5, 12, 0.9)]})
    events = postprocess(probs, TYPES, min_duration_ms=0)
    assert [(e.start_ms, e.artifact_type) for e in events] == [(50, "glitch"), (100, "clipping"), (100, "noise_burst")]


def test_threshold_changes_detections():
    probs = _probs(100, {"long_pause": [(0, 90, 0.6)]})
    assert len(postprocess(probs, TYPES, threshold=0.5)) == 1
    assert postprocess(probs, TYPES, threshold=0.7) == []


# --- metrics ----------------------------------------------------------------------------------


def test_perfect_and_empty_metrics():
    ref = [Event("glitch", 1000, 1100), Event("clipping", 2000, 2500)]
    m = event_metrics([(ref, ref)], TYPES)
    assert (m["precision"], m["recall"], m["f1_score"]) == (1.0, 1.0, 1.0)
    assert m["per_class"]["glitch"]["support"] == 1 and m["per_class"]["noise_burst"]["support"] == 0
    # a class with no references and no estimates is perfect; with references only, recall 0
    assert m["per_class"]["noise_burst"] == {"precision": 1.0, "recall": 1.0, "f1_score": 1.0, "support": 0}
    missed = event_metrics([(ref, [])], TYPES)
    assert (missed["precision"], missed["recall"], missed["f1_score"]) == (1.0, 0.0, 0.0)
    spurious = event_metrics([([], ref)], TYPES)
    assert (spurious["precision"], spurious["recall"], spurious["f1_score"]) == (0.0, 1.0, 0.0)


def test_collars_onset_and_offset():
    ref = [Event("noise_burst", 1000, 1400)]
    ok = [Event("noise_burst", 1200, 1600)]  # both edges exactly 200 ms off: inside (inclusive)
    late_onset = [Event("noise_burst", 1201, 1400)]
    assert event_metrics([(ref, ok)], TYPES)["f1_score"] == 1.0
    assert event_metrics([(ref, late_onset)], TYPES)["f1_score"] == 0.0
    # the offset collar grows to half the reference length for long events
    long_ref = [Event("long_pause", 0, 2000)]
    assert event_metrics([(long_ref, [Event("long_pause", 0, 3000)])], TYPES)["f1_score"] == 1.0
    assert event_metrics([(long_ref, [Event("long_pause", 0, 3001)])], TYPES)["f1_score"] == 0.0
    assert event_metrics([(long_ref, [Event("long_pause", 0, 3001)])], TYPES, offset_collar_rate=0.6)["f1_score"] == 1.0
    assert event_metrics([(ref, [Event("noise_burst", 1000, 1650)])], TYPES, offset_collar_ms=250)["f1_score"] == 1.0


def test_matching_is_maximum_not_greedy():
    # est A matches refs 1 and 2, est B only ref 1. Greedy (A->1 first) finds 1 match; maximum finds 2.
    refs = [Event("glitch", 1000, 1100), Event("glitch", 1150, 1250)]
    ests = [Event("glitch", 1100, 1200), Event("glitch", 900, 1000)]
    m = event_metrics([(refs, ests)], TYPES)
    assert (m["precision"], m["recall"]) == (1.0, 1.0)


def test_matching_is_one_to_one_per_type_and_file():
    refs = [Event("glitch", 1000, 1100)]
    ests = [Event("glitch", 1000, 1100), Event("glitch", 1010, 1100), Event("clipping", 1000, 1100)]
    m = event_metrics([(refs, ests)], TYPES)
    assert m["per_class"]["glitch"]["precision"] == 0.5 and m["per_class"]["glitch"]["recall"] == 1.0
    assert m["per_class"]["clipping"]["precision"] == 0.0
    # an estimate in another file does not match
    other = event_metrics([(refs, []), ([], [Event("glitch", 1000, 1100)])], TYPES)
    assert other["per_class"]["glitch"]["precision"] == 0.0 and other["recall"] == 0.0


def test_micro_average_and_support_over_files():
    pairs = [
        ([Event("glitch", 0, 100), Event("clipping", 1000, 1500)], [Event("glitch", 0, 100)]),
        ([Event("glitch", 0, 100)], [Event("glitch", 5000, 5100), Event("noise_burst", 0, 300)]),
    ]
    m = event_metrics(pairs, TYPES)
    # tp=1, refs=3, estimates=3
    assert (m["precision"], m["recall"], m["f1_score"]) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert m["per_class"]["glitch"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1_score": 0.5, "support": 2})
    assert m["per_class"]["clipping"]["support"] == 1 and m["per_class"]["clipping"]["recall"] == 0.0
    json.dumps(m)  # JSON-safe
    assert all(type(v) is float for k, v in m.items() if k != "per_class")
    assert type(m["per_class"]["glitch"]["support"]) is int


def test_unknown_type_is_rejected():
    with pytest.raises(ValueError, match="unknown artifact type"):
        event_metrics([([Event("hum", 0, 10)], [])], TYPES)


def test_many_events_match_without_recursion_limits():
    refs = [Event("glitch", 300 * i, 300 * i + 100) for i in range(3000)]
    ests = [Event("glitch", e.start_ms + 150, e.end_ms + 150) for e in refs]  # each near two refs
    m = event_metrics([(refs, ests)], TYPES)
    assert m["recall"] == 1.0
