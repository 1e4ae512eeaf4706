"""Contract tests of training jobs, models and inference jobs (v1) over real HTTP."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import requests
from ray.job_submission import JobStatus, JobSubmissionClient

from cluster.db import open_session
from cluster.launcher import LaunchError
from cluster.training import create_detector_training, launch_detector_training
from data_pipelines.audio import encode_audio
from data_pipelines.synth import make_clip
from schemas.training import TrainingConfig
from tests.factories import annotate, make_dataset, register_detector, training_log, upload, upload_inference_file, wait_for

TYPES = ["glitch", "long_pause"]


@pytest.fixture(scope="module")
def trainable(platform):
    client = platform.org("training-contract")
    ds, events = make_dataset(client, TYPES + ["echo"], [45.0, 45.0, 45.0])
    published = annotate(client, ds, events, publish=True)
    return {"client": client, "dataset_id": ds, "events": events, "published_set": published}


def start(client, ds: str, set_id: str, **config) -> requests.Response:
    return client.post("/api/v1/training-jobs", json={"dataset_id": ds, "annotation_set_id": set_id, "config": {"artifact_types": TYPES, **config}})


def test_training_prerequisites_are_checked_in_order(trainable, other_org):
    client, ds, events = trainable["client"], trainable["dataset_id"], trainable["events"]
    draft = annotate(client, ds, events, publish=False)
    assert start(client, str(uuid.uuid4()), draft).json() == {"detail": "Dataset not found"}
    assert start(client, "nope", draft).json()["detail"][0]["loc"] == ["body", "dataset_id"]  # 422: not a UUID
    assert start(other_org, ds, draft).json() == {"detail": "Dataset not found"}
    r = start(client, ds, draft, artifact_types=["glitch", "hum"])
    assert r.status_code == 400 and "hum" in r.json()["detail"] and "glitch" in r.json()["detail"]
    r = start(client, ds, draft)
    assert r.status_code == 409 and "published" in r.json()["detail"]
    assert client.post(f"/api/v1/datasets/{ds}/annotation-sets/{draft}/publish").status_code == 200
    r = start(client, ds, draft, artifact_types=["glitch", "echo"])
    assert r.status_code == 400 and "echo" in r.json()["detail"]
    pending = upload(client, ds, encode_audio(np.zeros(16000, np.float32), 16000, "wav"), confirm=False)
    r = start(client, ds, draft)
    assert r.status_code == 409 and "ready" in r.json()["detail"]
    assert client.delete(f"/api/v1/datasets/{ds}/audio/{pending}").status_code == 204
    for bad in ({"epochs": 0}, {"epochs": 101}, {"validation_split": 0.05}, {"validation_split": 0.6}, {"learning_rate": 0.2},
                {"learning_rate": 0.00001}, {"batch_size": 7}, {"batch_size": 257}, {"stride_ms": 600, "chunk_size_ms": 500}):
        assert start(client, ds, draft, **bad).status_code == 422, bad


def test_too_little_audio_is_refused(platform):
    client = platform.org("short-audio")
    ds, events = make_dataset(client, TYPES, [10.0, 10.0], seed=50)
    set_id = annotate(client, ds, events, publish=True)
    r = start(client, ds, set_id)
    assert r.status_code == 400 and "minutes of audio" in r.json()["detail"]


def test_launch_failure_fails_the_job_with_its_reason(platform, trainable):
    """Both lifecycles launch through cluster.launcher.launch_run: an unreachable Jobs API fails the record."""
    client = trainable["client"]
    unreachable = platform.settings.model_copy(update={"dashboard_url": "http://127.0.0.1:9"})
    config = TrainingConfig(artifact_types=TYPES)
    with open_session(platform.settings.database_url) as s:
        job = create_detector_training(s, unreachable, client.org_id, trainable["dataset_id"], trainable["published_set"], config)
        s.commit()
        with pytest.raises(LaunchError):
            launch_detector_training(s, unreachable, job)
        assert job.status == "failed"
    got = client.get(f"/api/v1/training-jobs/{job.id}").json()
    assert got["status"] == "failed" and got["error_message"].startswith("could not start training: ")
    assert got["ray_job_id"] is None and got["completed_at"]
    log = training_log(client, job.id)
    assert (log[-1]["level"], log[-1]["message"]) == ("error", f"failed: {got['error_message']}")


def test_cancel_stops_the_ray_job_and_leaves_no_model(platform, trainable):
    client, ds = trainable["client"], trainable["dataset_id"]
    r = start(client, ds, trainable["published_set"], epochs=100, num_workers=1)
    assert r.status_code == 201, r.text
    job = r.json()
    wait_for(lambda: client.get(f"/api/v1/training-jobs/{job['id']}").json()["status"] == "running", timeout=180, what="job running")
    wait_for(lambda: len(training_log(client, job["id"])) >= 2, timeout=120, what="the job's preprocessing entry")
    r = client.delete(f"/api/v1/training-jobs/{job['id']}")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert client.delete(f"/api/v1/training-jobs/{job['id']}").status_code == 409
    jobs = JobSubmissionClient(platform.dashboard_url)
    wait_for(lambda: jobs.get_job_status(job["ray_job_id"]) in (JobStatus.STOPPED, JobStatus.FAILED), timeout=60, what="Ray job stopped")
    final = client.get(f"/api/v1/training-jobs/{job['id']}").json()
    assert final["status"] == "cancelled" and final["model_id"] is None
    listed = client.get("/api/v1/training-jobs", params={"status": "cancelled", "dataset_id": ds}).json()
    assert job["id"] in [j["id"] for j in listed["items"]]
    log = training_log(client, job["id"])
    assert any(e["message"].startswith("preprocessing: ") for e in log), log
    assert (log[-1]["level"], log[-1]["message"]) == ("warning", "cancelled: cancelled by user")


def test_model_type_filter_matches_whole_names_and_pages_in_the_database(platform, org):
    """LIKE wildcards, quotes and backslashes in a type name match only themselves; total counts the filtered list."""
    names = ["a_b", "axb", 'say "hi"', "50%", "500", "x\\y", "xy", "été"]
    ids = {n: register_detector(platform.settings, org.org_id, [n, "shared"]) for n in names}
    for name in names:
        got = org.get("/api/v1/models", params={"artifact_type": name}).json()
        assert [m["id"] for m in got["items"]] == [ids[name]] and got["total"] == 1, name
    assert org.get("/api/v1/models", params={"artifact_type": "a"}).json()["total"] == 0  # no substring matches
    pages = [org.get("/api/v1/models", params={"artifact_type": "shared", "page": p, "page_size": 3}).json() for p in (1, 2, 3)]
    assert [len(p["items"]) for p in pages] == [3, 3, 2] and {p["total"] for p in pages} == {len(names)}
    assert {m["id"] for p in pages for m in p["items"]} == set(ids.values())


def test_models_filters_patch_archive_and_isolation(platform, org, other_org):
    a = register_detector(platform.settings, org.org_id, TYPES, eval_metrics={"precision": 0.9, "recall": 0.8, "f1_score": 0.85, "per_class": {}})
    b = register_detector(platform.settings, org.org_id, ["glitch"], is_active=False)
    listed = org.get("/api/v1/models").json()
    assert {a, b} <= {m["id"] for m in listed["items"]} and listed["total"] == 2
    assert [m["id"] for m in org.get("/api/v1/models", params={"is_active": True}).json()["items"]] == [a]
    assert [m["id"] for m in org.get("/api/v1/models", params={"artifact_type": "long_pause"}).json()["items"]] == [a]
    m = org.patch(f"/api/v1/models/{a}", json={"name": "TTS Glitch Detector v2", "description": "2 h"}).json()
    assert (m["name"], m["description"], m["eval_metrics"]["f1_score"]) == ("TTS Glitch Detector v2", "2 h", 0.85)
    assert org.post("/api/v1/inference-jobs", json={"model_id": b}).status_code == 409
    assert org.patch(f"/api/v1/models/{b}", json={"is_active": True}).json()["is_active"] is True
    assert org.post("/api/v1/inference-jobs", json={"model_id": b}).status_code == 201
    for verb, kw in (("get", {}), ("patch", {"json": {"name": "x"}}), ("delete", {})):
        r = getattr(other_org, verb)(f"/api/v1/models/{a}", **kw)
        assert r.status_code == 404 and r.json() == {"detail": "Model not found"}
    assert other_org.post("/api/v1/inference-jobs", json={"model_id": a}).status_code == 404
    assert org.delete(f"/api/v1/models/{a}").status_code == 204
    got = org.get(f"/api/v1/models/{a}").json()
    assert got["is_archived"] is True and got["is_active"] is False
    assert a not in [m["id"] for m in org.get("/api/v1/models").json()["items"]]
    assert a in [m["id"] for m in org.get("/api/v1/models", params={"include_archived": True}).json()["items"]]
    r = org.post("/api/v1/inference-jobs", json={"model_id": a})
    assert r.status_code == 409 and "archived" in r.json()["detail"]
    assert org.patch(f"/api/v1/models/{a}", json={"is_active": True}).status_code == 409


@pytest.mark.parametrize(
    "config",
    [{"threshold": 1.5}, {"threshold": -0.1}, {"merge_window_ms": 5001}, {"merge_window_ms": -1}, {"min_duration_ms": 1001}, {"threshold": "high"}],
)
def test_inference_config_ranges(platform, org, config):
    model = register_detector(platform.settings, org.org_id, TYPES)
    r = org.post("/api/v1/inference-jobs", json={"model_id": model, "config": config})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][:2] == ["body", "config"]


def test_a_model_trained_on_an_older_feature_set_still_detects(platform, org):
    """Serving computes the feature set the model's checkpoint names, not the newest one."""
    model = register_detector(platform.settings, org.org_id, TYPES, feature_version=1)
    job_id = org.post("/api/v1/inference-jobs", json={"model_id": model}).json()["id"]
    clip = make_clip(6, duration_s=2.0)
    upload_inference_file(org, job_id, encode_audio(clip.waveform, clip.sample_rate, "wav"), "old-model.wav")
    job = wait_for(lambda: (lambda j: j if j["processed_files"] == 1 else None)(get_job(org, job_id)), timeout=120, what="file processed")
    assert (job["status"], job["failed_files"], job["files"][0]["error_message"]) == ("completed", 0, None)
    assert job["files"][0]["duration_ms"] == 2000


