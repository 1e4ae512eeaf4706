"""Fathom's metrics as Prometheus sees them: scraped from the test cluster's own Ray metrics endpoint.

A small flow (an inference job with good and corrupt files, a transcription, a refused request,
a webhook) runs between two scrapes; the counters move by exactly what the flow did. The Grafana
dashboard in ``cluster/grafana`` is checked against the same scrape: every series it queries exists.
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from data_pipelines.audio import encode_audio
from data_pipelines.synth import make_clip
from serve_app.metrics import NAMES
from tests.factories import Client, register_detector, upload_inference_file, wait_for
from tests.webhook_receiver import Receiver

DASHBOARD = Path(__file__).resolve().parents[1] / "cluster" / "grafana" / "fathom.json"
CLIP_S = (2.0, 3.0, 4.5)


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """sample name -> [(labels, value)] of every sample on the endpoint."""
    samples: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for family in text_string_to_metric_families(requests.get(url, timeout=30).text):
        for s in family.samples:
            samples[s.name].append((s.labels, s.value))
    return samples


def counters(samples: dict) -> dict[str, float]:
    return {name: sum(v for _, v in rows) for name, rows in samples.items() if name.startswith("ray_fathom_") and name.endswith(("_total", "_count"))}


def settled_scrape(url: str, quiet_s: float = 6.0) -> dict:
    """A scrape once Fathom's counters have not moved for ``quiet_s`` (longer than the 2 s report
    interval): work an earlier test left, and replicas not yet reporting, are all in it."""
    last, since = scrape(url), time.monotonic()
    deadline = since + 120
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = scrape(url)
        if counters(now) != counters(last):
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return now
    raise AssertionError("Fathom's counters kept moving for 2 minutes")


def total(samples: dict, name: str, **labels: str) -> float:
    """Sum over replicas (and other labels) of the samples matching ``labels``."""
    return sum(v for got, v in samples.get(name, []) if all(got.get(k) == want for k, want in labels.items()))


@pytest.fixture(scope="module")
def flow(platform, ray_cluster):
    """Scrape, run the flow, and scrape again once the counters have caught up (Ray reports every few seconds)."""
    url = ray_cluster.metrics_url
    before = settled_scrape(url)
    client = platform.org("metrics")
    detector = register_detector(platform.settings, client.org_id, ["glitch"])
    job = client.post("/api/v1/inference-jobs", json={"model_id": detector}).json()["id"]
    for i, seconds in enumerate(CLIP_S):
        upload_inference_file(client, job, encode_audio(make_clip(800 + i, duration_s=seconds).waveform, 16_000, "wav"), f"{i}.wav")
    upload_inference_file(client, job, b"RIFF this is no audio", "corrupt.wav")
    wait_for(lambda: client.get(f"/api/v1/inference-jobs/{job}").json()["status"] == "completed", timeout=120, what="inference job")

    v3 = Client(client.base_url, client.key, header="Authorization", org_id=client.org_id)
    speech = encode_audio(np.zeros(24_000, dtype=np.float32), 16_000, "wav")  # 1.5 s
    r = v3.post("/api/v3/stt", data={"model": "general", "language": "en"}, files={"audio_file": ("a.wav", speech)})
    assert r.status_code == 200, r.text
    custom = v3.post("/api/v3/custom_models", json={"name": "metrics", "language": "en"}).json()["id"]
    refused = 0
    for _ in range(25):  # log retrieval: 20 per hour
        refused += v3.get(f"/api/v3/custom_models/{custom}/log").status_code == 429
    receiver = Receiver().start()
    try:
        hook = client.post("/api/v1/webhook-endpoints", json={"url": receiver.url}).json()["id"]
        client.post(f"/api/v1/webhook-endpoints/{hook}/test")
        wait_for(receiver.all, timeout=30, what="webhook delivered")
    finally:
        receiver.stop()

    def caught_up():
        after = scrape(url)
        done = total(after, "ray_fathom_files_processed_total", kind="detector") - total(before, "ray_fathom_files_processed_total", kind="detector")
        refusals = total(after, "ray_fathom_rate_limit_refusals_total") - total(before, "ray_fathom_rate_limit_refusals_total")
        delivered = total(after, "ray_fathom_webhook_deliveries_total") - total(before, "ray_fathom_webhook_deliveries_total")
        stt = total(after, "ray_fathom_files_processed_total", kind="stt") - total(before, "ray_fathom_files_processed_total", kind="stt")
        return after if done >= 4 and refusals >= refused and delivered >= 1 and stt >= 1 else None

    wait_for(caught_up, timeout=90, interval=1, what="metrics exported")
    return before, settled_scrape(url), refused


def delta(flow, name: str, **labels: str) -> float:
    before, after, _ = flow
    return total(after, name, **labels) - total(before, name, **labels)


def test_counted_files_equal_the_files_processed(flow):
    assert delta(flow, "ray_fathom_files_processed_total", kind="detector", outcome="completed") == len(CLIP_S)
    assert delta(flow, "ray_fathom_files_processed_total", kind="detector", outcome="failed") == 1
    assert delta(flow, "ray_fathom_files_processed_total", kind="stt", outcome="completed") == 1
    assert delta(flow, "ray_fathom_audio_seconds_processed_total", kind="detector") == pytest.approx(sum(CLIP_S), abs=0.01)
    assert delta(flow, "ray_fathom_audio_seconds_processed_total", kind="stt", model="general") == pytest.approx(1.5, abs=0.01)


def test_latency_and_real_time_factor_histograms_observe_each_file(flow):
    assert delta(flow, "ray_fathom_detection_latency_seconds_count") == len(CLIP_S)
    assert 0 < delta(flow, "ray_fathom_detection_latency_seconds_sum") < 60
    assert delta(flow, "ray_fathom_transcription_latency_seconds_count", model="general") == 1
    assert delta(flow, "ray_fathom_real_time_factor_count", kind="detector") == len(CLIP_S)
    _, after, _ = flow
    buckets = [(float(labels["le"]), v) for labels, v in after["ray_fathom_detection_latency_seconds_bucket"]
               if labels.get("le") != "+Inf" and labels.get("deployment") == "Detector"]
    assert buckets and all(v >= 0 for _, v in buckets)


def test_refusals_deliveries_queues_and_training_runs_are_reported(flow):
    _, after, refused = flow
    assert refused == 5
    assert delta(flow, "ray_fathom_rate_limit_refusals_total", bucket="log_retrieval") == refused
    assert delta(flow, "ray_fathom_webhook_deliveries_total", outcome="succeeded") >= 1
    queues = {labels["queue"] for labels, _ in after["ray_fathom_queue_depth"]}
    assert queues == {"inference_files", "dataset_audio"}
    statuses = {(labels["kind"], labels["status"]) for labels, _ in after["ray_fathom_training_jobs"]}
    assert {("detector", "completed"), ("detector", "running"), ("stt", "success"), ("stt", "not_running")} <= statuses
    assert all(v >= 0 for _, v in after["ray_fathom_training_jobs"])
    assert all(labels.get("deployment") == "Dispatcher" for labels, _ in after["ray_fathom_queue_depth"])


def test_gauges_stay_exported_between_their_reads(flow, ray_cluster):
    """Ray drops a gauge not set within two export intervals (4 s here); the Dispatcher reads the
    database every 5 s, so the gauges must be republished in between for every scrape to hold them."""
    missing = []
    for i in range(8):  # 10.5 s: two read periods, more than two drop windows
        samples = scrape(ray_cluster.metrics_url)
        for name in ("ray_fathom_queue_depth", "ray_fathom_training_jobs"):
            if not samples.get(name):
                missing.append((i, name))
        time.sleep(1.5)
    assert not missing, f"gauges absent from scrapes: {missing}"


def test_every_metric_is_exported_and_tags_stay_bounded(flow):
    _, after, _ = flow
    exported = {name for name in after if name.startswith("ray_fathom_")}
    for name in NAMES:
        assert any(e.startswith(f"ray_{name}") for e in exported), (name, sorted(exported))
    models = {labels.get("model") for name in exported for labels, _ in after[name] if "model" in labels}
    assert models <= {"detector", "general", "medical", "legal", "technical", "custom"}, models
    print("\nFathom metrics in the scrape:", ", ".join(sorted(exported)))


def _queried_series(dashboard: dict) -> set[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs
    return {m for e in exprs for m in re.findall(r"\b(ray_[a-z_]+)\b", e)}


def test_the_grafana_dashboard_queries_series_the_cluster_exports(flow):
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 30
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    _, after, _ = flow
    series = _queried_series(dashboard)
    assert {s for s in series if s.startswith("ray_fathom_")} and {s for s in series if s.startswith("ray_serve_")}
    missing = sorted(s for s in series if s not in after)
    assert not missing, f"the dashboard queries series the cluster does not export: {missing}"
    wrong = []
    for p in dashboard["panels"]:
        assert p["type"] in ("timeseries", "stat", "bargauge", "row") and p.get("title")
        for t in p.get("targets", []):
            assert t["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            names = re.findall(r"\b(ray_[a-z_]+)\b", t["expr"])
            labels = {label.strip() for group in re.findall(r"by \(([^)]*)\)", t["expr"]) for label in group.split(",")}
            carried = {k for n in names for got, _ in after[n] for k in got}
            wrong += [f"{p['title']}: {label} (they carry {sorted(carried)})" for label in labels - carried]
    assert not wrong, f"grouped by labels the series do not carry: {wrong}"
