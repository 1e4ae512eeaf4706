"""v1 datasets and dataset audio over real HTTP against the deployed app."""

from __future__ import annotations

import io
import uuid

import numpy as np
import pytest
import requests
import soundfile as sf

from cluster.blobs import make_blob_store
from cluster.db import session_scope, signing_secret
from cluster.tables import TrainingJob
from schemas.auth import DETECTION_READ

TYPES = [{"name": "glitch", "description": "digital dropout", "color": "#ff0000"}, {"name": "pause"}]
SAMPLE_RATE = 16_000  # Hz, of the test clips


def wav_bytes(seconds: float = 1.0) -> bytes:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    buf = io.BytesIO()
    sf.write(buf, 0.3 * np.sin(2 * np.pi * 440 * t), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def make_dataset(client, name: str | None = None, types=TYPES) -> dict:
    r = client.post("/api/v1/datasets", json={"name": name or f"ds-{uuid.uuid4().hex[:6]}", "artifact_types": types})
    assert r.status_code == 201, r.text
    return r.json()


def request_upload(client, dataset_id: str, data: bytes, filename: str = "clip.wav", content_type: str = "audio/wav"):
    return client.post(
        f"/api/v1/datasets/{dataset_id}/audio/upload-url",
        json={"filename": filename, "content_type": content_type, "file_size": len(data)},
    )


def upload_audio(client, dataset_id: str, data: bytes, filename: str = "clip.wav") -> dict:
    """The vendor client's three steps; returns the confirm answer."""
    r = request_upload(client, dataset_id, data, filename)
    assert r.status_code == 201, r.text
    info = r.json()
    stored = requests.post(info["upload_url"], data=info["fields"], files={"file": io.BytesIO(data)}, timeout=60)
    assert stored.status_code == 204, stored.text
    r = client.post(f"/api/v1/datasets/{dataset_id}/audio/confirm", json={"audio_id": info["audio_id"]})
    assert r.status_code == 200, r.text
    return r.json() | {"key": info["key"]}


@pytest.fixture(scope="module")
def blobs(platform):
    return make_blob_store(platform.settings, secret=signing_secret(platform.settings.database_url))


def assert_validation_error(r: requests.Response, loc_tail: list) -> None:
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]
    assert isinstance(errors, list) and errors
    assert all({"loc", "msg", "type"} <= e.keys() for e in errors)
    assert any(e["loc"][-len(loc_tail):] == loc_tail for e in errors), errors


# --- datasets --------------------------------------------------------------------------------


def test_create_get_and_list_a_dataset(org):
    created = make_dataset(org, "speech glitches")
    assert created["name"] == "speech glitches"
    assert created["description"] is None
    assert created["artifact_types"] == [TYPES[0], {"name": "pause", "description": None, "color": None}]
    assert created["created_at"].endswith("Z") and created["updated_at"].endswith("Z")
    assert uuid.UUID(created["id"])

    got = org.get(f"/api/v1/datasets/{created['id']}")
    assert got.status_code == 200 and got.json() == created
    listed = org.get("/api/v1/datasets").json()
    assert listed == {"items": [created], "total": 1, "page": 1, "page_size": 20}


def test_create_dataset_validation_errors(org):
    assert_validation_error(org.post("/api/v1/datasets", json={"name": "x"}), ["artifact_types"])
    assert_validation_error(org.post("/api/v1/datasets", json={"name": "x", "artifact_types": []}), ["artifact_types"])
    assert_validation_error(
        org.post("/api/v1/datasets", json={"name": "x", "artifact_types": [{"name": "bad name!"}]}),
        ["artifact_types", 0, "name"],
    )
    r = org.post("/api/v1/datasets", json={"name": "x", "artifact_types": [{"name": "a"}, {"name": "a"}]})
    assert r.status_code == 422 and "unique" in r.json()["detail"][0]["msg"]
    assert_validation_error(org.post("/api/v1/datasets", json={"name": "", "artifact_types": TYPES}), ["name"])


