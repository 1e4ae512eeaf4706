"""Faults injected into the running platform: nothing is lost and nothing stays stuck.

- the Detector replica is killed while an inference job runs: every file completes, with the
  same detections as an undisturbed run of the same files;
- the Transcriber replica is killed during a burst of /api/v3/stt requests: each request
  succeeds or gets a clean 503 in the v3 shape, none hangs;
- the whole Serve app (ingress, dispatcher, replicas) is deleted and deployed again while an
  inference job and a custom-model training run are under way: both finish;
- one Ray Train worker process is killed mid-run (custom STT and detector training): training
  restarts its workers, resumes from the latest checkpoint and completes.
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from ray import serve

from data_pipelines.audio import encode_audio
from data_pipelines.stt_corpus import make_utterance, utterance_seed
from data_pipelines.synth import make_clip
from serve_app.app import APP_NAME, AppArgs, build_app
from tests.factories import Client, kill_replicas, ray_worker_pids, register_detector, replica_names, upload_dataset_audio, wait_for
from train_jobs.stt import epoch_phase
from train_jobs.stt_vocab import DOMAIN_TERMS

pytestmark = pytest.mark.slow

N_FILES = 24
CLIP_S = 6.0
DETECTOR_TYPES = ["glitch", "clipping", "noise_burst"]
JOB_CONFIG = {"threshold": 0.5, "merge_window_ms": 100, "min_duration_ms": 20}


@pytest.fixture(scope="module")
def clips() -> list[tuple[str, bytes]]:
    return [(f"call_{i:02d}.wav", encode_audio(make_clip(3000 + i, duration_s=CLIP_S).waveform, 16_000, "wav")) for i in range(N_FILES)]


def start_job(client: Client, model_id: str, clips, *, on_confirmed=None) -> tuple[str, dict[str, str]]:
    """An inference job over ``clips``; every file is uploaded first, then all are confirmed in a burst."""
    job_id = client.post("/api/v1/inference-jobs", json={"model_id": model_id, "config": JOB_CONFIG}).json()["id"]
    staged = []
    for name, data in clips:
        info = client.post(
            f"/api/v1/inference-jobs/{job_id}/files/upload-url",
            json={"filename": name, "content_type": "audio/wav", "file_size_bytes": len(data)},
        ).json()
        up = requests.post(info["upload_url"], data=info["upload_fields"], files={"file": (name, data)}, timeout=60)
        assert up.status_code == 204, up.text
        staged.append((name, info["file_id"]))
    for i, (_, file_id) in enumerate(staged):
        r = client.post(f"/api/v1/inference-jobs/{job_id}/files/confirm", json={"file_id": file_id})
        assert r.status_code == 200 and r.json()["status"] == "queued", r.text
        if on_confirmed is not None:
            on_confirmed(i)
    return job_id, dict(staged)


def finished_detections(client: Client, job_id: str, files: dict[str, str], timeout: float = 300) -> dict[str, list]:
    def done():
        job = client.get(f"/api/v1/inference-jobs/{job_id}").json()
        return job if job["processed_files"] == job["total_files"] == len(files) else None

    job = wait_for(done, timeout=timeout, interval=1, what=f"inference job {job_id}")
    assert job["status"] == "completed", job
    out = {}
    for name, file_id in files.items():
        f = client.get(f"/api/v1/inference-jobs/{job_id}/files/{file_id}").json()
        assert f["status"] == "completed", f
        out[name] = [(d["artifact_type"], d["start_ms"], d["end_ms"], round(d["confidence"], 3)) for d in f["detections"]]
    return out


def assert_same_detections(a: dict[str, list], b: dict[str, list]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert [d[:3] for d in a[name]] == [d[:3] for d in b[name]], name
        assert np.allclose([d[3] for d in a[name]], [d[3] for d in b[name]], atol=2e-3), name


@pytest.fixture(scope="module")
def detector(platform):
    client = platform.org("faults")
    model_id = register_detector(platform.settings, client.org_id, DETECTOR_TYPES)
    return client, model_id


@pytest.fixture(scope="module")
def undisturbed(detector, clips):
    client, model_id = detector
    job_id, files = start_job(client, model_id, clips)
    out = finished_detections(client, job_id, files)
    assert sum(len(v) for v in out.values()) > 0, "the reference run found nothing to compare"
    return out


def test_detector_replica_killed_mid_job_loses_nothing(detector, clips, undisturbed):
    client, model_id = detector
    killed: list[str] = []

    def kill_after_some(i: int) -> None:
        if i == N_FILES // 3:
            killed.extend(kill_replicas("Detector"))

    job_id, files = start_job(client, model_id, clips, on_confirmed=kill_after_some)
    assert killed
    disturbed = finished_detections(client, job_id, files)
    assert_same_detections(disturbed, undisturbed)
    assert not set(replica_names("Detector")) & set(killed)  # a new replica did the rest


def test_transcriber_replica_killed_during_burst_answers_cleanly(platform, org):
    c = Client(platform.base_url, org.key, header="Authorization")
    wave, _ = make_utterance(utterance_seed(3100, 0))
    audio = encode_audio(wave, 16_000, "flac")

    def transcribe(_: int) -> requests.Response:
        return c.post(
            "/api/v3/stt", data={"model": "general", "language": "en"}, files={"audio_file": ("u.flac", audio)}, timeout=90
        )

    assert transcribe(0).status_code == 200  # replica warm, model loaded
    with ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(transcribe, i) for i in range(24)]
        time.sleep(0.3)
        kill_replicas("Transcriber")
        answers = [f.result() for f in futures]  # a hang would raise requests' timeout here
    codes = [r.status_code for r in answers]
    assert set(codes) <= {200, 503}, [(r.status_code, r.text[:200]) for r in answers]
    for r in answers:
        if r.status_code == 503:
            body = r.json()
            assert body["error_code"] == "SERVICE_UNAVAILABLE" and set(body) == {"error", "message", "error_code", "details"}
            assert int(r.headers["Retry-After"]) > 0
    wait_for(lambda: transcribe(0).status_code == 200, timeout=120, interval=2, what="transcription after the restart")


def _custom_model(c: Client, name: str, n_train: int, seed: int) -> int:
    mid = c.post("/api/v3/custom_models", json={"name": name, "language": "en", "base_model": "medical"}).json()["id"]
    for i in range(n_train):
        wave, text = make_utterance(utterance_seed(seed, i), domain="medical", terms=DOMAIN_TERMS["medical"][:20])
        r = c.put(
            f"/api/v3/custom_models/{mid}/data",
            data={"type": "train"},
            files={"audio_file": (f"{i}.wav", encode_audio(wave, 16_000, "wav")), "transcript_file": (f"{i}.txt", text.encode())},
        )
        assert r.status_code == 200, r.text
    r = c.post(f"/api/v3/custom_models/{mid}/run", json={})
    assert r.status_code == 200, r.text
    return mid


def _trained(c: Client, mid: int, timeout: float = 900) -> dict:
    model = wait_for(
        lambda: (m := c.get(f"/api/v3/custom_models/{mid}").json())["training_status"] in (4, 5) and m,
        timeout=timeout,
        interval=2,
        what=f"custom model {mid}",
    )
    return model


def _log(c: Client, mid: int) -> list[str]:
    return [e["message"] for e in c.get(f"/api/v3/custom_models/{mid}/log", params={"limit": 500}).json()["log_entries"]]


def _epoch_messages(c: Client, mid: int) -> list[str]:
    return [m for m in _log(c, mid) if "validation WER" in m]


def test_service_restart_during_inference_and_training(platform, settings_overrides, detector, clips, undisturbed):
    client, model_id = detector
    c = Client(platform.base_url, platform.org("restart").key, header="Authorization")
    mid = _custom_model(c, "restart", n_train=8, seed=3200)
    job_id, files = start_job(client, model_id, clips)

    serve.delete(APP_NAME)  # ingress, dispatcher and every replica go away
    time.sleep(2)
    serve.run(build_app(AppArgs(settings=settings_overrides)), name=APP_NAME, route_prefix="/")

    assert_same_detections(finished_detections(client, job_id, files), undisturbed)
    model = _trained(c, mid)
    assert model["training_status"] == 4, (model.get("error"), _log(c, mid))
    assert c.get(f"/api/v3/custom_models/{mid}").json()["training_metrics"]["training_utterances"] == 7


@pytest.fixture
def train_worker_pids(ray_cluster):
    return lambda: ray_worker_pids(ray_cluster.head_session_id, "RayTrainWorker")


def test_killed_train_worker_resumes_from_the_latest_checkpoint(platform, train_worker_pids):
    c = Client(platform.base_url, platform.org("worker-kill").key, header="Authorization")
    before = train_worker_pids()
    mid = _custom_model(c, "worker-kill", n_train=24, seed=3300)
    two_epochs = epoch_phase(2, platform.settings.stt_finetune_epochs)[0]  # progress after epoch 2 (status checks are rate-limited, logs more so)
    wait_for(
        lambda: c.get(f"/api/v3/custom_models/{mid}").json().get("training_progress", 0) >= two_epochs,
        timeout=600,
        interval=1.5,
        what="two finished epochs",
    )
    workers = train_worker_pids() - before
    assert len(workers) == 2, workers
    victim = sorted(workers)[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: (train_worker_pids() - before - workers), timeout=300, interval=1, what="replacement Train workers")

    model = _trained(c, mid)
    assert model["training_status"] == 4, (model.get("error"), _log(c, mid))
    epochs = _epoch_messages(c, mid)
    total = model["training_metrics"]["epochs"]
    assert sum(f"epoch 1/{total} " in m for m in epochs) == 1  # resumed, not restarted from scratch
    assert {int(m.split("epoch ")[1].split("/")[0]) for m in epochs} == set(range(1, total + 1))


def test_killed_detector_train_worker_resumes_from_the_latest_checkpoint(platform, train_worker_pids):
    client = platform.org("detector-worker-kill")
    types = ["glitch", "clipping"]
    dataset_id = client.post("/api/v1/datasets", json={"name": "kill", "artifact_types": [{"name": t} for t in types]}).json()["id"]
    truth = {}
    for i in range(12):  # 12 x 12 s: over the 120 s the test deployment requires
        clip = make_clip(3400 + i, duration_s=12.0)
        audio_id = upload_dataset_audio(client, dataset_id, encode_audio(clip.waveform, clip.sample_rate, "wav"), f"k{i}.wav")
        truth[audio_id] = [e for e in clip.events if e.artifact_type in types]
    wait_for(
        lambda: {a["processing_status"] for a in client.get(f"/api/v1/datasets/{dataset_id}/audio", params={"page_size": 100}).json()["items"]} == {"ready"},
        timeout=300,
        interval=1,
        what="dataset audio ready",
    )
    set_id = client.post(f"/api/v1/datasets/{dataset_id}/annotation-sets").json()["id"]
    bulk = [
        {"audio_file_id": a, "artifact_type": e.artifact_type, "start_ms": e.start_ms, "end_ms": e.end_ms}
        for a, events in truth.items()
        for e in events
    ]
    assert client.post(f"/api/v1/datasets/{dataset_id}/annotation-sets/{set_id}/annotations/bulk", json={"annotations": bulk}).status_code in (200, 201)
    assert client.post(f"/api/v1/datasets/{dataset_id}/annotation-sets/{set_id}/publish").status_code == 200
    before = train_worker_pids()
    config = {"artifact_types": types, "epochs": 8, "num_workers": 2, "batch_size": 32, "chunk_size_ms": 500, "stride_ms": 250}
    r = client.post("/api/v1/training-jobs", json={"dataset_id": dataset_id, "annotation_set_id": set_id, "config": config})
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]

    epochs_seen: list[int] = []

    def job() -> dict:
        j = client.get(f"/api/v1/training-jobs/{job_id}").json()
        epochs_seen.append(j["current_epoch"])
        return j

    wait_for(lambda: job()["current_epoch"] >= 2, timeout=600, interval=0.5, what="two finished epochs")
    workers = train_worker_pids() - before
    assert len(workers) == 2, workers
    os.kill(sorted(workers)[0], signal.SIGKILL)
    wait_for(lambda: (train_worker_pids() - before - workers), timeout=300, interval=1, what="replacement Train workers")
    done = wait_for(lambda: (j := job())["status"] in ("completed", "failed", "cancelled") and j, timeout=900, interval=1, what="training")
    assert done["status"] == "completed", done["error_message"]
    assert done["current_epoch"] == 8 and done["model_id"]
    assert epochs_seen == sorted(epochs_seen), epochs_seen  # resumed: the epoch count never went back to the start