def put_file(client, job_id: str, data: bytes, name: str) -> str:
    info = client.post(f"/api/v1/inference-jobs/{job_id}/files/upload-url", json={"filename": name, "file_size_bytes": len(data)}).json()
    assert requests.post(info["upload_url"], data=info["upload_fields"], files={"file": data}, timeout=30).status_code == 204
    return info["file_id"]


def test_inference_job_lifecycle_bad_audio_and_cancel(platform, org, other_org):
    model = register_detector(platform.settings, org.org_id, TYPES)
    job = org.post("/api/v1/inference-jobs", json={"model_id": model}).json()
    assert job["config"] == {"threshold": 0.5, "merge_window_ms": 200, "min_duration_ms": 50}
    assert (job["status"], job["total_files"], job["processed_files"]) == ("pending", 0, 0)
    clip = make_clip(3, duration_s=3.0)
    good = put_file(org, job["id"], encode_audio(clip.waveform, clip.sample_rate, "mp3"), "good.mp3")
    corrupt = put_file(org, job["id"], b"ID3" + bytes(range(256)) * 20, "corrupt.mp3")
    r = org.post(f"/api/v1/inference-jobs/{job['id']}/files/confirm", json={"file_id": str(uuid.uuid4())})
    assert r.status_code == 404 and r.json()["detail"].startswith("File not found")
    for fid in (good, corrupt):
        assert org.post(f"/api/v1/inference-jobs/{job['id']}/files/confirm", json={"file_id": fid}).json()["status"] == "queued"
    done = wait_for(
        lambda: (lambda j: j if j["processed_files"] == j["total_files"] == 2 else None)(org.get(f"/api/v1/inference-jobs/{job['id']}").json()),
        timeout=120, what="inference finished",
    )
    files = {f["id"]: f for f in done["files"]}
    assert files[good]["status"] == "completed" and abs(files[good]["duration_ms"] - 3000) <= 60
    assert files[corrupt]["status"] == "failed" and files[corrupt]["error_message"]
    assert (done["status"], done["failed_files"]) == ("completed", 1)
    assert org.get(f"/api/v1/inference-jobs/{job['id']}/files/{corrupt}").json()["error_message"] == files[corrupt]["error_message"]
    assert other_org.get(f"/api/v1/inference-jobs/{job['id']}").status_code == 404
    assert other_org.get(f"/api/v1/inference-jobs/{job['id']}/files/{good}").status_code == 404
    assert other_org.get(f"/api/v1/inference-jobs/{job['id']}/files/{good}/download-url").status_code == 404

    listed = org.get("/api/v1/inference-jobs", params={"model_id": model, "status": "completed"}).json()
    assert [j["id"] for j in listed["items"]] == [job["id"]]

    second = org.post("/api/v1/inference-jobs", json={"model_id": model}).json()
    tiny = put_file(org, second["id"], b"x", "x.wav")
    r = org.post(f"/api/v1/inference-jobs/{second['id']}/files/confirm", json={"file_id": tiny})
    assert r.status_code == 200  # tiny but present; it fails in processing, not at confirm
    wait_for(
        lambda: org.get(f"/api/v1/inference-jobs/{second['id']}/files/{tiny}").json()["status"] == "failed",
        timeout=120, what="tiny file failed",
    )
    r = org.delete(f"/api/v1/inference-jobs/{second['id']}")
    assert r.status_code == 409 and r.json()["detail"] == "Inference job is already completed"

    # Cancelled while a file is still unconfirmed: that file fails and the job takes nothing more.
    third = org.post("/api/v1/inference-jobs", json={"model_id": model}).json()
    pending = put_file(org, third["id"], encode_audio(clip.waveform, clip.sample_rate, "wav"), "later.wav")
    r = org.get(f"/api/v1/inference-jobs/{third['id']}/files/{pending}/download-url")
    assert r.status_code == 409
    cancelled = org.delete(f"/api/v1/inference-jobs/{third['id']}").json()
    assert cancelled["status"] == "cancelled"
    assert org.get(f"/api/v1/inference-jobs/{third['id']}/files/{pending}").json()["status"] == "failed"
    assert org.post(f"/api/v1/inference-jobs/{third['id']}/files/confirm", json={"file_id": pending}).status_code == 409
    assert org.post(f"/api/v1/inference-jobs/{third['id']}/files/upload-url", json={"filename": "a.wav", "file_size_bytes": 10}).status_code == 409
    assert org.delete(f"/api/v1/inference-jobs/{third['id']}").status_code == 409