def test_list_pages_newest_first_and_searches_names(org):
    ids = [make_dataset(org, name)["id"] for name in ("Alpha one", "beta two", "ALPHA three")]
    first = org.get("/api/v1/datasets", params={"page_size": 2}).json()
    assert (first["total"], first["page"], first["page_size"]) == (3, 1, 2)
    assert [d["id"] for d in first["items"]] == [ids[2], ids[1]]
    second = org.get("/api/v1/datasets", params={"page_size": 2, "page": 2}).json()
    assert [d["id"] for d in second["items"]] == [ids[0]] and second["total"] == 3
    assert org.get("/api/v1/datasets", params={"page": 3, "page_size": 2}).json()["items"] == []

    found = org.get("/api/v1/datasets", params={"q": "alpha"}).json()
    assert found["total"] == 2 and [d["id"] for d in found["items"]] == [ids[2], ids[0]]
    assert org.get("/api/v1/datasets", params={"q": "%"}).json()["total"] == 0  # LIKE wildcards are literal

    assert_validation_error(org.get("/api/v1/datasets", params={"page_size": 0}), ["page_size"])
    assert_validation_error(org.get("/api/v1/datasets", params={"page_size": 101}), ["page_size"])
    assert_validation_error(org.get("/api/v1/datasets", params={"page": 0}), ["page"])


def test_patch_renames_describes_and_adds_types(org):
    ds = make_dataset(org)
    r = org.patch(f"/api/v1/datasets/{ds['id']}", json={"name": "renamed", "description": "studio takes"})
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["description"], r.json()["artifact_types"]) == ("renamed", "studio takes", ds["artifact_types"])
    assert r.json()["updated_at"] >= ds["updated_at"]

    types = [*ds["artifact_types"], {"name": "clipping", "description": None, "color": "blue"}]
    r = org.patch(f"/api/v1/datasets/{ds['id']}", json={"artifact_types": types, "description": None})
    assert r.status_code == 200
    assert r.json()["artifact_types"] == types and r.json()["description"] is None and r.json()["name"] == "renamed"

    # a type nothing uses can be removed
    r = org.patch(f"/api/v1/datasets/{ds['id']}", json={"artifact_types": types[1:]})
    assert r.status_code == 200 and [t["name"] for t in r.json()["artifact_types"]] == ["pause", "clipping"]

    r = org.patch(f"/api/v1/datasets/{ds['id']}", json={"name": None})
    assert r.status_code == 400 and r.json() == {"detail": "name cannot be null; omit a field to leave it unchanged"}
    assert_validation_error(org.patch(f"/api/v1/datasets/{ds['id']}", json={"artifact_types": []}), ["artifact_types"])
    assert org.patch(f"/api/v1/datasets/{uuid.uuid4()}", json={"name": "x"}).json() == {"detail": "Dataset not found"}


def test_delete_removes_the_dataset_its_audio_and_its_blobs(org, blobs):
    ds = make_dataset(org)
    confirmed = upload_audio(org, ds["id"], wav_bytes(1.0))
    assert blobs.exists(confirmed["key"])
    r = org.delete(f"/api/v1/datasets/{ds['id']}")
    assert r.status_code == 204 and r.content == b""
    assert org.get(f"/api/v1/datasets/{ds['id']}").status_code == 404
    assert org.get(f"/api/v1/datasets/{ds['id']}/audio/{confirmed['audio_id']}").status_code == 404
    assert not blobs.exists(confirmed["key"])
    assert org.delete(f"/api/v1/datasets/{ds['id']}").status_code == 404


