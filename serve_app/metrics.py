"""Fathom's application metrics, exported by Ray's own Prometheus endpoint (``--metrics-export-port``).

Every metric is recorded inside a Serve deployment (replicas, the Dispatcher, the Ingress), so
they are ``ray.serve.metrics`` objects: Ray adds the ``deployment``, ``replica`` and
``application`` tags and exports each name with a ``ray_`` prefix (``ray_fathom_...``). Tags
hold bounded values only: the model kind, an outcome, a status, a rate-limit bucket, and for
transcription the base model's name (every custom model is ``custom``).

Metric objects are made on first use in each process (a replica's, not the driver's).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from types import SimpleNamespace

from ray.serve import metrics

from data_pipelines.audio import AudioDecodeError

LATENCY_BOUNDARIES_S = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0]
RTF_BOUNDARIES = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0]

NAMES = (
    "fathom_audio_seconds_processed",
    "fathom_files_processed",
    "fathom_detection_latency_seconds",
    "fathom_transcription_latency_seconds",
    "fathom_real_time_factor",
    "fathom_queue_depth",
    "fathom_training_jobs",
    "fathom_webhook_deliveries",
    "fathom_rate_limit_refusals",
)


@cache
def _metrics() -> SimpleNamespace:
    return SimpleNamespace(
        audio_seconds=metrics.Counter(
            "fathom_audio_seconds_processed", description="Seconds of audio run through a model.", tag_keys=("kind", "model")
        ),
        files=metrics.Counter(
            "fathom_files_processed",
            description="Files (inference and evaluation files, transcriptions) by outcome: completed, or failed for bad audio.",
            tag_keys=("kind", "outcome"),
        ),
        detection_latency=metrics.Histogram(
            "fathom_detection_latency_seconds", description="One file's detection, from the request to its detections.",
            boundaries=LATENCY_BOUNDARIES_S,
        ),
        transcription_latency=metrics.Histogram(
            "fathom_transcription_latency_seconds", description="One file's transcription, from the request to its text.",
            boundaries=LATENCY_BOUNDARIES_S, tag_keys=("model",),
        ),
        real_time_factor=metrics.Histogram(
            "fathom_real_time_factor", description="Processing time divided by audio duration (below 1: faster than real time).",
            boundaries=RTF_BOUNDARIES, tag_keys=("kind",),
        ),
        queue_depth=metrics.Gauge(
            "fathom_queue_depth", description="Durable work waiting or in progress: inference files and dataset audio.",
            tag_keys=("queue",),
        ),
        training_jobs=metrics.Gauge(
            "fathom_training_jobs", description="Training runs by status (detector jobs; custom STT models by training status).",
            tag_keys=("kind", "status"),
        ),
        webhook_deliveries=metrics.Counter(
            "fathom_webhook_deliveries", description="Webhook attempts by outcome: succeeded, retrying, failed.",
            tag_keys=("outcome",),
        ),
        rate_limit_refusals=metrics.Counter(
            "fathom_rate_limit_refusals", description="Requests refused with 429, by v3 rate-limit bucket.", tag_keys=("bucket",)
        ),
    )


@contextmanager
def model_call(kind: str, model: str = "") -> Iterator[SimpleNamespace]:
    """Time one file through a model; the caller sets ``.audio_s``. Bad audio counts as a failed file."""
    call = SimpleNamespace(audio_s=0.0)
    started = time.perf_counter()
    m = _metrics()
    try:
        yield call
    except AudioDecodeError:
        m.files.inc(1, tags={"kind": kind, "outcome": "failed"})
        raise
    elapsed = time.perf_counter() - started
    m.files.inc(1, tags={"kind": kind, "outcome": "completed"})
    if call.audio_s > 0:
        m.audio_seconds.inc(call.audio_s, tags={"kind": kind, "model": model or kind})
    if kind == "detector":
        m.detection_latency.observe(elapsed)
    else:
        m.transcription_latency.observe(elapsed, tags={"model": model})
    if call.audio_s > 0:
        m.real_time_factor.observe(elapsed / call.audio_s, tags={"kind": kind})


# Ray 2.60 drops a gauge series that was not set again within two export intervals (its
# OpenTelemetry recorder's TTL; the interval is RAY_metrics_report_interval_ms, at least 1 s),
# so a gauge is set again every second, whatever the cadence of the reads behind it.
GAUGE_REPUBLISH_S = 1.0


class Gauges:
    """The latest queue depths and training counts, read on the caller's cadence and published on
    Ray's: ``update`` stores what the database said, ``publish`` sets every gauge to it."""

    def __init__(self) -> None:
        self.depths: dict[str, int] = {}
        self.training: dict[str, dict[str, int]] = {}

    def update(self, depths: dict[str, int], training: dict[str, dict[str, int]]) -> None:
        self.depths, self.training = dict(depths), {kind: dict(c) for kind, c in training.items()}
        self.publish()

    def publish(self) -> None:
        m = _metrics()
        for queue, depth in self.depths.items():
            m.queue_depth.set(depth, tags={"queue": queue})
        for kind, counts in self.training.items():
            for status, n in counts.items():
                m.training_jobs.set(n, tags={"kind": kind, "status": status})


def webhook_attempt(outcome: str) -> None:
    _metrics().webhook_deliveries.inc(1, tags={"outcome": outcome})


def rate_limit_refused(bucket: str) -> None:
    _metrics().rate_limit_refusals.inc(1, tags={"bucket": bucket})