def test_inference_upload_limits_and_pagination(platform, org):
    model = register_detector(platform.settings, org.org_id, TYPES)
    for _ in range(3):
        org.post("/api/v1/inference-jobs", json={"model_id": model})
    job_id = org.get("/api/v1/inference-jobs").json()["items"][0]["id"]
    r = org.post(f"/api/v1/inference-jobs/{job_id}/files/upload-url", json={"filename": "big.wav", "file_size_bytes": 524_288_001})
    assert r.status_code == 422
    r = org.post(f"/api/v1/inference-jobs/{job_id}/files/upload-url", json={"filename": "notes.txt", "content_type": "text/plain", "file_size_bytes": 10})
    assert r.status_code == 400
    page = org.get("/api/v1/inference-jobs", params={"page": 2, "page_size": 2}).json()
    assert (page["total"], page["page"], page["page_size"], len(page["items"])) == (3, 2, 2, 1)
    assert org.get("/api/v1/inference-jobs", params={"page_size": 101}).status_code == 422


def test_file_left_processing_by_a_dead_worker_is_claimed_again(platform, org):
    """A claim whose lease expired (its replica died) is picked up and finished."""
    from datetime import timedelta

    from cluster.db import session_scope
    from cluster.tables import InferenceFile, utcnow

    model = register_detector(platform.settings, org.org_id, TYPES)
    job = org.post("/api/v1/inference-jobs", json={"model_id": model}).json()
    clip = make_clip(9, duration_s=2.0)
    fid = put_file(org, job["id"], encode_audio(clip.waveform, clip.sample_rate, "wav"), "orphan.wav")
    with session_scope(platform.settings.database_url) as s:
        row = s.get(InferenceFile, fid)
        row.status, row.attempts, row.queued_at = "processing", 1, utcnow()
        row.lease_until = utcnow() - timedelta(seconds=1)
    f = wait_for(
        lambda: (lambda f: f if f["status"] == "completed" else None)(org.get(f"/api/v1/inference-jobs/{job['id']}/files/{fid}").json()),
        timeout=60, what="abandoned file reclaimed",
    )
    assert abs(f["duration_ms"] - 2000) <= 20
    with session_scope(platform.settings.database_url) as s:
        assert s.get(InferenceFile, fid).attempts == 2


