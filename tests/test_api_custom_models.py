"""v3 custom speech-to-text API over real HTTP against the deployed app.

The deployment trains with ``stt_min_training_hours`` = 0.001 (3.6 s, see conftest), so
two short synthetic utterances pass the minimum and one does not.
"""

from __future__ import annotations

import http.client
import threading
import uuid
from functools import cache
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
from ray.job_submission import JobStatus

from cluster.accounts import create_organization
from cluster.custom_models import (
    TrainingNotActive,
    append_log,
    begin_training,
    complete,
    fail,
    load_training_data,
    mark_progress,
    reconcile_stt_jobs,
    start_training,
    training_run,
)
from cluster.db import init_schema, open_session, session_scope
from cluster.launcher import LaunchError, jobs_client, stop_job
from cluster.stt_tables import CustomModel
from cluster.tables import Organization
from data_pipelines.audio import encode_audio
from data_pipelines.synth import speak
from schemas.auth import CUSTOM_MODELS_READ, CUSTOM_MODELS_WRITE, DETECTION_READ, STT
from tests.factories import Client, wait_for

SENTENCES = (
    "the patient reports mild chest pain",
    "blood pressure is one hundred twenty over eighty",
    "no further questions",
)
TRANSCRIPTS = ("The patient reports mild chest pain.", "Blood pressure is 120 over 80.", "No further questions!")


@cache
def speech(i: int, fmt: str) -> bytes:
    wave, rate = speak(SENTENCES[i])
    return encode_audio(wave, rate, fmt)


def bearer(client: Client) -> Client:
    """The same organization's key, sent as v3 clients send it."""
    return Client(client.base_url, client.key, header="Authorization", org_id=client.org_id)


def upload(
    c: Client, model_id: int, i: int = 0, *, kind: str = "train", fmt: str = "mp3", transcript: bytes | None = None
):
    files = {
        "audio_file": (f"clip_{i}.{fmt}", speech(i, fmt)),
        "transcript_file": (f"clip_{i}.txt", TRANSCRIPTS[i].encode() if transcript is None else transcript),
    }
    return c.put(f"/api/v3/custom_models/{model_id}/data", data={"type": kind}, files=files)


def create(c: Client, name: str = "model", **body) -> dict:
    r = c.post("/api/v3/custom_models", json={"name": name, "language": "en", **body})
    assert r.status_code == 201, r.text
    return r.json()


def assert_v3_error(r: requests.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "message", "error_code", "details"} and body["error_code"] == code, body
    return body


def stored_objects(platform, model_id: int) -> list[Path]:
    root = Path(platform.settings.blob_root) / "custom_models" / str(model_id)
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def stop_and_reconcile(platform, c: Client, model_id: int) -> dict:
    """End the model's Ray Job and let reconciliation record it (status 5)."""
    ray_job_id = _ray_job_id(platform, model_id)
    stop_job(platform.settings, ray_job_id)
    client = jobs_client(platform.settings)
    wait_for(
        lambda: client.get_job_status(ray_job_id) in (JobStatus.STOPPED, JobStatus.FAILED, JobStatus.SUCCEEDED),
        timeout=60,
        what="Ray Job end",
    )
    reconcile_stt_jobs(platform.settings)
    return c.get(f"/api/v3/custom_models/{model_id}").json()


def _ray_job_id(platform, model_id: int) -> str:
    with session_scope(platform.settings.database_url) as s:
        return s.get(CustomModel, model_id).ray_job_id