def test_delete_is_refused_while_a_training_job_of_it_is_active(platform, org):
    ds = make_dataset(org)
    aset = org.post(f"/api/v1/datasets/{ds['id']}/annotation-sets").json()
    # A queued record the launcher has not submitted yet: the state a user sees for a moment after POST.
    with session_scope(platform.settings.database_url) as s:
        job = TrainingJob(organization_id=org.org_id, dataset_id=ds["id"], annotation_set_id=aset["id"], status="queued")
        s.add(job)
        s.flush()
        job_id = job.id
    r = org.delete(f"/api/v1/datasets/{ds['id']}")
    assert r.status_code == 409
    assert job_id in r.json()["detail"] and "cancel it first" in r.json()["detail"]
    assert org.get(f"/api/v1/datasets/{ds['id']}").status_code == 200

    with session_scope(platform.settings.database_url) as s:
        s.get(TrainingJob, job_id).status = "cancelled"
    assert org.delete(f"/api/v1/datasets/{ds['id']}").status_code == 204


def test_another_organization_sees_none_of_it(org, other_org):
    ds = make_dataset(org)
    audio = request_upload(org, ds["id"], b"\0" * 100).json()
    base = f"/api/v1/datasets/{ds['id']}"
    not_found = {"detail": "Dataset not found"}
    assert other_org.get(base).json() == not_found
    assert other_org.patch(base, json={"name": "mine"}).json() == not_found
    assert other_org.delete(base).json() == not_found
    assert other_org.get(f"{base}/audio").json() == not_found
    assert other_org.get(f"{base}/audio/{audio['audio_id']}").json() == not_found
    assert other_org.delete(f"{base}/audio/{audio['audio_id']}").status_code == 404
    assert other_org.post(f"{base}/audio/confirm", json={"audio_id": audio["audio_id"]}).status_code == 404
    assert request_upload(other_org, ds["id"], b"\0" * 100).json() == not_found
    assert other_org.get("/api/v1/datasets").json()["total"] == 0
    assert org.get(base).json()["name"] == ds["name"]  # untouched


def test_scopes_and_keys_are_enforced(platform, org):
    reader = platform.org("readers", scopes=[DETECTION_READ])
    assert reader.get("/api/v1/datasets").status_code == 200
    r = reader.post("/api/v1/datasets", json={"name": "x", "artifact_types": TYPES})
    assert r.status_code == 403 and "detection:write" in r.json()["detail"]
    anonymous = requests.get(f"{platform.base_url}/api/v1/datasets", timeout=30)
    assert anonymous.status_code == 401 and anonymous.json() == {"detail": "Invalid or missing API key"}


# --- dataset audio ---------------------------------------------------------------------------


def test_upload_flow_with_the_vendor_client_code(org, blobs):
    ds = make_dataset(org)
    data = wav_bytes(1.5)
    r = request_upload(org, ds["id"], data, filename="take 1.wav")
    assert r.status_code == 201, r.text
    info = r.json()
    assert set(info) == {"audio_id", "upload_url", "fields", "key", "expires_in"}
    assert info["key"] == f"datasets/{ds['id']}/audio/{info['audio_id']}"
    assert info["expires_in"] > 0 and info["fields"]["key"] == info["key"]

    pending = org.get(f"/api/v1/datasets/{ds['id']}/audio/{info['audio_id']}").json()
    assert pending["processing_status"] == "pending" and pending["original_filename"] == "take 1.wav"
    assert (pending["duration_ms"], pending["sample_rate"], pending["channels"], pending["error_message"]) == (None,) * 4

    with io.BytesIO(data) as f:
        stored = requests.post(info["upload_url"], data=info["fields"], files={"file": f}, timeout=60)
    assert stored.status_code == 204
    assert blobs.get_bytes(info["key"]) == data

    r = org.post(f"/api/v1/datasets/{ds['id']}/audio/confirm", json={"audio_id": info["audio_id"]})
    assert r.status_code == 200, r.text
    assert r.json()["audio_id"] == info["audio_id"] and r.json()["status"] == "normalizing"
    assert r.json()["message"] == "Upload confirmed; the file is queued for processing"

    # confirming again answers the current status and never moves the file back
    again = org.post(f"/api/v1/datasets/{ds['id']}/audio/confirm", json={"audio_id": info["audio_id"]})
    assert again.status_code == 200
    assert again.json()["status"] in ("normalizing", "embedding", "ready", "failed")
    assert again.json()["message"].startswith("Already confirmed")
    assert org.get(f"/api/v1/datasets/{ds['id']}/audio/{info['audio_id']}").json()["processing_status"] != "pending"


