"""Security properties of both APIs over real HTTP against the deployed app.

API keys (hashed at rest, shown once, revocable, expirable, compared in constant time),
no secret in any log line of the cluster, organization isolation on every route the app
serves, the scope every route demands, and download URLs that open exactly one object
until they expire. Narrower cases live next to each feature's own tests
(test_api_auth, test_api_custom_models, test_rate_limits, test_blobs).
"""

from __future__ import annotations

import ast
import hashlib
import hmac
import inspect
import logging
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import numpy as np
import pytest
import requests
from fastapi.routing import iter_route_contexts
from sqlalchemy import select

from cluster import accounts, registry
from cluster.evaluation_tables import Evaluation, EvaluationFile, OutboxEvent
from cluster.registry_tables import RegisteredModel
from cluster.accounts import AuthError, authenticate, create_api_key, create_organization, hash_key
from cluster.blobs import make_blob_store
from cluster.db import get_engine, init_schema, session_scope, signing_secret
from cluster.stt_tables import CustomModel
from cluster.tables import AnnotationSet, ApiKey, Base, TrainingJob, utcnow
from cluster.review_tables import DetectionReview
from cluster.webhook_tables import WebhookAttempt, WebhookMessage
from data_pipelines.audio import encode_audio
from schemas.auth import (
    ALL_SCOPES,
    CUSTOM_MODELS_READ,
    CUSTOM_MODELS_WRITE,
    DETECTION_READ,
    DETECTION_WRITE,
    KEYS_MANAGE,
    STT,
)
from serve_app.app import create_api
from tests.factories import Client, register_detector, wait_for

TYPES = [{"name": "glitch"}, {"name": "pause"}]
V3_ERROR_KEYS = {"error", "message", "error_code", "details"}
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


# --- helpers ------------------------------------------------------------------------------------