def test_quick_start_flow_as_documented(platform, org):
    """The quick start's requests, then the training page's error answers, retraining and the log."""
    base, headers = platform.base_url, {"Authorization": f"Bearer {org.key}"}
    r = requests.post(
        f"{base}/api/v3/custom_models",
        headers={**headers, "Content-Type": "application/json"},
        timeout=30,
        json={
            "name": "Medical Cardiology EN",
            "language": "en",
            "base_model": "medical",
            "description": "Cardiology consultations and reports",
        },
    )
    assert r.status_code == 201, r.text
    model = r.json()
    mid = model["id"]
    assert isinstance(mid, int) and model["key"] == model["model_key"] == f"custom_model_{mid}"
    assert (model["training_status"], model["base_model"], model["language"], model["base_language_id"]) == (
        1,
        "medical",
        "en",
        1,
    )
    assert model["base_language_key"] == "en" and model["language_data"] is None and model["is_trainable"] is True
    assert model["training_log"] == {"language_id": 1, "training_status": 1, "log_name": None}
    assert isinstance(model["organization_id"], int) and model["created_at"].endswith("Z")
    assert not {"training_progress", "training_metrics", "error"} & set(model)

    r = requests.put(
        f"{base}/api/v3/custom_models/{mid}/data",
        headers=headers,
        data={"type": "train"},
        timeout=60,
        files={
            "audio_file": ("cardiology_01.mp3", speech(0, "mp3")),
            "transcript_file": ("cardiology_01.txt", TRANSCRIPTS[0].encode()),
        },
    )
    assert r.status_code == 200, r.text
    up = r.json()
    assert (up["data_type"], up["filename"], up["transcript_filename"], up["training_status"]) == (
        "train",
        "cardiology_01.mp3",
        "cardiology_01.txt",
        2,
    )
    assert up["message"] and 1.0 < up["duration_seconds"] < 3.6
    r = requests.put(
        f"{base}/api/v3/custom_models/{mid}/data",
        headers=headers,
        data={"type": "test"},
        timeout=60,
        files={
            "audio_file": ("cardiology_test_01.m4a", speech(2, "m4a")),
            "transcript_file": ("cardiology_test_01.txt", TRANSCRIPTS[2].encode()),
        },
    )
    assert r.status_code == 200 and r.json()["training_status"] == 2, r.text

    def run():
        return requests.post(
            f"{base}/api/v3/custom_models/{mid}/run",
            headers={**headers, "Content-Type": "application/json"},
            json={},
            timeout=60,
        )

    details = assert_v3_error(run(), 400, "INSUFFICIENT_DATA")["details"]
    assert details["required_hours"] == 0.001 and 0 < details["current_hours"] < 0.001  # test audio does not count
    assert upload(org, mid, 1, fmt="flac").status_code == 200

    r = run()
    assert r.status_code == 200, r.text
    started = r.json()
    assert (started["id"], started["model_key"], started["training_status"]) == (mid, f"custom_model_{mid}", 3)
    assert started["status_message"] == "Training started successfully" and started["training_progress"] == 0
    assert started["started_training_at"] and started["updated_at"] and "error" not in started
    assert (
        requests.get(f"{base}/api/v3/custom_models/{mid}", headers=headers, timeout=30).json()["training_status"] == 3
    )
    assert assert_v3_error(run(), 409, "TRAINING_IN_PROGRESS")["details"] == {"training_progress": 0}
    assert_v3_error(
        requests.delete(f"{base}/api/v3/custom_models/{mid}", headers=headers, timeout=30), 409, "TRAINING_IN_PROGRESS"
    )
    assert_v3_error(upload(org, mid, 0), 409, "TRAINING_IN_PROGRESS")
    ray_job_id = _ray_job_id(platform, mid)
    assert ray_job_id == f"fathom-stt-{mid}-1"
    assert (
        jobs_client(platform.settings)
        .get_job_info(ray_job_id)
        .entrypoint.endswith(f"-m train_jobs.stt finetune --model-id {mid}")
    )

    failed = stop_and_reconcile(platform, org, mid)
    assert (
        failed["training_status"] == 5 and failed["error"] and failed["failed_at"] and "training_progress" not in failed
    )
    r = run()  # a failed model may be trained again
    assert r.status_code == 200 and r.json()["training_status"] == 3 and "error" not in r.json(), r.text
    assert _ray_job_id(platform, mid) == f"fathom-stt-{mid}-2"
    stop_and_reconcile(platform, org, mid)

    logs = requests.get(f"{base}/api/v3/custom_models/{mid}/log", headers=headers, timeout=30).json()
    assert logs["model_id"] == mid and logs["total_entries"] == len(logs["log_entries"]) >= 4
    assert [e["message"] for e in logs["log_entries"]].count("Training started") == 2
    assert {e["level"] for e in logs["log_entries"]} >= {"info", "error"} and logs["log_entries"][0][
        "timestamp"
    ].endswith("Z")
    page = org.get(f"/api/v3/custom_models/{mid}/log", params={"offset": 1, "limit": 2}).json()
    assert page["log_entries"] == logs["log_entries"][1:3] and page["total_entries"] == logs["total_entries"]

    listed = org.get(f"/api/v3/custom_models/{mid}/data").json()
    assert (listed["count"], listed["total_results"]) == (3, 3)
    assert [(d["type"], d["filename"]) for d in listed["result"]] == [
        ("train", "cardiology_01.mp3"),
        ("test", "cardiology_test_01.m4a"),
        ("train", "clip_1.flac"),
    ]
    assert set(listed["result"][0]) == {
        "id",
        "type",
        "filename",
        "transcript_filename",
        "duration_seconds",
        "created_at",
    }
    assert org.get(f"/api/v3/custom_models/{mid}/data", params={"type": "test"}).json()["total_results"] == 1