def test_ended_jobs_log_their_reason_once(platform, trainable):
    """A driver's failure, a Ray Job that vanished, a launch that never happened: each end is logged with its reason."""
    from datetime import timedelta

    from cluster.db import session_scope
    from cluster.tables import TrainingJob, utcnow
    from cluster.training import fail_job, reconcile_training_jobs

    client, url = trainable["client"], platform.settings.database_url
    base = {"organization_id": client.org_id, "dataset_id": trainable["dataset_id"], "annotation_set_id": trainable["published_set"]}
    with session_scope(url) as s:
        jobs = [
            TrainingJob(**base, status="running"),
            TrainingJob(**base, status="running", ray_job_id="detector-gone-from-this-cluster"),
            TrainingJob(**base, status="queued", created_at=utcnow() - timedelta(minutes=5)),
        ]
        s.add_all(jobs)
    driver, vanished, unlaunched = (j.id for j in jobs)
    fail_job(url, driver, "ValueError: features of file x are unreadable")
    fail_job(url, driver, "a second report of the same end")  # already ended: changes nothing
    reconcile_training_jobs(platform.settings)  # the dispatcher reconciles too: whichever is first ends each job
    expected = {
        driver: "failed: ValueError: features of file x are unreadable",
        vanished: "failed: the Ray job of this training run no longer exists (cluster restarted?)",
        unlaunched: "failed: training job was never launched",
    }
    for job_id, message in expected.items():
        job = client.get(f"/api/v1/training-jobs/{job_id}").json()
        assert job["status"] == "failed" and message == f"failed: {job['error_message']}"
        assert [(e["level"], e["message"]) for e in training_log(client, job_id)] == [("error", message)]