def wav(seconds: float = 1.0, freq: float = 440.0) -> bytes:
    t = np.arange(int(seconds * 16_000)) / 16_000
    return encode_audio((0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16_000, "wav")


def bearer(client: Client) -> Client:
    return Client(client.base_url, client.key, header="Authorization", org_id=client.org_id)


def keyed(base_url: str, key: str, *, header: str = "X-API-Key") -> Client:
    return Client(base_url, key, header=header)


def ok(r: requests.Response, status: int = 200) -> dict:
    assert r.status_code == status, f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"
    return r.json() if r.content else {}


def assert_v3_error(r: requests.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == V3_ERROR_KEYS and body["error_code"] == code, body
    return body


def new_dataset(client: Client, name: str, **extra: Any) -> str:
    return ok(client.post("/api/v1/datasets", json={"name": name, "artifact_types": TYPES, **extra}), 201)["id"]


def upload_dataset_audio(client: Client, dataset_id: str, data: bytes, filename: str) -> dict:
    """Upload URL plus the storage POST (not confirmed); returns the upload-url answer."""
    info = ok(
        client.post(
            f"/api/v1/datasets/{dataset_id}/audio/upload-url",
            json={"filename": filename, "content_type": "audio/wav", "file_size": len(data)},
        ),
        201,
    )
    stored = requests.post(info["upload_url"], data=info["fields"], files={"file": data}, timeout=60)
    assert stored.status_code == 204, stored.text
    return info


def upload_inference_file(client: Client, job_id: str, data: bytes, filename: str) -> dict:
    info = ok(
        client.post(
            f"/api/v1/inference-jobs/{job_id}/files/upload-url",
            json={"filename": filename, "file_size_bytes": len(data)},
        ),
        201,
    )
    stored = requests.post(info["upload_url"], data=info["upload_fields"], files={"file": data}, timeout=60)
    assert stored.status_code == 204, stored.text
    return info


def upload_pair(client: Client, model_id: int, audio: bytes, transcript: str, name: str = "clip") -> dict:
    files = {"audio_file": (f"{name}.wav", audio), "transcript_file": (f"{name}.txt", transcript.encode())}
    return ok(bearer(client).put(f"/api/v3/custom_models/{model_id}/data", data={"type": "train"}, files=files))


def key_row_id(database_url: str, secret: str) -> str:
    with session_scope(database_url) as s:
        return s.scalar(select(ApiKey.id).where(ApiKey.key_hash == hash_key(secret)))


def direct_key(platform, organization_id: str, scopes: list[str], **kw: Any) -> str:
    with session_scope(platform.settings.database_url) as s:
        _, secret = create_api_key(s, organization_id, f"direct-{uuid.uuid4().hex[:6]}", scopes=scopes, **kw)
    return secret


# --- 1. API keys ------------------------------------------------------------------------------------


def every_stored_value(database_url: str) -> list[tuple[str, str]]:
    """(table, value) for every non-null cell of every table, as text."""
    out: list[tuple[str, str]] = []
    with get_engine(database_url).connect() as conn:
        for name, table in Base.metadata.tables.items():
            for row in conn.execute(select(table)):
                out.extend((name, str(v)) for v in row if v is not None)
    return out


def test_key_secret_lives_only_in_the_create_answer(platform, org):
    """At rest only the SHA-256 and the display prefix: not the secret, nor its random part, in any cell."""
    created = ok(org.post("/api/v1/auth/api-keys", json={"name": "ci", "scopes": [DETECTION_READ]}), 201)
    secrets_issued = {created["key"]: created["id"], org.key: key_row_id(platform.settings.database_url, org.key)}
    assert created["key"].startswith(created["key_prefix"])

    stored = every_stored_value(platform.settings.database_url)
    with session_scope(platform.settings.database_url) as s:
        for secret, key_id in secrets_issued.items():
            row = s.get(ApiKey, key_id)
            assert row.key_hash == hashlib.sha256(secret.encode()).hexdigest()
            random_part = secret[len(row.key_prefix) :]
            leaked = [table for table, value in stored if secret in value or random_part in value]
            assert not leaked, f"a key's secret is stored in {leaked}"

    listing = org.get("/api/v1/auth/api-keys")
    assert created["id"] in listing.text and all("key" not in k for k in listing.json())
    for secret in secrets_issued:
        assert secret not in listing.text and hash_key(secret) not in listing.text
    assert "key_hash" not in created and hash_key(created["key"]) not in str(created)


def test_revoked_key_is_refused_at_once_on_both_apis(platform, org):
    created = ok(org.post("/api/v1/auth/api-keys", json={"name": "short-lived"}), 201)
    by_header = [keyed(platform.base_url, created["key"], header=h) for h in ("X-API-Key", "Authorization")]
    for client in by_header:
        assert client.get("/api/v1/datasets").status_code == 200
        assert client.get("/api/v3/custom_models").status_code == 200

    assert org.delete(f"/api/v1/auth/api-keys/{created['id']}").status_code == 204
    for client in by_header:
        r = client.get("/api/v1/datasets")
        assert r.status_code == 401 and r.json() == {"detail": "API key revoked"}, r.text
        assert r.headers["WWW-Authenticate"] == "Bearer"
        assert_v3_error(client.get("/api/v3/custom_models"), 401, "KEY_REVOKED")
    assert by_header[0].post("/api/v1/auth/api-keys", json={"name": "heir"}).status_code == 401  # no successor
    assert org.get("/api/v1/datasets").status_code == 200  # the organization's other keys still work


def test_key_past_its_expiry_is_refused_on_both_apis(platform, org):
    expired = direct_key(platform, org.org_id, list(ALL_SCOPES), expires_at=utcnow() - timedelta(seconds=1))
    r = keyed(platform.base_url, expired).get("/api/v1/datasets")
    assert r.status_code == 401 and r.json() == {"detail": "API key expired"}
    r = keyed(platform.base_url, expired, header="Authorization").get("/api/v3/custom_models")
    body = assert_v3_error(r, 401, "INVALID_API_KEY")
    assert body["message"] == "API key expired"


def test_key_hashes_are_compared_in_constant_time(private_database_url, monkeypatch):
    """The stored hash meets the presented key's hash only inside compare_digest, so answer times
    do not reveal how much of a guessed key matched."""
    init_schema(private_database_url)
    with session_scope(private_database_url) as s:
        org = create_organization(s, "timing")
        row, secret = create_api_key(s, org.id, "k")
        stored_hash = row.key_hash
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    for module in (hmac, secrets, accounts):
        if hasattr(module, "compare_digest"):
            monkeypatch.setattr(module, "compare_digest", spy)
    same_prefix = secret[: accounts.PREFIX_CHARS] + "x" * (len(secret) - accounts.PREFIX_CHARS)
    with session_scope(private_database_url) as s:
        assert authenticate(s, secret).organization_id == org.id
        with pytest.raises(AuthError):
            authenticate(s, same_prefix)
    compared = [{str(a), str(b)} for a, b in calls]
    assert {stored_hash, hash_key(secret)} in compared and {stored_hash, hash_key(same_prefix)} in compared

    # ...and never with == (in Python or as an SQL equality the database would short-circuit).
    tree = ast.parse(inspect.getsource(accounts))
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops):
            names = {n.attr if isinstance(n, ast.Attribute) else getattr(n, "id", "") for n in ast.walk(node)}
            assert not names & {"key_hash", "digest", "hash_key"}, ast.unparse(node)


# --- 2. no secret in any log line -----------------------------------------------------------------


def ray_log_dir(ray_cluster) -> Path:
    session_dir = (getattr(ray_cluster, "address_info", None) or {}).get("session_dir")
    if not session_dir:
        import ray

        session_dir = ray._private.worker._global_node.get_session_dir_path()
    return Path(session_dir) / "logs"


def log_files_containing(log_dir: Path, needles: dict[str, str]) -> dict[str, list[str]]:
    """{needle name: [log files that contain it]} over every file of the cluster's session logs."""
    found: dict[str, list[str]] = {}
    encoded = {name: value.encode() for name, value in needles.items()}
    for path in log_dir.rglob("*"):
        if not path.is_file():
            continue
        try:
            data = path.read_bytes()
        except OSError:  # rotated away while we walked
            continue
        for name, value in encoded.items():
            if value in data:
                found.setdefault(name, []).append(str(path.relative_to(log_dir)))
    return found


def test_no_secret_reaches_any_log(platform, ray_cluster, org, capfd, caplog):
    """A small flow through both APIs, then every file of the cluster's session logs and this
    process's output are searched for each credential the flow used or issued."""
    caplog.set_level(logging.DEBUG)
    key = ok(org.post("/api/v1/auth/api-keys", json={"name": "flow"}), 201)["key"]
    v1, v3 = keyed(platform.base_url, key), keyed(platform.base_url, key, header="Authorization")

    # v1: dataset audio through a presigned upload, confirmed: preprocessing runs on Ray Data
    dataset = new_dataset(v1, "logged")
    audio = upload_dataset_audio(v1, dataset, wav(1.0), "take.wav")
    audio_url = f"/api/v1/datasets/{dataset}/audio/{audio['audio_id']}"
    ok(v1.post(f"/api/v1/datasets/{dataset}/audio/confirm", json={"audio_id": audio["audio_id"]}))

    # v1: an inference job on one uploaded file, run by the dispatcher, then its download URL
    model = register_detector(platform.settings, org.org_id, ["glitch"])
    job = ok(v1.post("/api/v1/inference-jobs", json={"model_id": model}), 201)["id"]
    clip = wav(2.0, freq=300.0)
    upload = upload_inference_file(v1, job, clip, "call.wav")
    ok(v1.post(f"/api/v1/inference-jobs/{job}/files/confirm", json={"file_id": upload["file_id"]}))
    download = ok(v1.get(f"/api/v1/inference-jobs/{job}/files/{upload['file_id']}/download-url"))
    fetched = requests.get(download["url"], timeout=60)
    assert fetched.status_code == 200 and fetched.content == clip
    wait_for(
        lambda: v1.get(f"/api/v1/inference-jobs/{job}").json()["status"] in ("completed", "failed"),
        timeout=120,
        what="inference job finished",
    )
    wait_for(
        lambda: v1.get(audio_url).json()["processing_status"] in ("ready", "failed"),
        timeout=180,
        what="dataset audio processed",
    )

    # v3: a model with one training pair, and a transcription by the base model
    custom = ok(v3.post("/api/v3/custom_models", json={"name": "logged", "language": "en"}), 201)["id"]
    upload_pair(org, custom, wav(1.5), "hello there")
    note = {"audio_file": ("note.wav", wav(1.0))}
    r = v3.post("/api/v3/stt", data={"model": "general", "language": "en"}, files=note)
    assert r.status_code == 200 and "text" in r.json(), r.text

    # Serve's access log lines carry the request id: once this one's is in the files, the
    # lines of every earlier request are too, so the scan below reads the whole flow.
    log_dir, marker = ray_log_dir(ray_cluster), str(uuid.uuid4())
    assert requests.get(f"{platform.base_url}/healthz", headers={"X-Request-ID": marker}, timeout=30).ok
    wait_for(lambda: log_files_containing(log_dir, {"m": marker}), timeout=30, what="the request id in the logs")

    download_query = dict(parse_qsl(urlsplit(download["url"]).query))
    needles = {
        "flow API key": key,
        "organization API key": org.key,
        "flow key hash": hash_key(key),
        "organization key hash": hash_key(org.key),
        "dataset upload signature": audio["fields"]["signature"],
        "dataset upload policy": audio["fields"]["policy"],
        "inference upload signature": upload["upload_fields"]["signature"],
        "inference upload policy": upload["upload_fields"]["policy"],
        "download URL signature": download_query["signature"],
        "instance signing secret": init_schema(platform.settings.database_url).signing_secret,
    }
    leaked = log_files_containing(log_dir, needles)
    assert not leaked, f"secrets in log files: {leaked}"
    out, err = capfd.readouterr()
    # urllib3 is this test's own HTTP client, whose debug lines print the URLs it fetched
    records = [r.getMessage() for r in caplog.records if not r.name.startswith("urllib3")]
    for name, value in needles.items():
        assert value not in out and value not in err, f"{name} in the captured output"
        assert not [m for m in records if value in m], f"{name} in a log record"


# --- 3. organization isolation on every route -------------------------------------------------------

NOT_FOUND, REFUSED, FORBIDDEN, OWN = "404", "refused like an unknown id", "403", "own data only"
PARAM = re.compile(r"{(\w+)(?::\w+)?}")
ROUTER_MISSES = ("Not Found", "Method Not Allowed")  # the router's own answers: a probe that hit no route
ID_FIELDS = (
    "dataset", "audio", "set", "annotation", "training_job", "detector", "inference_job", "file", "key_id", "registered", "alias",
    "evaluation", "webhook", "review",
)
MESSAGE_ID_FIELDS = ("message",)  # webhook deliveries: msg_... ids
INT_ID_FIELDS = ("custom", "pair", "org_number", "version")  # v3 ids, and a registry version number
GLOBAL_TABLES = {"instance", "organization_numbers"}
# Tables without organization_id: the column tying a row to the organization, directly or through a parent.
ORG_LINKS = {
    "organizations": ("id", None),
    "annotations": ("annotation_set_id", AnnotationSet),
    "custom_model_data": ("model_id", CustomModel),
    "custom_model_log": ("model_id", CustomModel),
    "training_job_log_entries": ("training_job_id", TrainingJob),
    "rate_limit_counters": ("key_id", ApiKey),
    "model_aliases": ("registered_model_id", RegisteredModel),
    "alias_gates": ("registered_model_id", RegisteredModel),
    "evaluation_files": ("evaluation_id", Evaluation),
    "webhook_attempts": ("message_id", WebhookMessage),
}
BLOB_COLUMNS = ("blob_key", "features_key", "checkpoint_key", "audio_key")


@dataclass
class Probe:
    method: str
    route: str  # the served path template this request exercises
    params: dict[str, Any]
    expect: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return re.sub(r"\{(\w+):\w+\}", r"{\1}", self.route).format(**self.params)  # {path:path}: a converter

    def text(self) -> str:
        return f"{self.url} {self.kwargs!r}"


def served_routes() -> set[tuple[str, str]]:
    """(method, path template) of every route the app serves, included routers flattened (the
    mounted docs assets are static files of a package, no route)."""
    return {(method, ctx.path) for ctx in iter_route_contexts(create_api().routes) for method in ctx.methods or ()}


def annotation(audio_id: str) -> dict:
    return {"audio_file_id": audio_id, "artifact_type": "glitch", "start_ms": 0, "end_ms": 100}


def probes(o: SimpleNamespace, mine: SimpleNamespace, audio: bytes) -> list[Probe]:
    """The intruder's requests at the target's resources ``o``, directly and through its own ``mine``."""
    P = Probe
    ds, sets = "/api/v1/datasets/{dataset_id}", "/api/v1/datasets/{dataset_id}/annotation-sets"
    aset, ann = sets + "/{set_id}", sets + "/{set_id}/annotations/{annotation_id}"
    tj, mdl, ij = "/api/v1/training-jobs/{job_id}", "/api/v1/models/{model_id}", "/api/v1/inference-jobs/{job_id}"
    cm = "/api/v3/custom_models/{model_id}"
    reg, ev = "/api/v1/registry/models", "/api/v1/evaluations"
    wh, their_wh = "/api/v1/webhook-endpoints", {"endpoint_id": o.webhook}
    rm, al = reg + "/{name}", reg + "/{name}/aliases/{alias}"
    their_rm = {"name": o.registered}
    their_al = {**their_rm, "alias": o.alias}
    their_ds, my_ds = {"dataset_id": o.dataset}, {"dataset_id": mine.dataset}
    their_set, my_set = {**their_ds, "set_id": o.set}, {**my_ds, "set_id": mine.set}
    set_parents = [their_set, {**my_ds, "set_id": o.set}]
    their_jobs = (o.inference_job, mine.inference_job)
    one, bulk = {"json": annotation(o.audio)}, {"json": {"annotations": [annotation(o.audio)]}}
    new_audio = {"filename": "x.wav", "content_type": "audio/wav", "file_size": 100}
    pair = {"data": {"type": "train"}, "files": {"audio_file": ("x.wav", audio), "transcript_file": ("x.txt", b"a b")}}
    stt = {"data": {"model": f"custom_model_{o.custom}", "language": "en"}, "files": {"audio_file": ("a.wav", audio)}}
    forged_post = {"key": o.audio_key, "policy": "e30", "signature": "0" * 64}
    forged_get = {"key": o.file_key, "expires": str(int(time.time()) + 600), "signature": "0" * 64}
    start = {"annotation_set_id": o.set, "config": {"artifact_types": ["glitch"]}}
    docs = ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")
    return [
        # public, or credentialed by a signature rather than a key
        *[P(m, p, {}, OWN) for p in docs for m in ("GET", "HEAD")],
        P("GET", "/healthz", {}, OWN),
        # the pages: one public HTML page whatever the path names (the data comes through the API)
        *[P(m, p, {}, OWN) for p in ("/ui", "/ui/") for m in ("GET", "HEAD")],
        *[P(m, "/ui/{path:path}", {"path": o.inference_job}, OWN) for m in ("GET", "HEAD")],
        P("POST", "/blobs/upload", {}, FORBIDDEN, {"data": forged_post, "files": {"file": b"overwritten"}}),
        P("GET", "/blobs/download", {}, FORBIDDEN, {"params": forged_get}),
        # keys
        P("POST", "/api/v1/auth/api-keys", {}, OWN, {"json": {"name": "intruder"}}),
        P("GET", "/api/v1/auth/api-keys", {}, OWN),
        P("DELETE", "/api/v1/auth/api-keys/{key_id}", {"key_id": o.key_id}, NOT_FOUND),
        # datasets and their audio
        P("POST", "/api/v1/datasets", {}, OWN, {"json": {"name": "intruder", "artifact_types": TYPES}}),
        P("GET", "/api/v1/datasets", {}, OWN, {"params": {"q": o.dataset_name}}),
        P("GET", ds, their_ds, NOT_FOUND),
        P("PATCH", ds, their_ds, NOT_FOUND, {"json": {"name": "renamed", "artifact_types": TYPES[:1]}}),
        P("DELETE", ds, their_ds, NOT_FOUND),
        P("POST", ds + "/audio/upload-url", their_ds, NOT_FOUND, {"json": new_audio}),
        *[P("POST", ds + "/audio/confirm", p, NOT_FOUND, {"json": {"audio_id": o.audio}}) for p in (their_ds, my_ds)],
        P("GET", ds + "/audio", their_ds, NOT_FOUND),
        *[P(m, ds + "/audio/{audio_id}", {**p, "audio_id": o.audio}, NOT_FOUND)
          for m in ("GET", "DELETE") for p in (their_ds, my_ds)],
        *[P("GET", ds + "/audio/{audio_id}" + tail, {**p, "audio_id": o.audio}, NOT_FOUND)
          for tail in ("/download-url", "/peaks", "/spectrogram") for p in (their_ds, my_ds)],
        # annotation sets and annotations
        P("POST", sets, their_ds, NOT_FOUND),
        P("GET", sets, their_ds, NOT_FOUND),
        *[P("GET", aset, p, NOT_FOUND) for p in set_parents],
        *[P("POST", aset + "/publish", p, NOT_FOUND) for p in set_parents],
        *[P("POST", aset + "/annotations", p, NOT_FOUND, one) for p in set_parents],
        P("POST", aset + "/annotations", my_set, REFUSED, one),
        *[P("POST", aset + "/annotations/bulk", p, NOT_FOUND, bulk) for p in set_parents],
        P("POST", aset + "/annotations/bulk", my_set, REFUSED, bulk),
        *[P(m, ann, {**p, "annotation_id": o.annotation}, NOT_FOUND, kw)
          for m, kw in (("PATCH", {"json": {"end_ms": 50}}), ("DELETE", {})) for p in (*set_parents, my_set)],
        # training jobs
        *[P("POST", "/api/v1/training-jobs", {}, NOT_FOUND, {"json": {"dataset_id": d, **start}})
          for d in (o.dataset, mine.dataset)],
        P("GET", "/api/v1/training-jobs", {}, OWN, {"params": {"dataset_id": o.dataset}}),
        *[P(m, tj + tail, {"job_id": o.training_job}, NOT_FOUND)
          for m, tail in (("GET", ""), ("DELETE", ""), ("GET", "/logs"))],
        # detector models
        P("GET", "/api/v1/models", {}, OWN, {"params": {"include_archived": "true"}}),
        P("GET", mdl, {"model_id": o.detector}, NOT_FOUND),
        P("PATCH", mdl, {"model_id": o.detector}, NOT_FOUND, {"json": {"name": "renamed", "is_active": False}}),
        P("DELETE", mdl, {"model_id": o.detector}, NOT_FOUND),
        # inference jobs and their files
        P("POST", "/api/v1/inference-jobs", {}, NOT_FOUND, {"json": {"model_id": o.detector}}),
        P("GET", "/api/v1/inference-jobs", {}, OWN, {"params": {"model_id": o.detector}}),
        P("GET", ij, {"job_id": o.inference_job}, NOT_FOUND),
        P("DELETE", ij, {"job_id": o.inference_job}, NOT_FOUND),
        P("POST", ij + "/files/upload-url", {"job_id": o.inference_job}, NOT_FOUND,
          {"json": {"filename": "x.wav", "file_size_bytes": 100}}),
        *[P("POST", ij + "/files/confirm", {"job_id": j}, NOT_FOUND, {"json": {"file_id": o.file}})
          for j in their_jobs],
        *[P("GET", ij + tail, {"job_id": j, "file_id": o.file}, NOT_FOUND)
          for tail in ("/files/{file_id}", "/files/{file_id}/download-url", "/files/{file_id}/peaks", "/files/{file_id}/detections",
                       "/files/{file_id}/reviews", "/files/{file_id}/spectrogram")
          for j in their_jobs],
        *[P("POST", ij + "/files/{file_id}/reviews", {"job_id": j, "file_id": o.file}, NOT_FOUND,
            {"json": {"detection_id": "d0", "action": "accept"}}) for j in their_jobs],
        *[P("DELETE", ij + "/files/{file_id}/reviews/{review_id}", {"job_id": j, "file_id": o.file, "review_id": o.review}, NOT_FOUND)
          for j in their_jobs],
        *[P("POST", ij + "/files/{file_id}/send-to-dataset", {"job_id": j, "file_id": o.file}, NOT_FOUND,
            {"json": {"dataset_id": d}}) for j in their_jobs for d in (o.dataset, mine.dataset)],
        # custom models, their data, training and transcription
        P("POST", "/api/v3/custom_models", {}, NOT_FOUND,
          {"json": {"name": "intruder", "language": "en", "organization_id": o.org_number}}),
        *[P("GET", p, {}, OWN, {"params": {"q": o.custom_name}})
          for p in ("/api/v3/custom_models", "/api/v3/speech-to-text/models")],
        P("GET", cm, {"model_id": o.custom}, NOT_FOUND),
        *[P(m, cm, {"model_id": o.custom}, NOT_FOUND, {"json": {"name": "renamed"}}) for m in ("PUT", "POST")],
        P("PUT", cm, {"model_id": mine.custom}, NOT_FOUND, {"json": {"organization_id": o.org_number}}),
        P("DELETE", cm, {"model_id": o.custom}, NOT_FOUND),
        P("PUT", cm + "/data", {"model_id": o.custom}, NOT_FOUND, pair),
        P("GET", cm + "/data", {"model_id": o.custom}, NOT_FOUND),
        *[P("DELETE", cm + "/data/{data_id}", {"model_id": m, "data_id": o.pair}, NOT_FOUND)
          for m in (o.custom, mine.custom)],
        *[P("GET", cm + "/data/{data_id}/audio-url", {"model_id": m, "data_id": o.pair}, NOT_FOUND)
          for m in (o.custom, mine.custom)],
        P("POST", cm + "/run", {"model_id": o.custom}, NOT_FOUND, {"json": {}}),
        P("GET", cm + "/log", {"model_id": o.custom}, NOT_FOUND),
        P("POST", "/api/v3/stt", {}, NOT_FOUND, stt),
        # the registry, and references to it
        P("POST", reg, {}, OWN, {"json": {"name": "intruder-registry", "kind": "detector"}}),
        P("GET", reg, {}, OWN),
        P("GET", rm, their_rm, NOT_FOUND),
        P("PATCH", rm, their_rm, NOT_FOUND, {"json": {"description": "renamed"}}),
        P("GET", rm + "/versions", their_rm, NOT_FOUND),
        P("GET", rm + "/versions/{version}", {**their_rm, "version": o.version}, NOT_FOUND),
        P("PUT", al, their_al, NOT_FOUND, {"json": {"version": o.version, "reason": "moved"}}),
        P("DELETE", al, their_al, NOT_FOUND),
        P("GET", al, their_al, NOT_FOUND),
        P("GET", al + "/history", their_al, NOT_FOUND),
        P("POST", al + "/rollback", their_al, NOT_FOUND, {"json": {}}),
        *[P("PUT", al + "/gate", p, NOT_FOUND, {"json": {"evaluation_data": d, "metric": "f1", "max_regression": 0.1}}) for p, d in (
            (their_al, {"dataset_id": mine.dataset, "annotation_set_id": mine.set}),
            ({"name": mine.registered, "alias": "production"}, {"dataset_id": o.dataset, "annotation_set_id": o.set}),
            ({"name": mine.registered, "alias": "production"}, {"dataset_id": mine.dataset, "annotation_set_id": mine.set, "audio_ids": [o.audio]}),
        )],
        P("GET", al + "/gate", their_al, NOT_FOUND),
        P("DELETE", al + "/gate", their_al, NOT_FOUND),
        P("POST", "/api/v1/inference-jobs", {}, NOT_FOUND, {"json": {"model_id": f"{o.registered}@{o.version}"}}),
        # evaluations: theirs, and their models, data and pairs named in mine
        *[P("POST", ev, {}, NOT_FOUND, {"json": {"models": models, "data": data}}) for models, data in (
            ([o.detector, f"{o.registered}@{o.version}"], {"dataset_id": mine.dataset, "annotation_set_id": mine.set}),
            ([mine.detector, f"{o.registered}@{o.alias}"], {"dataset_id": mine.dataset, "annotation_set_id": mine.set}),
            ([mine.detector, mine.detector_b], {"dataset_id": o.dataset, "annotation_set_id": o.set}),
            ([mine.detector, mine.detector_b], {"dataset_id": mine.dataset, "annotation_set_id": mine.set, "audio_ids": [o.audio]}),
            (["general", f"custom_model_{o.custom}"], {"custom_model_id": mine.custom}),
            (["general", "medical"], {"pair_ids": [o.pair]}),
            (["general", "medical"], {"custom_model_id": o.custom}),
        )],
        P("GET", ev, {}, OWN),
        P("GET", ev + "/{evaluation_id}", {"evaluation_id": o.evaluation}, NOT_FOUND),
        P("GET", ev + "/{evaluation_id}/files", {"evaluation_id": o.evaluation}, NOT_FOUND),
        # webhook endpoints, their deliveries and redelivery
        P("POST", wh, {}, OWN, {"json": {"url": "http://127.0.0.1:9/intruder", "enabled": False}}),
        P("GET", wh, {}, OWN),
        *[P(m, wh + "/{endpoint_id}", their_wh, NOT_FOUND, kw)
          for m, kw in (("GET", {}), ("PATCH", {"json": {"description": "mine now", "enabled": True}}), ("DELETE", {}))],
        P("POST", wh + "/{endpoint_id}/test", their_wh, NOT_FOUND),
        P("POST", wh + "/{endpoint_id}/rotate-secret", their_wh, NOT_FOUND, {"json": {"grace_seconds": 0}}),
        P("GET", wh + "/{endpoint_id}/deliveries", their_wh, NOT_FOUND),
        P("POST", "/api/v1/webhook-messages/{message_id}/redeliver", {"message_id": o.message}, NOT_FOUND),
    ]


def target_resources(platform, org: Client) -> tuple[SimpleNamespace, list[str]]:
    """One of each resource of ``org``, none queued (no background work changes them while the
    intruder walks), and the strings whose appearance would betray them."""
    tag = uuid.uuid4().hex[:10]
    dataset_name = f"their-dataset-{tag}"
    dataset = new_dataset(org, dataset_name, description=f"their notes {tag}")
    audio = upload_dataset_audio(org, dataset, wav(1.0), f"their-take-{tag}.wav")
    aset = ok(org.post(f"/api/v1/datasets/{dataset}/annotation-sets"), 201)["id"]
    note = ok(org.post(f"/api/v1/datasets/{dataset}/annotation-sets/{aset}/annotations",
                       json=annotation(audio["audio_id"])), 201)
    with session_scope(platform.settings.database_url) as s:  # a finished job's record: no training run needed
        job = TrainingJob(organization_id=org.org_id, dataset_id=dataset, annotation_set_id=aset,
                          config={"artifact_types": ["glitch"]}, status="completed", progress=100.0)
        s.add(job)
        s.flush()
        training_job = job.id
    detector = register_detector(platform.settings, org.org_id, ["glitch"], name=f"their-detector-{tag}")
    inference_job = ok(org.post("/api/v1/inference-jobs", json={"model_id": detector}), 201)["id"]
    file = upload_inference_file(org, inference_job, wav(1.0), f"their-call-{tag}.wav")
    body = {"name": f"their-model-{tag}", "language": "en", "description": f"their model notes {tag}"}
    custom = ok(bearer(org).post("/api/v3/custom_models", json=body), 201)
    pair = upload_pair(org, custom["id"], wav(1.0), "their private words", name=f"their-clip-{tag}")
    registered, alias = f"their-registry-{tag}", f"their-alias-{tag}"
    registered_id = registry.ensure_registered(platform.settings.database_url, org.org_id, registered, "detector")
    with session_scope(platform.settings.database_url) as s:
        version = registry.add_version(s, registered_id, detector_model_id=detector, metrics={"f1_score": 0.5}).version
    ok(org.put(f"/api/v1/registry/models/{registered}/aliases/{alias}", json={"version": version, "reason": f"why {tag}"}), 200)
    gate = {"evaluation_data": {"dataset_id": dataset, "annotation_set_id": aset}, "metric": "f1", "max_regression": 0.01}
    ok(org.put(f"/api/v1/registry/models/{registered}/aliases/{alias}/gate", json=gate), 200)
    with session_scope(platform.settings.database_url) as s:  # a finished evaluation's record: nothing runs
        item = {"id": audio["audio_id"], "filename": f"their-take-{tag}.wav", "audio_key": audio["key"], "duration_ms": 1000, "events": []}
        evaluation = Evaluation(
            organization_id=org.org_id, kind="detector", status="completed", progress=100.0, items=[item],
            models=[{"reference": detector, "label": f"{registered}@{version}", "model_id": detector, "target": detector}] * 2,
            data={"dataset_id": dataset, "annotation_set_id": aset}, config={"artifact_types": ["glitch"]},
        )
        s.add(evaluation)
        s.flush()
        s.add(EvaluationFile(evaluation_id=evaluation.id, model_index=0, item_id=audio["audio_id"], filename=item["filename"],
                             status="completed", row={"note": f"their row {tag}"}))
        evaluation_id = evaluation.id
    # A disabled endpoint with one failed delivery: nothing sends to it while the intruder walks.
    hook = ok(org.post("/api/v1/webhook-endpoints", json={"url": f"http://127.0.0.1:9/their-{tag}", "description": f"their hook {tag}",
                                                           "enabled": False}), 201)["id"]
    with session_scope(platform.settings.database_url) as s:
        event = OutboxEvent(organization_id=org.org_id, type="webhook.test", subject_id=hook, payload={"type": "webhook.test", "data": {"tag": tag}})
        s.add(event)
        s.flush()
        message = WebhookMessage(organization_id=org.org_id, endpoint_id=hook, event_id=event.id, event_type="webhook.test", status="failed")
        s.add(message)
        s.flush()
        s.add(WebhookAttempt(message_id=message.id, status_code=500, response_snippet=f"their receiver {tag}"))
        message_id = message.id
        review = DetectionReview(organization_id=org.org_id, inference_file_id=file["file_id"], detection_id="d0", action="accept",
                                 note=f"their review {tag}")
        s.add(review)
        s.flush()
        review_id = review.id
    o = SimpleNamespace(
        dataset=dataset, dataset_name=dataset_name, audio=audio["audio_id"],
        audio_key=audio["key"], set=aset, annotation=note["id"], training_job=training_job, detector=detector,
        inference_job=inference_job, file=file["file_id"], file_key=file["s3_key"], custom=custom["id"],
        custom_name=custom["name"], pair=pair["id"], key_id=key_row_id(platform.settings.database_url, org.key),
        org_number=custom["organization_id"], registered=registered, alias=alias, version=version, evaluation=evaluation_id,
        webhook=hook, message=message_id, review=review_id,
    )
    return o, [tag, org.key[: accounts.PREFIX_CHARS], org.org_id, *(getattr(o, f) for f in ID_FIELDS + MESSAGE_ID_FIELDS)]


def unknown_twin(o: SimpleNamespace) -> tuple[SimpleNamespace, dict[str, str]]:
    """``o`` with every id swapped for one nobody holds, and {unknown id: target id} as text."""
    swap: dict[Any, Any] = {getattr(o, f): str(uuid.uuid4()) for f in ID_FIELDS}
    swap |= {getattr(o, f): f"msg_{uuid.uuid4().hex[:24]}" for f in MESSAGE_ID_FIELDS}
    swap |= {getattr(o, f): 1_900_000_000 + i for i, f in enumerate(INT_ID_FIELDS)}
    twin = {}
    for name, value in vars(o).items():
        if isinstance(value, str):
            for old, new in swap.items():
                value = value.replace(old, new) if isinstance(old, str) else value
        twin[name] = swap.get(value, value)
    return SimpleNamespace(**twin), {str(new): str(old) for old, new in swap.items()}


def mapped_back(text: str, back: dict[str, str]) -> str:
    for unknown, target in back.items():
        text = re.sub(rf"(?<!\d){unknown}(?!\d)", target, text) if unknown.isdigit() else text.replace(unknown, target)
    return text


def org_state(settings, organization_id: str) -> dict[str, Any]:
    """Every row tied to the organization, and the content of every object those rows name."""
    state: dict[str, Any] = {}
    keys: set[str] = set()
    with get_engine(settings.database_url).connect() as conn:
        for name, table in Base.metadata.tables.items():
            if name in GLOBAL_TABLES:
                continue
            if "organization_id" in table.c:
                where = table.c.organization_id == organization_id
            else:
                assert name in ORG_LINKS, f"table {name} has no known tie to an organization; add it to ORG_LINKS"
                column, parent = ORG_LINKS[name]
                owned = select(parent.id).where(parent.organization_id == organization_id) if parent else None
                where = table.c[column] == organization_id if parent is None else table.c[column].in_(owned)
            rows = [dict(r._mapping) for r in conn.execute(select(table).where(where))]
            keys.update(row[c] for row in rows for c in BLOB_COLUMNS if row.get(c))
            state[name] = sorted(repr(sorted(row.items())) for row in rows)
    blobs = make_blob_store(settings, secret=signing_secret(settings.database_url))
    state["blobs"] = {k: hashlib.sha256(blobs.get_bytes(k)).hexdigest() if blobs.exists(k) else None for k in keys}
    return state


def json_body(r: requests.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return None


def error_message(r: requests.Response) -> str:
    body = json_body(r)
    return str(body.get("message", body.get("detail", ""))) if isinstance(body, dict) else ""


def test_another_organization_reaches_nothing_on_any_route(platform, org, other_org):
    """Every route and verb the app serves, with the other organization's key at this one's
    resources: 404 exactly as for an id nobody holds (403 for the signed storage routes), none
    of its names or ids in any answer, and not one of its rows or stored objects changed."""
    theirs, markers = target_resources(platform, org)
    my_dataset = new_dataset(other_org, "intruder")
    my_detector = register_detector(platform.settings, other_org.org_id, ["glitch"])
    mine = SimpleNamespace(
        dataset=my_dataset,
        set=ok(other_org.post(f"/api/v1/datasets/{my_dataset}/annotation-sets"), 201)["id"],
        inference_job=ok(other_org.post("/api/v1/inference-jobs", json={"model_id": my_detector}), 201)["id"],
        custom=ok(bearer(other_org).post("/api/v3/custom_models", json={"name": "mine", "language": "en"}), 201)["id"],
        detector=my_detector,
        detector_b=register_detector(platform.settings, other_org.org_id, ["glitch"]),
        registered=f"mine-{uuid.uuid4().hex[:6]}",
    )
    registry.ensure_registered(platform.settings.database_url, other_org.org_id, mine.registered, "detector")
    unknown, back = unknown_twin(theirs)
    audio = wav(0.5)
    walk, twins = probes(theirs, mine, audio), probes(unknown, mine, audio)

    served = served_routes()
    assert {(p.method, p.route) for p in walk} == served, "every served route and verb needs a probe, and only those"
    their_ids = {getattr(theirs, f) for f in ID_FIELDS + MESSAGE_ID_FIELDS + INT_ID_FIELDS}
    with_params = {(m, r) for m, r in served if PARAM.search(r)}
    fully_theirs = {(p.method, p.route) for p in walk if p.params and set(p.params.values()) <= their_ids}
    assert with_params == fully_theirs, f"not probed with the target's ids alone: {with_params - fully_theirs}"

    before = org_state(platform.settings, org.org_id)
    v1, v3 = other_org, bearer(other_org)
    failures: list[str] = []
    for probe, twin in zip(walk, twins):
        client = v3 if probe.route.startswith("/api/v3") else v1
        r = client.request(probe.method, probe.url, **probe.kwargs)
        where = f"{probe.method} {probe.url} -> {r.status_code} {r.text[:300]}"
        leaked = [m for m in markers if m in r.text and m not in probe.text()]
        if leaked:
            failures.append(f"{where}: the answer shows the target's {leaked}")
        if error_message(r) in ROUTER_MISSES:
            failures.append(f"{where}: no route matched the probe")
        if probe.expect == OWN:
            expected = r.status_code < 300
        elif probe.expect == FORBIDDEN:
            expected = r.status_code == 403
        else:
            expected = r.status_code == 404 if probe.expect == NOT_FOUND else r.status_code in (400, 404)
            shape = V3_ERROR_KEYS if probe.route.startswith("/api/v3") else {"detail"}
            body = json_body(r)
            unseen = client.request(twin.method, twin.url, **twin.kwargs)
            if not isinstance(body, dict) or set(body) != shape:
                failures.append(f"{where}: not the API's error shape")
            elif (unseen.status_code, mapped_back(unseen.text, back)) != (r.status_code, r.text):
                failures.append(f"{where}: unlike the answer for an unknown id: {unseen.status_code} {unseen.text}")
        if not expected:
            failures.append(f"{where}: expected {probe.expect}")
    assert not failures, "\n".join(failures)
    assert org_state(platform.settings, org.org_id) == before, "the intruder changed the target organization's data"


# --- 4. scopes ------------------------------------------------------------------------------------------


def required_scopes(method: str, path: str) -> tuple[str, ...]:
    """The scopes each API route accepts (any one suffices; schemas.auth); () for routes that take no key."""
    read = method == "GET"
    if path.startswith("/api/v1/auth/api-keys"):
        return (KEYS_MANAGE,)
    if path.startswith(("/api/v1/webhook-endpoints", "/api/v1/webhook-messages")):  # v1 and v3-style keys alike
        return (DETECTION_READ, CUSTOM_MODELS_READ) if read else (DETECTION_WRITE, CUSTOM_MODELS_WRITE)
    if path.startswith("/api/v1/"):
        return (DETECTION_READ if read else DETECTION_WRITE,)
    if path == "/api/v3/stt":
        return (STT,)
    if path.startswith("/api/v3/"):
        return (CUSTOM_MODELS_READ if read else CUSTOM_MODELS_WRITE,)
    return ()


def v1_refusal(scopes: tuple[str, ...]) -> str:
    if len(scopes) == 1:
        return f"API key lacks the '{scopes[0]}' scope"
    return f"API key lacks one of the scopes {', '.join(repr(s) for s in scopes)}"


def test_every_route_demands_its_scope_before_anything_else(platform, org):
    """A key lacking the route's scopes gets 403 naming them, whatever the ids (no existence oracle);
    a key holding only one of them gets past the check. v3 answers carry the rate-limit headers."""
    routes = sorted((m, p) for m, p in served_routes() if required_scopes(m, p))
    assert len(routes) > 40
    needs = {required_scopes(m, p) for m, p in routes}
    lacking = {n: direct_key(platform, org.org_id, [x for x in ALL_SCOPES if x not in n]) for n in needs}
    only = {s: direct_key(platform, org.org_id, [s]) for s in ALL_SCOPES}
    failures: list[str] = []
    for method, path in routes:
        scopes, v3 = required_scopes(method, path), path.startswith("/api/v3/")
        url = PARAM.sub(lambda m: "1234567" if v3 else str(uuid.uuid4()), path)
        header = "Authorization" if v3 else "X-API-Key"
        refused = keyed(platform.base_url, lacking[scopes], header=header).request(method, url)
        where = f"{method} {path} ({' or '.join(scopes)})"
        if refused.status_code != 403:
            failures.append(f"{where}: {refused.status_code} {refused.text[:200]} without the scope")
        elif v3:
            body = refused.json()
            code, required = body.get("error_code"), body.get("details", {}).get("required_scope")
            if set(body) != V3_ERROR_KEYS or (code, (required,)) != ("INSUFFICIENT_SCOPE", scopes):
                failures.append(f"{where}: v3 refusal {body}")
            if not all(h in refused.headers for h in RATE_HEADERS) or "Retry-After" in refused.headers:
                failures.append(f"{where}: rate-limit headers of a refusal {dict(refused.headers)}")
        elif refused.json() != {"detail": v1_refusal(scopes)}:
            failures.append(f"{where}: v1 refusal {refused.text}")
        for scope in scopes:
            allowed = keyed(platform.base_url, only[scope], header=header).request(method, url)
            if allowed.status_code in (401, 403):
                failures.append(f"{where}: {allowed.status_code} {allowed.text[:200]} with only {scope}")
            if v3 and not all(h in allowed.headers for h in RATE_HEADERS):
                failures.append(f"{where}: no rate-limit headers on {allowed.status_code}")
    assert not failures, "\n".join(failures)


def test_a_key_cannot_mint_a_key_stronger_than_itself(platform, org):
    manager = keyed(platform.base_url, direct_key(platform, org.org_id, [KEYS_MANAGE, DETECTION_READ]))
    r = manager.post("/api/v1/auth/api-keys", json={"name": "wider", "scopes": [DETECTION_WRITE]})
    assert r.status_code == 403 and r.json() == {"detail": "A key cannot grant scopes its creator lacks"}
    implicit = ok(manager.post("/api/v1/auth/api-keys", json={"name": "implicit"}), 201)
    assert set(implicit["scopes"]) <= {KEYS_MANAGE, DETECTION_READ}, implicit["scopes"]
    minted = keyed(platform.base_url, implicit["key"])
    assert minted.post("/api/v1/datasets", json={"name": "x", "artifact_types": TYPES}).status_code == 403
    reader = keyed(platform.base_url, direct_key(platform, org.org_id, [DETECTION_READ]))
    assert reader.post("/api/v1/auth/api-keys", json={"name": "x"}).status_code == 403
    assert reader.get("/api/v1/auth/api-keys").status_code == 403  # listing keys is key management too
    full = ok(org.post("/api/v1/auth/api-keys", json={"name": "full"}), 201)
    assert sorted(full["scopes"]) == sorted(ALL_SCOPES)  # a key made without scopes by a full key has all



def test_a_key_cannot_mint_a_key_that_outlives_it(platform, org):
    """Lifetimes are capped like scopes: none asked -> the creator's expiry; a later one -> 403."""
    expiry = utcnow() + timedelta(seconds=4)
    mortal = keyed(platform.base_url, direct_key(platform, org.org_id, list(ALL_SCOPES), expires_at=expiry))
    later = (expiry + timedelta(seconds=1)).isoformat()
    r = mortal.post("/api/v1/auth/api-keys", json={"name": "later", "expires_at": later})
    assert r.status_code == 403 and r.json()["detail"].startswith("A key cannot outlive its creator"), r.text
    heir = ok(mortal.post("/api/v1/auth/api-keys", json={"name": "heir"}), 201)
    sooner = expiry - timedelta(seconds=1)
    shorter = ok(mortal.post("/api/v1/auth/api-keys", json={"name": "shorter", "expires_at": sooner.isoformat()}), 201)
    grandchild = ok(keyed(platform.base_url, heir["key"]).post("/api/v1/auth/api-keys", json={"name": "g"}), 201)
    with session_scope(platform.settings.database_url) as s:
        stored = {k["id"]: s.get(ApiKey, k["id"]).expires_at for k in (heir, shorter, grandchild)}
    for minted, want in ((heir, expiry), (shorter, sooner), (grandchild, expiry)):
        assert abs(datetime.fromisoformat(minted["expires_at"]) - want) < timedelta(milliseconds=1), minted
        assert abs(stored[minted["id"]] - want) < timedelta(milliseconds=1)
    assert ok(org.post("/api/v1/auth/api-keys", json={"name": "forever"}), 201)["expires_at"] is None

    time.sleep(max(0.0, (expiry - utcnow()).total_seconds()) + 0.2)
    for minted in (heir, grandchild):  # the heirs die with their creator
        r = keyed(platform.base_url, minted["key"]).get("/api/v1/datasets")
        assert r.status_code == 401 and r.json() == {"detail": "API key expired"}

# --- 5. download URLs -----------------------------------------------------------------------------------


def test_download_url_opens_one_object_until_it_expires(platform, org, other_org):
    """Over real HTTP to the local blob routes: the signed object and no other, never after expiry."""
    model = register_detector(platform.settings, org.org_id, ["glitch"])
    job = ok(org.post("/api/v1/inference-jobs", json={"model_id": model}), 201)["id"]
    mine_data, sibling_data = wav(0.5, freq=220.0), wav(0.5, freq=880.0)
    mine = upload_inference_file(org, job, mine_data, "mine.wav")
    sibling = upload_inference_file(org, job, sibling_data, "sibling.wav")
    for f in (mine, sibling):
        ok(org.post(f"/api/v1/inference-jobs/{job}/files/confirm", json={"file_id": f["file_id"]}))
    issued = ok(org.get(f"/api/v1/inference-jobs/{job}/files/{mine['file_id']}/download-url"))
    base, query = issued["url"].split("?", 1)
    params = dict(parse_qsl(query))
    assert params["key"] == mine["s3_key"] and abs(int(params["expires"]) - time.time() - issued["expires_in"]) < 30

    got = requests.get(issued["url"], timeout=30)
    assert got.status_code == 200 and got.content == mine_data
    assert 'filename="mine.wav"' in got.headers["Content-Disposition"]

    foreign_data = wav(0.5, freq=660.0)
    foreign = upload_dataset_audio(other_org, new_dataset(other_org, "neighbour"), foreign_data, "theirs.wav")
    upload_sig = mine["upload_fields"]["signature"]
    k, other = params["key"], sibling["s3_key"]
    climbing = f"{k}/../{other.rsplit('/', 1)[1]}"
    tampered = {
        "key of a sibling object": f"{base}?{urlencode({**params, 'key': other})}",
        "key of another organization's object": f"{base}?{urlencode({**params, 'key': foreign['key']})}",
        "key climbing out of its folder": f"{base}?{urlencode({**params, 'key': climbing})}",
        "key percent-encoded twice": f"{base}?{urlencode({**params, 'key': quote(other, safe='')})}",
        "key with a trailing slash": f"{base}?{urlencode({**params, 'key': k + '/'})}",
        "expiry moved later": f"{base}?{urlencode({**params, 'expires': str(int(params['expires']) + 86_400)})}",
        "another filename": f"{base}?{urlencode({**params, 'filename': 'x.exe'})}",
        "signature in capitals": f"{base}?{urlencode({**params, 'signature': params['signature'].upper()})}",
        "signature cut short": f"{base}?{urlencode({**params, 'signature': params['signature'][:32]})}",
        "an upload form's signature": f"{base}?{urlencode({**params, 'signature': upload_sig})}",
        "no signature": f"{base}?{urlencode({n: v for n, v in params.items() if n != 'signature'})}",
        "object key as a path": f"{base}/{other}?{query}",
        "path climbing to the store": f"{platform.base_url}/blobs/download/../../{other}?{query}",
    }
    for what, url in tampered.items():
        r = requests.get(url, timeout=30)
        assert r.status_code in (400, 403, 404), f"{what}: {r.status_code}"
        assert not any(data in r.content for data in (mine_data, sibling_data, foreign_data)), what
    # A repeated parameter resolves to one value for both the check and the read: at most the signed object.
    for url in (f"{issued['url']}&key={quote(other, safe='')}", f"{base}?key={quote(other, safe='')}&{query}"):
        r = requests.get(url, timeout=30)
        assert r.status_code == 403 or (r.status_code == 200 and r.content == mine_data), url
    assert requests.get(issued["url"], timeout=30).content == mine_data  # tampering spent nothing

    # Expiry, in real time: a URL valid for 2 s opens its object, then never again.
    blobs = make_blob_store(platform.settings, secret=signing_secret(platform.settings.database_url))
    short = blobs.presigned_get(mine["s3_key"], expires_s=2)
    assert short.startswith(platform.base_url) and requests.get(short, timeout=30).content == mine_data
    expires = int(dict(parse_qsl(urlsplit(short).query))["expires"])
    time.sleep(max(0.0, expires - time.time()) + 0.2)
    late = requests.get(short, timeout=30)
    assert late.status_code == 403 and "expired" in late.json()["detail"] and mine_data not in late.content