def test_training_job_functions_drive_the_model_object(platform, org):
    c = bearer(org)
    mid = create(c, "job-side")["id"]
    assert upload(c, mid, 0).status_code == 200 and upload(c, mid, 1, fmt="wav").status_code == 200
    url = platform.settings.database_url
    pairs = load_training_data(url, mid)
    assert [(p.type, p.transcript) for p in pairs] == [
        ("train", "the patient reports mild chest pain"),
        ("train", "blood pressure is one hundred twenty over eighty"),
    ]
    assert all(p.audio_key.startswith(f"custom_models/{mid}/data/") and p.duration_seconds > 1 for p in pairs)
    assert sorted(p.name for p in stored_objects(platform, mid)) == sorted(p.audio_key.rsplit("/", 1)[1] for p in pairs)
    with pytest.raises(TrainingNotActive):
        training_run(url, mid)
    assert mark_progress(url, mid, 10, "Preprocessing audio files...") is False  # not training: nothing changes

    with open_session(url) as s:  # the API's claim without launching a Ray Job
        begin_training(s, platform.settings, mid, org.org_id)
    run = training_run(url, mid)
    assert (run.run, run.base_model, run.language) == (1, "general", "en") and run.checkpoint_key.startswith(
        f"custom_models/{mid}/"
    )
    assert mark_progress(url, mid, 42.5, "Training epoch 5/20 - WER: 28.3%") is True
    model = c.get(f"/api/v3/custom_models/{mid}").json()
    assert (model["training_status"], model["training_progress"], model["status_message"]) == (
        3,
        42.5,
        "Training epoch 5/20 - WER: 28.3%",
    )
    append_log(url, mid, "checkpoint written", level="debug")
    with pytest.raises(ValueError, match="log level"):
        append_log(url, mid, "x", level="loud")
    metrics = {
        "word_error_rate": 12.5,
        "character_error_rate": 8.3,
        "accuracy_improvement": 18.7,
        "training_hours": 0.001,
    }
    assert complete(url, mid, checkpoint_key=run.checkpoint_key, training_metrics=metrics) == 1  # registry version 1
    done = c.get(f"/api/v3/custom_models/{mid}").json()
    assert (done["training_status"], done["training_metrics"], done["status_message"]) == (
        4,
        metrics,
        "Training completed successfully",
    )
    assert done["finished_training_at"] and not {"training_progress", "error"} & set(done)
    with pytest.raises(TrainingNotActive):
        complete(url, mid, checkpoint_key="elsewhere", training_metrics={})
    assert (
        fail(url, mid, "late failure") is False and c.get(f"/api/v3/custom_models/{mid}").json()["training_status"] == 4
    )
    messages = [e["message"] for e in c.get(f"/api/v3/custom_models/{mid}/log").json()["log_entries"]]
    assert messages == [
        "Training started",
        "Training epoch 5/20 - WER: 28.3%",
        "checkpoint written",
        "Training completed - Final WER: 12.5%",
    ]

    with open_session(url) as s:  # a trained model trains again; the new run has its own checkpoint key
        begin_training(s, platform.settings, mid, org.org_id)
    second = training_run(url, mid)
    assert second.run == 2 and second.checkpoint_key != run.checkpoint_key
    assert fail(url, mid, "Audio and transcript mismatch detected") is True
    failed = c.get(f"/api/v3/custom_models/{mid}").json()
    assert (failed["training_status"], failed["error"], failed["status_message"]) == (
        5,
        "Audio and transcript mismatch detected",
        "Training failed",
    )
    assert "training_metrics" not in failed