def get_job(client, job_id: str) -> dict:
    r = client.get(f"/api/v1/inference-jobs/{job_id}")
    assert r.status_code == 200, r.text
    return r.json()


def poll_like_the_vendor(client, job_id: str, seen: list[dict], timeout: float = 120) -> dict:
    """The page's polling loop (it stops on processed == total or on status failed); records every answer."""
    def step():
        job = get_job(client, job_id)
        seen.append(job)
        done = job["processed_files"] == job["total_files"] and job["total_files"] > 0
        return job if done or job["status"] == "failed" else None

    return wait_for(step, timeout=timeout, interval=0.2, what="the vendor polling loop to end")


def test_a_corrupt_first_file_never_fails_the_job(platform, org):
    """One file at a time, as the page's loop does: the corrupt first file must not end the job."""
    model = register_detector(platform.settings, org.org_id, TYPES)
    job_id = org.post("/api/v1/inference-jobs", json={"model_id": model}).json()["id"]
    seen: list[dict] = []
    upload_inference_file(org, job_id, b"ID3" + bytes(range(256)) * 20, "corrupt.mp3")
    first = poll_like_the_vendor(org, job_id, seen)
    assert (first["status"], first["failed_files"], first["error_message"]) == ("completed", 1, None)
    clip = make_clip(4, duration_s=2.0)
    upload_inference_file(org, job_id, encode_audio(clip.waveform, clip.sample_rate, "wav"), "good.wav")
    final = poll_like_the_vendor(org, job_id, seen)
    assert (final["status"], final["total_files"], final["processed_files"]) == ("completed", 2, 2)
    assert (final["failed_files"], final["error_message"]) == (1, None)
    assert [f["status"] for f in final["files"]] == ["failed", "completed"] and final["files"][0]["error_message"]
    assert all(j["status"] != "failed" and j["error_message"] is None for j in seen)


@pytest.mark.parametrize("make_unusable", ["archive", "deactivate"])
def test_new_files_are_refused_once_the_model_is_unusable(platform, org, make_unusable):
    model = register_detector(platform.settings, org.org_id, TYPES)
    job_id = org.post("/api/v1/inference-jobs", json={"model_id": model}).json()["id"]
    clip = make_clip(5, duration_s=2.0)
    wav = encode_audio(clip.waveform, clip.sample_rate, "wav")
    upload_inference_file(org, job_id, wav, "before.wav")
    wait_for(lambda: get_job(org, job_id)["status"] == "completed", timeout=120, what="first file processed")
    waiting = put_file(org, job_id, wav, "uploaded-not-confirmed.wav")
    if make_unusable == "archive":
        assert org.delete(f"/api/v1/models/{model}").status_code == 204
        reason = "Model is archived and cannot be used for inference"
    else:
        assert org.patch(f"/api/v1/models/{model}", json={"is_active": False}).status_code == 200
        reason = "Model is inactive; reactivate it with PATCH is_active=true"

    r = org.post(f"/api/v1/inference-jobs/{job_id}/files/upload-url", json={"filename": "after.wav", "file_size_bytes": len(wav)})
    assert (r.status_code, r.json()) == (409, {"detail": f"Inference job failed: {reason}"})
    r = org.post(f"/api/v1/inference-jobs/{job_id}/files/confirm", json={"file_id": waiting})
    assert (r.status_code, r.json()) == (409, {"detail": f"Inference job failed: {reason}"})
    job = get_job(org, job_id)
    assert (job["status"], job["error_message"], job["completed_at"] is not None) == ("failed", reason, True)
    files = {f["original_filename"]: f for f in job["files"]}
    assert files["before.wav"]["status"] == "completed"
    assert (files["uploaded-not-confirmed.wav"]["status"], files["uploaded-not-confirmed.wav"]["error_message"]) == ("failed", reason)
    assert [j["id"] for j in org.get("/api/v1/inference-jobs", params={"status": "failed"}).json()["items"]] == [job_id]
    if make_unusable == "deactivate":  # a failed job stays failed: reactivating the model starts no files
        assert org.patch(f"/api/v1/models/{model}", json={"is_active": True}).status_code == 200
        r = org.post(f"/api/v1/inference-jobs/{job_id}/files/upload-url", json={"filename": "a.wav", "file_size_bytes": len(wav)})
        assert r.status_code == 409 and r.json()["detail"] == f"Inference job failed: {reason}"
    assert org.delete(f"/api/v1/inference-jobs/{job_id}").status_code == 409


