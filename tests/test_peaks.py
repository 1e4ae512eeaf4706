"""Waveform peaks: what the server stores once per file and how it answers any zoom and window."""

from __future__ import annotations

import numpy as np
import pytest

from data_pipelines import peaks


def test_peaks_hold_each_buckets_extremes_at_full_scale():
    t = np.arange(16_000) / 16_000
    wave = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    wave[8000] = 1.0  # a lone click keeps its full height
    base = peaks.compute_peaks(wave)
    assert base.shape == (peaks.BASE_BUCKETS_PER_S, 2) and base.dtype == np.int8
    assert abs(int(base[:, 1].max()) - peaks.PEAKS_SCALE) == 0 and base[100, 1] == peaks.PEAKS_SCALE
    assert 60 <= np.median(base[:, 1]) <= 64 and -64 <= np.median(base[:, 0]) <= -60
    assert peaks.compute_peaks(np.zeros(0)).shape == (0, 2)
    assert peaks.compute_peaks(np.full(10, np.nan)).tolist() == [[0, 0]]  # a short last bucket, NaN read as silence


def test_a_window_at_any_zoom_is_the_min_and_max_of_what_it_covers():
    rng = np.random.default_rng(3)
    base = peaks.compute_peaks(rng.uniform(-1, 1, 16_000 * 7).astype(np.float32) * np.linspace(0, 1, 16_000 * 7, dtype=np.float32))
    px = peaks.window(base, 10, 0, 7000)
    assert px.shape == (70, 2)
    for i in (0, 33, 69):  # brute force: 20 base buckets per pixel
        part = base[i * 20:(i + 1) * 20]
        assert px[i].tolist() == [part[:, 0].min(), part[:, 1].max()]
    zoomed = peaks.window(base, 200, 2000, 2500)
    assert zoomed.tolist() == base[400:500].tolist()  # the base rate itself
    assert peaks.window(base, 50, 6900, 99_999).shape == (5, 2)  # clipped to the end
    assert peaks.window(base, 50, 8000, 9000).shape == (0, 2)


def test_an_hour_of_peaks_is_stored_small_and_round_trips():
    hour = np.zeros((3600 * peaks.BASE_BUCKETS_PER_S, 2), dtype=np.int8)
    data = peaks.to_bytes(hour)
    assert len(data) < 1_500_000 and peaks.from_bytes(data).shape == hour.shape
    assert peaks.window(hour, 20).size * 4 < 1_000_000  # about 4 bytes a value as JSON: an hour at 20 px/s under 1 MB
    with pytest.raises(ValueError):
        peaks.from_bytes(peaks.to_bytes(np.zeros((3, 3), dtype=np.int8)))