def test_confirm_without_upload_and_unknown_ids(org):
    ds = make_dataset(org)
    info = request_upload(org, ds["id"], wav_bytes(0.5)).json()
    r = org.post(f"/api/v1/datasets/{ds['id']}/audio/confirm", json={"audio_id": info["audio_id"]})
    assert r.status_code == 409 and r.json() == {"detail": "upload not found: POST the file to upload_url first"}
    assert org.get(f"/api/v1/datasets/{ds['id']}/audio/{info['audio_id']}").json()["processing_status"] == "pending"

    r = org.post(f"/api/v1/datasets/{ds['id']}/audio/confirm", json={"audio_id": str(uuid.uuid4())})
    assert r.status_code == 404 and r.json() == {"detail": "Audio file not found"}
    other = make_dataset(org)  # a file is confirmed under its own dataset only
    r = org.post(f"/api/v1/datasets/{other['id']}/audio/confirm", json={"audio_id": info["audio_id"]})
    assert r.status_code == 404
    assert_validation_error(org.post(f"/api/v1/datasets/{ds['id']}/audio/confirm", json={}), ["audio_id"])


def test_oversize_uploads_are_refused(platform, org, blobs):
    ds = make_dataset(org)
    limit = platform.settings.max_upload_bytes
    r = org.post(
        f"/api/v1/datasets/{ds['id']}/audio/upload-url",
        json={"filename": "huge.wav", "content_type": "audio/wav", "file_size": limit + 1},
    )
    assert r.status_code == 400
    assert r.json() == {"detail": f"file size {limit + 1} bytes is over the limit of {limit} bytes"}

    # more bytes than declared: storage refuses them and nothing can be confirmed
    data = wav_bytes(0.5)
    info = request_upload(org, ds["id"], data[:1000]).json()
    stored = requests.post(info["upload_url"], data=info["fields"], files={"file": io.BytesIO(data)}, timeout=60)
    assert stored.status_code == 413
    assert not blobs.exists(info["key"])
    r = org.post(f"/api/v1/datasets/{ds['id']}/audio/confirm", json={"audio_id": info["audio_id"]})
    assert r.status_code == 409


def test_upload_request_validation(org):
    ds = make_dataset(org)
    r = request_upload(org, ds["id"], b"\0" * 10, filename="notes.txt", content_type="text/plain")
    assert r.status_code == 400 and "unsupported audio format" in r.json()["detail"]
    assert "audio/wav" in r.json()["detail"]
    ok = request_upload(org, ds["id"], b"\0" * 10, filename="take.flac", content_type="application/octet-stream")
    assert ok.status_code == 201
    assert_validation_error(request_upload(org, ds["id"], b"\0", filename="x" * 501), ["filename"])
    assert_validation_error(request_upload(org, ds["id"], b"", filename="a.wav"), ["file_size"])
    r = request_upload(org, ds["id"], b"\0", filename="/\x00")
    assert r.status_code == 400 and "no name left" in r.json()["detail"]

    # the client's filename is for display only: path parts dropped, unicode kept, never in the key
    info = request_upload(org, ds["id"], b"\0" * 10, filename="../../etc/séance 日本.wav").json()
    assert "séance" not in info["key"] and ".." not in info["key"]
    shown = org.get(f"/api/v1/datasets/{ds['id']}/audio/{info['audio_id']}").json()
    assert shown["original_filename"] == "séance 日本.wav"