def test_a_model_archived_before_dispatch_fails_the_job(platform, org):
    """A file confirmed just before its model was archived is failed with the job, not attempted."""
    from cluster.db import session_scope
    from cluster.tables import InferenceFile, utcnow

    model = register_detector(platform.settings, org.org_id, TYPES)
    job_id = org.post("/api/v1/inference-jobs", json={"model_id": model}).json()["id"]
    assert org.delete(f"/api/v1/models/{model}").status_code == 204
    with session_scope(platform.settings.database_url) as s:
        row = InferenceFile(
            organization_id=org.org_id, inference_job_id=job_id, original_filename="late.wav", content_type="audio/wav",
            declared_size=10, blob_key=f"inference/{job_id}/late", status="queued", queued_at=utcnow(),
        )
        s.add(row)
        s.flush()
        file_id = row.id
    job = wait_for(lambda: (lambda j: j if j["status"] == "failed" else None)(get_job(org, job_id)), timeout=60, what="job failed")
    assert job["error_message"] == "Model is archived and cannot be used for inference"
    assert (job["total_files"], job["processed_files"], job["failed_files"]) == (1, 1, 1)
    f = org.get(f"/api/v1/inference-jobs/{job_id}/files/{file_id}").json()
    assert (f["status"], f["error_message"]) == ("failed", job["error_message"])


def backdate(database_url: str, table, row_id: str, seconds: float) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from cluster.db import session_scope
    from cluster.tables import utcnow

    with session_scope(database_url) as s:
        s.execute(update(table).where(table.id == row_id).values(created_at=utcnow() - timedelta(seconds=seconds)))


def test_unconfirmed_inference_uploads_expire(platform, org):
    """Refused or never-used uploads are removed after the URL's expiry and grace; totals stay truthful."""
    from cluster.tables import InferenceFile

    settings = platform.settings
    past_deadline = settings.upload_url_expiry_s + settings.upload_grace_s + 60
    model = register_detector(platform.settings, org.org_id, TYPES)
    job_id = org.post("/api/v1/inference-jobs", json={"model_id": model}).json()["id"]
    clip = make_clip(6, duration_s=2.0)
    upload_inference_file(org, job_id, encode_audio(clip.waveform, clip.sample_rate, "wav"), "real.wav")
    never_used = org.post(f"/api/v1/inference-jobs/{job_id}/files/upload-url", json={"filename": "n.wav", "file_size_bytes": 100}).json()
    refused = org.post(f"/api/v1/inference-jobs/{job_id}/files/upload-url", json={"filename": "r.wav", "file_size_bytes": 100}).json()
    r = org.post(f"/api/v1/inference-jobs/{job_id}/files/confirm", json={"file_id": refused["file_id"]})
    assert r.status_code == 409  # nothing uploaded: the row stays pending
    in_grace = put_file(org, job_id, encode_audio(clip.waveform, clip.sample_rate, "wav"), "slow.wav")
    for fid in (never_used["file_id"], refused["file_id"]):
        backdate(settings.database_url, InferenceFile, fid, past_deadline)
    backdate(settings.database_url, InferenceFile, in_grace, settings.upload_url_expiry_s + 1)  # URL expired, grace left

    def swept():
        job = get_job(org, job_id)
        return job if {f["id"] for f in job["files"]} == {f["id"] for f in job["files"] if f["original_filename"] in ("real.wav", "slow.wav")} else None

    job = wait_for(swept, timeout=60, what="expired uploads removed")
    assert len(job["files"]) == 2 and (job["total_files"], job["failed_files"]) == (1, 0)
    r = org.post(f"/api/v1/inference-jobs/{job_id}/files/confirm", json={"file_id": never_used["file_id"]})
    assert r.status_code == 404 and "upload URL expired" in r.json()["detail"]
    r = org.post(f"/api/v1/inference-jobs/{job_id}/files/confirm", json={"file_id": in_grace})
    assert r.status_code == 200 and r.json()["status"] in ("queued", "processing", "completed")  # the grace kept it

    late = put_file(org, job_id, encode_audio(clip.waveform, clip.sample_rate, "wav"), "late.wav")
    backdate(settings.database_url, InferenceFile, late, past_deadline)
    r = org.post(f"/api/v1/inference-jobs/{job_id}/files/confirm", json={"file_id": late})
    # confirmed at read time (409) or already swept (404): never queued after its deadline
    assert r.status_code in (404, 409) and "expired" in r.json()["detail"], r.text
    assert org.get(f"/api/v1/inference-jobs/{job_id}/files/{late}").status_code == 404
    job = wait_for(lambda: (lambda j: j if j["processed_files"] == 2 else None)(get_job(org, job_id)), timeout=60, what="files processed")
    assert (job["status"], job["total_files"], len(job["files"])) == ("completed", 2, 2)