def test_run_takes_documented_augmentation_options(platform, org):
    """Out-of-range options answer 422 in the v3 error shape and start nothing; valid ones reach the job."""
    c = bearer(org)
    mid = create(c, "augmented")["id"]
    assert all(upload(c, mid, i).status_code == 200 for i in (0, 1))
    for bad in (
        {"noise": {"snr_db": [30, 10]}},
        {"speed": {"factor": [0.5, 1.0]}},
        {"spec_augment": {"freq_mask_bins": 200}},
        {"codec": {"codecs": ["aac"]}},
    ):
        r = c.post(f"/api/v3/custom_models/{mid}/run", json={"augmentation": bad})
        details = assert_v3_error(r, 422, "VALIDATION_ERROR")["details"]
        assert details["errors"] and "augmentation" in r.text, r.text
    assert c.get(f"/api/v3/custom_models/{mid}").json()["training_status"] == 2  # nothing started

    spec = requests.get(platform.base_url + "/openapi.json", timeout=30).json()
    schemas = spec["components"]["schemas"]
    assert "augmentation" in schemas["RunTraining"]["properties"]
    speed = schemas["SpeedAugment"]["properties"]["factor"]
    assert [(p["minimum"], p["maximum"]) for p in speed["prefixItems"]] == [(0.8, 1.25)] * 2
    assert schemas["NoiseAugment"]["properties"]["kinds"]["items"]["enum"] == ["white", "pink", "room"]

    r = c.post(f"/api/v3/custom_models/{mid}/run", json={"augmentation": {"telephone": None, "noise": {"snr_db": [5, 15]}}})
    assert r.status_code == 200 and r.json()["training_status"] == 3, r.text
    entrypoint = jobs_client(platform.settings).get_job_info(_ray_job_id(platform, mid)).entrypoint
    assert '"telephone":null' in entrypoint and '"snr_db":[5.0,15.0]' in entrypoint, entrypoint
    stop_and_reconcile(platform, c, mid)


def test_launch_failure_fails_the_model(platform, org):
    c = bearer(org)
    mid = create(c, "unlaunchable")["id"]
    assert upload(c, mid, 0).status_code == 200 and upload(c, mid, 1).status_code == 200
    unreachable = platform.settings.model_copy(update={"dashboard_url": "http://127.0.0.1:9"})
    with open_session(platform.settings.database_url) as s, pytest.raises(LaunchError):
        start_training(s, unreachable, mid, org.org_id)
    model = c.get(f"/api/v3/custom_models/{mid}").json()
    assert model["training_status"] == 5 and "could not start training" in model["error"]


def test_create_shapes_and_validation(platform, org, other_org):
    c = bearer(org)
    number = create(c)["organization_id"]
    r = c.post("/api/v3/custom_models", json={"name": "by id", "language_id": 1, "organization_id": number})
    assert r.status_code == 201 and r.json()["language"] == "en" and r.json()["base_model"] == "general", r.text
    other_number = create(bearer(other_org))["organization_id"]
    assert other_number != number
    assert_v3_error(
        c.post("/api/v3/custom_models", json={"name": "x", "language_id": 1, "organization_id": other_number}),
        404,
        "ORGANIZATION_NOT_FOUND",
    )
    for body in (
        {"name": "x", "language_id": 7},
        {"name": "x", "language": "fr"},
        {"name": "x"},
        {"language": "en"},
        {"name": "", "language": "en"},
        {"name": "x", "language": "en", "base_model": "finance"},
    ):
        details = assert_v3_error(c.post("/api/v3/custom_models", json=body), 422, "VALIDATION_ERROR")["details"]
        assert details["errors"], body