def test_list_audio_pages_and_filters_by_status(org):
    ds = make_dataset(org)
    pending = [request_upload(org, ds["id"], b"\0" * 10, filename=f"p{i}.wav").json()["audio_id"] for i in range(3)]
    confirmed = upload_audio(org, ds["id"], wav_bytes(0.5))
    base = f"/api/v1/datasets/{ds['id']}/audio"

    everything = org.get(base).json()
    assert everything["total"] == 4 and everything["items"][0]["id"] == confirmed["audio_id"]
    page = org.get(base, params={"page_size": 2, "page": 2}).json()
    assert [a["id"] for a in page["items"]] == [pending[1], pending[0]] and page["total"] == 4

    only_pending = org.get(base, params={"processing_status": "pending"}).json()
    assert only_pending["total"] == 3 and {a["id"] for a in only_pending["items"]} == set(pending)
    assert all(a["processing_status"] == "pending" for a in only_pending["items"])
    r = org.get(base, params={"processing_status": "done"})
    assert_validation_error(r, ["processing_status"])
    assert "'ready'" in r.json()["detail"][0]["msg"]


def test_delete_audio_removes_its_blob(org, blobs):
    ds = make_dataset(org)
    confirmed = upload_audio(org, ds["id"], wav_bytes(0.5))
    r = org.delete(f"/api/v1/datasets/{ds['id']}/audio/{confirmed['audio_id']}")
    assert r.status_code == 204
    assert not blobs.exists(confirmed["key"])
    r = org.get(f"/api/v1/datasets/{ds['id']}/audio/{confirmed['audio_id']}")
    assert r.status_code == 404 and r.json() == {"detail": "Audio file not found"}
    assert org.get(f"/api/v1/datasets/{ds['id']}/audio").json()["total"] == 0


def test_unconfirmed_audio_expires_as_failed(platform, org, blobs):
    """Never-used or refused uploads fail with "upload never completed" after the URL's expiry and grace."""
    from datetime import timedelta

    from sqlalchemy import update

    from cluster.pending_uploads import UPLOAD_NEVER_COMPLETED, expired_message
    from cluster.tables import AudioFile, utcnow
    from tests.factories import wait_for

    settings = platform.settings
    ds = make_dataset(org)
    kept = upload_audio(org, ds["id"], wav_bytes(0.5), "kept.wav")
    never_used = request_upload(org, ds["id"], wav_bytes(0.5), "never.wav").json()
    info = request_upload(org, ds["id"], wav_bytes(0.5), "late.wav").json()
    assert requests.post(info["upload_url"], data=info["fields"], files={"file": io.BytesIO(wav_bytes(0.5))}, timeout=60).status_code == 204
    with session_scope(settings.database_url) as s:
        s.execute(
            update(AudioFile)
            .where(AudioFile.id.in_([never_used["audio_id"], info["audio_id"]]))
            .values(created_at=utcnow() - timedelta(seconds=settings.upload_url_expiry_s + settings.upload_grace_s + 60))
        )
    # confirmed past its deadline: refused whether the sweep or this confirm expires it first
    r = org.post(f"/api/v1/datasets/{ds['id']}/audio/confirm", json={"audio_id": info["audio_id"]})
    assert (r.status_code, r.json()) == (409, {"detail": expired_message(settings)})
    assert not blobs.exists(info["key"])

    def expired():
        items = {a["id"]: a for a in org.get(f"/api/v1/datasets/{ds['id']}/audio").json()["items"]}
        return items if items[never_used["audio_id"]]["processing_status"] == "failed" else None

    items = wait_for(expired, timeout=60, what="the sweep to expire the unused upload")
    for audio_id in (never_used["audio_id"], info["audio_id"]):
        assert (items[audio_id]["processing_status"], items[audio_id]["error_message"]) == ("failed", UPLOAD_NEVER_COMPLETED)
    assert items[kept["audio_id"]]["processing_status"] != "failed"
    pending = org.get(f"/api/v1/datasets/{ds['id']}/audio", params={"processing_status": "pending"}).json()
    assert pending["total"] == 0
    r = org.post(f"/api/v1/datasets/{ds['id']}/audio/confirm", json={"audio_id": never_used["audio_id"]})
    assert (r.status_code, r.json()) == (409, {"detail": expired_message(settings)})