def test_a_processed_file_has_peaks_detection_windows_and_range_audio(platform, org):
    """What a review page reads: peaks at any zoom, detections by window, stable detection ids, audio by Range."""
    detector = register_detector(platform.settings, org.org_id, ["glitch", "click"])
    job = org.post("/api/v1/inference-jobs", json={"model_id": detector, "config": {"threshold": 0.0, "min_duration_ms": 0}}).json()["id"]
    clip = make_clip(6100, duration_s=6.0)
    data = encode_audio(clip.waveform, 16_000, "wav")
    pending = org.post(f"/api/v1/inference-jobs/{job}/files/upload-url", json={"filename": "later.wav", "file_size_bytes": 100}).json()
    r = org.get(f"/api/v1/inference-jobs/{job}/files/{pending['file_id']}/peaks")
    assert r.status_code == 409 and "processed" in r.json()["detail"]
    file_id = upload_inference_file(org, job, data, "call.wav")
    base = f"/api/v1/inference-jobs/{job}/files/{file_id}"
    wait_for(lambda: org.get(base).json()["status"] == "completed", timeout=120, what="file processed")
    detections = org.get(base).json()["detections"]
    assert len(detections) == 2  # threshold 0: each type is detected over the whole file, one detection each
    assert [d["id"] for d in detections] == [f"d{i}" for i in range(len(detections))]

    whole = org.get(f"{base}/peaks", params={"pixels_per_second": 10}).json()
    assert (whole["duration_ms"], whole["start_ms"], whole["end_ms"], whole["scale"]) == (6000, 0, 6000, 127)
    assert len(whole["data"]) == 2 * 60
    mins, maxs = whole["data"][0::2], whole["data"][1::2]
    assert all(lo <= hi for lo, hi in zip(mins, maxs))
    assert abs(max(maxs) - round(min(float(clip.waveform.max()), 1.0) * 127)) <= 1
    expected_peak = round(float(clip.waveform[16_000:32_000].max()) * 127)
    one_second = org.get(f"{base}/peaks", params={"pixels_per_second": 1, "start_ms": 1000, "end_ms": 2000}).json()
    assert len(one_second["data"]) == 2 and abs(one_second["data"][1] - expected_peak) <= 1
    for bad in ({"pixels_per_second": 0}, {"pixels_per_second": 201}, {"start_ms": 7000}, {"start_ms": 3000, "end_ms": 2000}):
        r = org.get(f"{base}/peaks", params=bad)
        assert r.status_code in (400, 422) and "detail" in r.json(), (bad, r.text)

    window = {"start_ms": 1500, "end_ms": 4500, "min_confidence": 0.4}
    got = org.get(f"{base}/detections", params={**window, "types": "glitch"}).json()
    want = [d for d in detections if d["end_ms"] > 1500 and d["start_ms"] < 4500 and d["confidence"] >= 0.4 and d["artifact_type"] == "glitch"]
    assert got["items"] == sorted(want, key=lambda d: (d["start_ms"], d["end_ms"])) and got["total"] == len(want)
    assert org.get(f"{base}/detections").json()["total"] == len(detections)
    both = org.get(f"{base}/detections", params={"types": "glitch, click"}).json()["total"]
    assert both == len(detections)

    url = org.get(f"{base}/download-url").json()["url"]
    part = requests.get(url, headers={"Range": "bytes=100-1099"}, timeout=30)
    assert part.status_code == 206 and part.content == data[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{len(data)}"


def test_detections_are_reviewed_one_review_each_and_undone(platform, org, other_org):
    detector = register_detector(platform.settings, org.org_id, ["glitch", "click"])
    job = org.post("/api/v1/inference-jobs", json={"model_id": detector, "config": {"threshold": 0.0, "min_duration_ms": 0}}).json()["id"]
    file_id = upload_inference_file(org, job, encode_audio(make_clip(6200, duration_s=4.0).waveform, 16_000, "wav"), "r.wav")
    base = f"/api/v1/inference-jobs/{job}/files/{file_id}"
    wait_for(lambda: org.get(base).json()["status"] == "completed", timeout=120, what="file processed")
    d0, d1 = org.get(base).json()["detections"]  # threshold 0: one detection per type, the whole file

    accepted = org.post(f"{base}/reviews", json={"detection_id": d0["id"], "action": "accept"})
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["reviewed_by"] and accepted.json()["artifact_type"] is None
    r = org.post(f"{base}/reviews", json={"detection_id": d1["id"], "action": "correct", "start_ms": d1["start_ms"] + 40, "note": "later"})
    assert r.status_code == 201 and (r.json()["artifact_type"], r.json()["start_ms"], r.json()["end_ms"]) == (
        d1["artifact_type"], d1["start_ms"] + 40, d1["end_ms"])
    flipped = org.post(f"{base}/reviews", json={"detection_id": d0["id"], "action": "reject"})  # replaces the accept
    assert flipped.status_code == 201 and flipped.json()["id"] == accepted.json()["id"] and flipped.json()["action"] == "reject"
    listed = org.get(f"{base}/reviews").json()
    assert (listed["total"], listed["reviewed"], listed["detections"]) == (2, 2, len(org.get(base).json()["detections"]))
    assert {x["detection_id"]: x["action"] for x in listed["items"]} == {d0["id"]: "reject", d1["id"]: "correct"}

    for bad, status in (
        ({"detection_id": "d99999", "action": "accept"}, 404),
        ({"detection_id": d1["id"], "action": "correct"}, 422),  # corrects nothing
        ({"detection_id": d1["id"], "action": "accept", "start_ms": 5}, 422),
        ({"detection_id": d1["id"], "action": "correct", "artifact_type": "hum"}, 400),  # not the model's
        ({"detection_id": d1["id"], "action": "correct", "start_ms": d1["end_ms"]}, 400),
        ({"detection_id": d1["id"], "action": "correct", "end_ms": 4001}, 400),  # past the file
    ):
        r = org.post(f"{base}/reviews", json=bad)
        assert r.status_code == status and "detail" in r.json(), (bad, r.text)
    assert other_org.post(f"{base}/reviews", json={"detection_id": d1["id"], "action": "accept"}).status_code == 404

    undo = org.delete(f"{base}/reviews/{flipped.json()['id']}")
    assert undo.status_code == 204
    assert org.delete(f"{base}/reviews/{flipped.json()['id']}").status_code == 404
    assert [x["detection_id"] for x in org.get(f"{base}/reviews").json()["items"]] == [d1["id"]]


def test_queued_work_wakes_the_dispatcher(platform, org):
    """A confirmed file, a confirmed dataset file and a new evaluation each tell the Dispatcher at once
    (its polls back off while the platform is idle), and the work is done."""
    from ray import serve

    from serve_app.app import APP_NAME

    dispatcher = serve.get_deployment_handle("Dispatcher", app_name=APP_NAME)
    wakes = lambda: dispatcher.status.remote().result()["wakes"]  # noqa: E731
    model = register_detector(platform.settings, org.org_id, TYPES)
    job = org.post("/api/v1/inference-jobs", json={"model_id": model}).json()
    clip = make_clip(4, duration_s=2.0)
    before = wakes()
    upload_inference_file(org, job["id"], encode_audio(clip.waveform, clip.sample_rate, "wav"), "short.wav")
    wait_for(lambda: wakes()["inference"] > before["inference"], timeout=10, what="the dispatcher woken")
    done = wait_for(
        lambda: (lambda j: j if j["status"] == "completed" else None)(org.get(f"/api/v1/inference-jobs/{job['id']}").json()),
        timeout=60, what="inference finished",
    )
    assert done["processed_files"] == 1 and done["files"][0]["status"] == "completed"

    before = wakes()
    ds, events = make_dataset(org, TYPES, [3.0])  # waits until the file is ready
    wait_for(lambda: wakes()["dataset_audio"] == before["dataset_audio"] + 1, timeout=10, what="the dispatcher woken for the dataset file")
    set_id = annotate(org, ds, events, publish=True)
    other = register_detector(platform.settings, org.org_id, TYPES)
    r = org.post("/api/v1/evaluations", json={"models": [model, other], "data": {"dataset_id": ds, "annotation_set_id": set_id}})
    assert r.status_code == 201, r.text
    wait_for(lambda: wakes()["evaluation"] > before["evaluation"], timeout=10, what="the dispatcher woken for the evaluation")
    wait_for(lambda: org.get(f"/api/v1/evaluations/{r.json()['id']}").json()["status"] == "completed", timeout=120, what="evaluation done")