def test_update_with_put_and_post(platform, org):
    c = bearer(org)
    model = create(c, "draft")
    mid, number = model["id"], model["organization_id"]
    r = c.put(f"/api/v3/custom_models/{mid}", json={"name": "Legal EN", "language_id": 1, "organization_id": number})
    assert r.status_code == 200 and r.json()["name"] == "Legal EN", r.text
    r = c.post(f"/api/v3/custom_models/{mid}", json={"description": "depositions", "base_model": "legal"})
    assert r.status_code == 200 and (r.json()["description"], r.json()["base_model"], r.json()["name"]) == (
        "depositions",
        "legal",
        "Legal EN",
    )
    assert r.json()["last_modified"] > model["last_modified"]
    assert c.get(f"/api/v3/custom_models/{mid}").json()["base_model"] == "legal"
    assert_v3_error(c.put(f"/api/v3/custom_models/{mid}", json={"name": None}), 422, "VALIDATION_ERROR")
    assert_v3_error(c.put(f"/api/v3/custom_models/{mid}", json={"language_id": 3}), 422, "VALIDATION_ERROR")
    assert_v3_error(
        c.put(f"/api/v3/custom_models/{mid}", json={"organization_id": number + 10_000}), 404, "ORGANIZATION_NOT_FOUND"
    )


@pytest.mark.parametrize("path", ["/api/v3/custom_models", "/api/v3/speech-to-text/models"])
def test_list_pagination_search_sort_filters(platform, path):
    c = bearer(platform.org(f"lister-{uuid.uuid4().hex[:6]}"))
    names = ["Cardiology", "Radiology", "Depositions", "Support calls", "Board meetings"]
    bases = ["medical", "medical", "legal", "technical", "general"]
    ids = [create(c, n, base_model=b)["id"] for n, b in zip(names, bases)]
    assert upload(c, ids[1], 0).status_code == 200

    everything = c.get(path).json()
    assert (everything["count"], everything["total_results"]) == (5, 5)
    assert [m["id"] for m in everything["result"]] == ids[::-1]  # newest first by default
    page = c.get(path, params={"offset": 1, "limit": 2, "sort": "id", "direction": "asc"}).json()
    assert (page["count"], page["total_results"], [m["id"] for m in page["result"]]) == (2, 5, ids[1:3])
    same = c.get(path, params={"page": 2, "per_page": 2, "sort": "id", "direction": "asc"}).json()
    assert [m["id"] for m in same["result"]] == ids[2:4]
    assert [m["name"] for m in c.get(path, params={"sort": "name", "direction": "asc"}).json()["result"]] == sorted(
        names
    )
    found = c.get(path, params={"q": "OLOGY"}).json()
    assert sorted(m["name"] for m in found["result"]) == ["Cardiology", "Radiology"] and found["total_results"] == 2
    assert c.get(path, params={"q": "%"}).json()["total_results"] == 0  # LIKE wildcards are literal
    assert [m["id"] for m in c.get(path, params={"training_status": 2}).json()["result"]] == [ids[1]]
    assert c.get(path, params={"base_model": "medical"}).json()["total_results"] == 2
    assert c.get(path, params={"offset": 10}).json() == {"count": 0, "total_results": 5, "result": []}
    assert_v3_error(c.get(path, params={"offset": 0, "page": 1}), 422, "VALIDATION_ERROR")
    assert_v3_error(c.get(path, params={"sort": "password"}), 422, "VALIDATION_ERROR")
    assert_v3_error(c.get(path, params={"limit": 1000}), 422, "VALIDATION_ERROR")


def test_organization_isolation_on_every_endpoint(platform, org, other_org):
    c, intruder = bearer(org), bearer(other_org)
    mid = create(c, "private")["id"]
    assert upload(c, mid, 0).status_code == 200
    data_id = c.get(f"/api/v3/custom_models/{mid}/data").json()["result"][0]["id"]
    files = {"audio_file": ("a.mp3", speech(0, "mp3")), "transcript_file": ("a.txt", b"words")}
    calls = [
        ("GET", f"/api/v3/custom_models/{mid}", {}),
        ("PUT", f"/api/v3/custom_models/{mid}", {"json": {"name": "x"}}),
        ("POST", f"/api/v3/custom_models/{mid}", {"json": {"name": "x"}}),
        ("DELETE", f"/api/v3/custom_models/{mid}", {}),
        ("PUT", f"/api/v3/custom_models/{mid}/data", {"data": {"type": "train"}, "files": files}),
        ("GET", f"/api/v3/custom_models/{mid}/data", {}),
        ("DELETE", f"/api/v3/custom_models/{mid}/data/{data_id}", {}),
        ("POST", f"/api/v3/custom_models/{mid}/run", {"json": {}}),
        ("GET", f"/api/v3/custom_models/{mid}/log", {}),
    ]
    for method, url, kwargs in calls:
        assert_v3_error(intruder.request(method, url, **kwargs), 404, "MODEL_NOT_FOUND")
    assert intruder.get("/api/v3/custom_models").json()["total_results"] == 0
    r = intruder.post(
        "/api/v3/stt",
        data={"model": f"custom_model_{mid}", "language": "en"},
        files={"audio_file": ("a.mp3", speech(0, "mp3"))},
    )
    assert_v3_error(r, 404, "MODEL_NOT_FOUND")
    mine = c.get(f"/api/v3/custom_models/{mid}").json()
    assert (mine["name"], mine["training_status"]) == ("private", 2) and c.get(
        f"/api/v3/custom_models/{mid}/data"
    ).json()["total_results"] == 1


def test_auth_and_scopes(platform, org):
    base = platform.base_url
    assert_v3_error(requests.get(f"{base}/api/v3/custom_models", timeout=30), 401, "MISSING_API_KEY")
    assert_v3_error(
        requests.get(f"{base}/api/v3/custom_models", headers={"Authorization": "Bearer fth_nope"}, timeout=30),
        401,
        "INVALID_API_KEY",
    )
    assert requests.get(f"{base}/api/v3/custom_models", headers={"X-API-Key": org.key}, timeout=30).status_code == 200
    created = org.post("/api/v1/auth/api-keys", json={"name": "soon revoked"}).json()
    assert org.delete(f"/api/v1/auth/api-keys/{created['id']}").status_code == 204
    r = requests.get(f"{base}/api/v3/custom_models", headers={"Authorization": f"Bearer {created['key']}"}, timeout=30)
    assert_v3_error(r, 401, "KEY_REVOKED")

    mid = create(bearer(org))["id"]
    reader, writer, speaker, detector = (
        Client(
            base,
            org.post("/api/v1/auth/api-keys", json={"name": n, "scopes": [s]}).json()["key"],
            header="Authorization",
        )
        for n, s in (("r", CUSTOM_MODELS_READ), ("w", CUSTOM_MODELS_WRITE), ("s", STT), ("d", DETECTION_READ))
    )
    assert reader.get(f"/api/v3/custom_models/{mid}").status_code == 200
    details = assert_v3_error(
        reader.post("/api/v3/custom_models", json={"name": "x", "language": "en"}), 403, "INSUFFICIENT_SCOPE"
    )["details"]
    assert details["required_scope"] == CUSTOM_MODELS_WRITE
    assert_v3_error(reader.post(f"/api/v3/custom_models/{mid}/run", json={}), 403, "INSUFFICIENT_SCOPE")
    assert_v3_error(writer.get(f"/api/v3/custom_models/{mid}"), 403, "INSUFFICIENT_SCOPE")
    assert writer.post(f"/api/v3/custom_models/{mid}", json={"name": "renamed"}).status_code == 200
    assert_v3_error(detector.get("/api/v3/speech-to-text/models"), 403, "INSUFFICIENT_SCOPE")
    stt_form = {"data": {"model": "general", "language": "fr"}, "files": {"audio_file": ("a.mp3", speech(0, "mp3"))}}
    assert_v3_error(reader.post("/api/v3/stt", **stt_form), 403, "INSUFFICIENT_SCOPE")
    assert_v3_error(speaker.post("/api/v3/stt", **stt_form), 400, "UNSUPPORTED_LANGUAGE")  # past the scope check
    assert_v3_error(speaker.get("/api/v3/custom_models"), 403, "INSUFFICIENT_SCOPE")


def test_bad_uploads_are_refused_and_nothing_is_stored(platform, org):
    c = bearer(org)
    mid = create(c, "strict")["id"]
    refused = [
        (upload(c, mid, 0, transcript=b""), 400, "INVALID_TRANSCRIPT", "empty"),
        (upload(c, mid, 0, transcript=b" ... !!"), 400, "INVALID_TRANSCRIPT", "no words"),
        (upload(c, mid, 0, transcript="caf\xe9 au lait".encode("latin-1")), 400, "INVALID_TRANSCRIPT", "UTF-8"),
        (upload(c, mid, 0, transcript=b"\x89PNG\r\n\x1a\n\x00\x00"), 400, "INVALID_TRANSCRIPT", "binary"),
        (upload(c, mid, 0, transcript=b"a" * (1024 * 1024 + 1)), 413, "PAYLOAD_TOO_LARGE", "limit"),
        (upload(c, mid, 0, kind="validation"), 422, "VALIDATION_ERROR", "type"),
    ]
    corrupt = speech(0, "mp3")[:200] + bytes(range(256)) * 40
    for fmt, data in (("mp3", corrupt), ("wav", b"RIFF\x00\x00\x00\x00WAVEjunk"), ("flac", b"")):
        r = c.put(
            f"/api/v3/custom_models/{mid}/data",
            data={"type": "train"},
            files={"audio_file": (f"bad.{fmt}", data), "transcript_file": ("t.txt", b"hello there")},
        )
        refused.append((r, 400, "INVALID_AUDIO", "audio_file"))
    r = c.put(
        f"/api/v3/custom_models/{mid}/data",
        data={"type": "train"},
        files={
            "audio_file": ("talk.webm", encode_audio(speak("hello")[0], 22050, "webm")),
            "transcript_file": ("t.txt", b"hello"),
        },
    )
    refused.append((r, 400, "UNSUPPORTED_FORMAT", ".mp3"))
    r = c.put(
        f"/api/v3/custom_models/{mid}/data",
        data={"type": "train"},
        files={"audio_file": ("a.mp3", speech(0, "mp3")), "transcript_file": ("t.docx", b"hello")},
    )
    refused.append((r, 400, "INVALID_TRANSCRIPT", ".txt"))
    for r, status, code, hint in refused:
        body = assert_v3_error(r, status, code)
        assert hint in body["message"] or hint in str(body["details"]), body
    assert c.get(f"/api/v3/custom_models/{mid}/data").json()["total_results"] == 0
    assert c.get(f"/api/v3/custom_models/{mid}").json()["training_status"] == 1
    assert stored_objects(platform, mid) == []


def test_declared_oversize_body_is_refused_before_it_is_read(platform, org):
    mid = create(bearer(org))["id"]
    url = urlparse(platform.base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.putrequest("PUT", f"/api/v3/custom_models/{mid}/data")
        conn.putheader("Authorization", f"Bearer {org.key}")
        conn.putheader("Content-Type", "multipart/form-data; boundary=x")
        conn.putheader("Content-Length", str(10 * 1024**3))
        conn.endheaders()  # no body follows: the answer must not wait for 10 GiB
        r = conn.getresponse()
        body = r.read()
    finally:
        conn.close()
    assert r.status == 413 and b"PAYLOAD_TOO_LARGE" in body


def test_delete_data_and_model(platform, org):
    c = bearer(org)
    mid = create(c, "to delete")["id"]
    first, second = (upload(c, mid, i).json()["id"] for i in (0, 1))
    assert upload(c, mid, 2, kind="test").status_code == 200
    assert len(stored_objects(platform, mid)) == 3
    r = c.delete(f"/api/v3/custom_models/{mid}/data/{first}")
    assert r.status_code == 200 and r.json()["training_status"] == 2
    r = c.delete(f"/api/v3/custom_models/{mid}/data/{second}")
    assert r.status_code == 200 and r.json()["training_status"] == 1  # only test data left
    assert_v3_error(c.delete(f"/api/v3/custom_models/{mid}/data/{second}"), 404, "DATA_NOT_FOUND")
    assert len(stored_objects(platform, mid)) == 1
    details = assert_v3_error(c.post(f"/api/v3/custom_models/{mid}/run", json={}), 409, "MODEL_NOT_READY")["details"]
    assert details == {
        "current_status": 1,
        "required_status": 2,
        "message": "Upload training data before starting training",
    }

    r = c.delete(f"/api/v3/custom_models/{mid}")
    assert r.status_code == 200 and r.json()["id"] == mid
    assert stored_objects(platform, mid) == []
    assert_v3_error(c.get(f"/api/v3/custom_models/{mid}"), 404, "MODEL_NOT_FOUND")
    assert_v3_error(c.delete(f"/api/v3/custom_models/{mid}"), 404, "MODEL_NOT_FOUND")
    assert create(c, "after")["id"] > mid  # ids are never reused


def test_model_limit_counts_trained_and_training_models(platform):
    c = bearer(platform.org(f"gold-{uuid.uuid4().hex[:6]}", custom_model_limit=1))
    first, second = create(c, "first")["id"], create(c, "second")["id"]
    for mid in (first, second):
        assert upload(c, mid, 0).status_code == 200 and upload(c, mid, 1).status_code == 200
    url = platform.settings.database_url
    with open_session(url) as s:
        begin_training(s, platform.settings, first, c.org_id)
    complete(url, first, checkpoint_key=f"custom_models/{first}/checkpoints/run-1.pt", training_metrics={})
    details = assert_v3_error(c.post(f"/api/v3/custom_models/{second}/run", json={}), 402, "MODEL_LIMIT_EXCEEDED")[
        "details"
    ]
    assert details == {"limit": 1, "current_models": 1}
    assert c.get(f"/api/v3/custom_models/{second}").json()["training_status"] == 2  # refused: unchanged


def test_transcription_validation(platform, org, other_org):
    c = bearer(org)
    audio = {"audio_file": ("new_recording.mp3", speech(0, "mp3"))}
    ready = create(c, "not trained")["id"]
    assert upload(c, ready, 0).status_code == 200

    def stt(model, language="en", files=audio, client=c):
        return client.post("/api/v3/stt", data={"model": model, "language": language}, files=files)

    assert_v3_error(stt("whisper-large"), 404, "MODEL_NOT_FOUND")
    assert_v3_error(stt("custom_model_99999999"), 404, "MODEL_NOT_FOUND")
    assert_v3_error(stt(f"custom_model_{ready}", client=bearer(other_org)), 404, "MODEL_NOT_FOUND")
    details = assert_v3_error(stt(f"custom_model_{ready}"), 409, "MODEL_NOT_READY")["details"]
    assert details == {"current_status": 2, "required_status": 4}
    assert_v3_error(stt("general", language="nl"), 400, "UNSUPPORTED_LANGUAGE")
    assert_v3_error(stt("medical", files={"audio_file": ("notes.pdf", b"%PDF-1.4")}), 400, "UNSUPPORTED_FORMAT")
    assert_v3_error(stt("legal", files={"audio_file": ("empty.wav", b"")}), 400, "INVALID_AUDIO")
    assert_v3_error(c.post("/api/v3/stt", data={"language": "en"}, files=audio), 422, "VALIDATION_ERROR")
    r = c.post(
        "/api/v3/stt", data={"model": "general", "language": "en", "boost_terms": ",".join(["term"] * 101)}, files=audio
    )
    assert_v3_error(r, 422, "VALIDATION_ERROR")


def test_organization_numbers_are_unique_under_concurrency(database_url):
    init_schema(database_url)
    numbers: list[int] = []

    def create_some():
        for _ in range(5):
            with session_scope(database_url) as s:
                numbers.append(create_organization(s, "concurrent").number)

    threads = [threading.Thread(target=create_some) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(numbers) == len(set(numbers)) == 30 and min(numbers) >= 1
    with session_scope(database_url) as s:  # several organizations in one flush get distinct numbers too
        orgs = [Organization(name=f"batch-{i}") for i in range(4)]
        s.add_all(orgs)
        s.flush()
        assert len({o.number for o in orgs}) == 4 and not {o.number for o in orgs} & set(numbers)
