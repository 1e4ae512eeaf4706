"""NUL characters and lone surrogates in every string a request carries, over real HTTP.

Each operation of /openapi.json with string inputs has one valid request here, built on real
resources of one organization so that nothing but the hostile value stands between it and the
database. Every string in it (path ids, query filters, JSON body fields at any depth, keys and
values of free-form JSON, multipart form fields) is replaced in turn by a NUL or a lone
surrogate. The answer is never a 5xx and always the API's own error shape; where the server
receives the value as such (any JSON string, a NUL anywhere, a malformed v1 id) it is a 422 at
that field: neither SQLite's driver (no surrogates) nor PostgreSQL (no NUL, no surrogates) is
ever asked to store it. ``test_every_string_input_is_swept`` keeps the table complete.

Over the wire a lone surrogate exists only as a JSON escape (``"\\ud800"``): in a path, a
query or a form field it can only be sent as its invalid UTF-8 bytes (ED A0 80), which the
server decodes to other characters (U+FFFD, or Latin-1 in multipart fields).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote, urlencode

import numpy as np
import pytest
import requests

from cluster import registry
from cluster.accounts import create_api_key
from cluster.blobs import make_blob_store
from cluster.db import session_scope, signing_secret
from cluster.evaluation_tables import Evaluation
from cluster.review_tables import DetectionReview
from cluster.tables import TrainingJob
from data_pipelines.audio import encode_audio
from serve_app.app import create_api
from tests.factories import Client, register_detector

NUL, SURROGATE = "nul", "surrogate"
JSON_ESCAPES = {NUL: "\\u0000", SURROGATE: "\\ud800"}
WIRE_BYTES = {NUL: b"\x00", SURROGATE: b"\xed\xa0\x80"}  # in paths, queries and forms
MARK = "@@hostile@@"  # stands for the hostile value in a JSON body before it is serialized
FREE_FORM = ("extra_data",)  # JSON objects of any keys: their keys are swept too
V3_SHAPE = {"error", "message", "error_code", "details"}
# Display filenames are cleaned of control characters instead (NUL included; test_bad_input.py):
# a NUL there is dropped, or answered 400 when nothing is left.
CLEANED = ("filename",)
# Signed storage routes parse their input by hand: refused as any bad signature is (4xx), not at a field.
SIGNED = ("/blobs/upload", "/blobs/download")


@dataclass
class Case:
    method: str
    route: str  # path template as /openapi.json names it
    path: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, Any] = field(default_factory=dict)

    @property
    def op(self) -> str:
        return f"{self.method} {self.route}"


@dataclass
class Mutation:
    case: Case
    where: str  # path | query | json | form
    pointer: tuple  # name, or the JSON pointer; a trailing ("*key*",) marks a free-form key
    kind: str

    @property
    def v1_id(self) -> bool:
        """A v1 id outside the body: a UUID parameter, refused whatever the bytes decode to."""
        return self.case.route.startswith("/api/v1") and (
            self.where == "path" or self.pointer[0] in ("model_id", "dataset_id")
        )

    @property
    def refused_at_field(self) -> bool:
        if self.case.route.startswith(SIGNED) or (self.kind == NUL and self.pointer[-1] in CLEANED):
            return False
        return self.where == "json" or self.kind == NUL or self.v1_id

    def loc(self) -> list:
        if self.where == "json":
            return ["body", *[p for p in self.pointer if p != "*key*"]]
        return ["body" if self.where == "form" else self.where, self.pointer[0]]


def cases(w: SimpleNamespace) -> list[Case]:
    """One valid request per operation with string inputs; ``w`` holds the organization's resources."""
    ds = "/api/v1/datasets/{dataset_id}"
    sets = ds + "/annotation-sets/{set_id}"
    ij = "/api/v1/inference-jobs/{job_id}"
    cm = "/api/v3/custom_models/{model_id}"
    reg = "/api/v1/registry/models"
    rm, al = reg + "/{name}", reg + "/{name}/aliases/{alias}"
    R = {"name": w.registered}
    wh, WH = "/api/v1/webhook-endpoints", {"endpoint_id": w.webhook}
    RA = {**R, "alias": "production"}
    augmentation = {"noise": {"kinds": ["pink"]}, "codec": {"codecs": ["opus"]}}
    D, S = {"dataset_id": w.dataset}, {"dataset_id": w.dataset, "set_id": w.set}
    A = {**D, "audio_id": w.audio}
    N = {**S, "annotation_id": w.annotation_id}
    T, M, J = {"job_id": w.training_job}, {"model_id": w.detector}, {"job_id": w.inference_job}
    F = {**J, "file_id": w.file}
    annotation = {"audio_file_id": w.audio, "artifact_type": "glitch", "start_ms": 0, "end_ms": 10,
                  "extra_data": {"note": "kept", "tags": ["a"]}}
    types = [{"name": "glitch", "description": "a click", "color": "red"}]
    custom = {"name": "m", "language": "en", "base_model": "general", "description": "d"}
    C = lambda method, route, **kw: Case(method, route, **kw)  # noqa: E731
    return [
        C("POST", "/api/v1/auth/api-keys",
          json={"name": "k", "scopes": ["detection:read"], "expires_at": "2999-01-01T00:00:00Z"}),
        C("DELETE", "/api/v1/auth/api-keys/{key_id}", path={"key_id": w.key_id}),
        C("POST", "/api/v1/datasets", json={"name": "d", "description": "x", "artifact_types": types}),
        C("GET", "/api/v1/datasets", query={"q": "d"}),
        *[C(m, ds, path=D) for m in ("GET", "DELETE")],
        C("PATCH", ds, path=D, json={"name": "d", "description": "x", "artifact_types": types}),
        C("POST", ds + "/audio/upload-url", path=D,
          json={"filename": "a.wav", "content_type": "audio/wav", "file_size": 100}),
        C("POST", ds + "/audio/confirm", path=D, json={"audio_id": w.audio}),
        C("GET", ds + "/audio", path=D, query={"processing_status": "pending"}),
        *[C(m, ds + "/audio/{audio_id}", path=A) for m in ("GET", "DELETE")],
        *[C("GET", ds + "/audio/{audio_id}" + s, path=A) for s in ("/download-url", "/peaks", "/spectrogram")],
        *[C(m, ds + "/annotation-sets", path=D) for m in ("GET", "POST")],
        C("GET", sets, path=S),
        C("POST", sets + "/publish", path=S),
        C("POST", sets + "/annotations", path=S, json=annotation),
        C("POST", sets + "/annotations/bulk", path=S, json={"annotations": [annotation]}),
        C("PATCH", sets + "/annotations/{annotation_id}", path=N,
          json={k: v for k, v in annotation.items() if k != "audio_file_id"}),
        C("DELETE", sets + "/annotations/{annotation_id}", path=N),
        C("POST", "/api/v1/training-jobs",
          json={"dataset_id": w.dataset, "annotation_set_id": w.set, "config": {"artifact_types": ["glitch"], "augmentation": augmentation, "registered_model": "reg"}}),
        C("GET", "/api/v1/training-jobs", query={"status": "completed", "dataset_id": w.dataset}),
        *[C(m, "/api/v1/training-jobs/{job_id}" + s, path=T) for m, s in (("GET", ""), ("DELETE", ""), ("GET", "/logs"))],
        C("GET", "/api/v1/models", query={"artifact_type": "glitch"}),
        *[C(m, "/api/v1/models/{model_id}", path=M) for m in ("GET", "DELETE")],
        C("PATCH", "/api/v1/models/{model_id}", path=M, json={"name": "n", "description": "d"}),
        C("POST", "/api/v1/inference-jobs", json={"model_id": w.detector}),
        C("GET", "/api/v1/inference-jobs", query={"model_id": w.detector, "status": "pending"}),
        *[C(m, ij, path=J) for m in ("GET", "DELETE")],
        C("POST", ij + "/files/upload-url", path=J,
          json={"filename": "a.wav", "file_size_bytes": 100, "content_type": "audio/wav"}),
        C("POST", ij + "/files/confirm", path=J, json={"file_id": w.file}),
        *[C("GET", ij + "/files/{file_id}" + s, path=F) for s in ("", "/download-url", "/peaks", "/spectrogram")],
        C("POST", ij + "/files/{file_id}/send-to-dataset", path=F, json={"dataset_id": w.dataset, "annotation_set_id": w.set}),
        C("GET", ij + "/files/{file_id}/detections", path=F, query={"types": "glitch,click"}),
        C("POST", ij + "/files/{file_id}/reviews", path=F, json={"detection_id": "d0", "action": "correct", "artifact_type": "glitch", "note": "n"}),
        C("GET", ij + "/files/{file_id}/reviews", path=F),
        C("DELETE", ij + "/files/{file_id}/reviews/{review_id}", path={**F, "review_id": w.review}),
        C("POST", "/blobs/upload", form=w.upload_fields, files={"file": ("a.wav", b"RIFF")}),
        C("GET", "/blobs/download", query=w.download_query),
        C("POST", "/api/v3/custom_models", json=custom),
        *[C("GET", r, query={"q": "m", "sort": "name", "direction": "asc", "base_model": "general"})
          for r in ("/api/v3/custom_models", "/api/v3/speech-to-text/models")],
        *[C(m, cm, path={"model_id": w.custom}, json=custom) for m in ("PUT", "POST")],
        C("PUT", cm + "/data", path={"model_id": w.custom}, form={"type": "train"},
          files={"audio_file": ("a.wav", w.audio_bytes), "transcript_file": ("a.txt", b"hello")}),
        C("GET", cm + "/data", path={"model_id": w.custom}, query={"type": "train"}),
        C("POST", cm + "/run", path={"model_id": w.custom}, json={"augmentation": augmentation}),
        C("POST", "/api/v3/stt", form={"model": "general", "language": "en", "boost_terms": "fathom"},
          files={"audio_file": ("a.wav", w.audio_bytes)}),
        C("POST", reg, json={"name": "other", "kind": "detector", "description": "d"}),
        C("GET", reg, query={"kind": "detector"}),
        C("GET", rm, path=R),
        C("PATCH", rm, path=R, json={"description": "d"}),
        C("GET", rm + "/versions", path=R),
        C("GET", rm + "/versions/{version}", path={**R, "version": 1}),
        C("PUT", al, path=RA, json={"version": 1, "reason": "r"}),
        C("DELETE", al, path=RA, query={"reason": "r"}),
        C("GET", al, path=RA, query={"at": "2026-01-01T00:00:00Z"}),
        C("GET", al + "/history", path=RA),
        C("POST", al + "/rollback", path=RA, json={"reason": "r"}),
        C("PUT", al + "/gate", path=RA, json={"evaluation_data": {"dataset_id": w.dataset, "annotation_set_id": w.set, "audio_ids": [w.audio]},
                                              "metric": "f1", "max_regression": 0.1}),
        *[C(m, al + "/gate", path=RA) for m in ("GET", "DELETE")],
        C("POST", "/api/v1/evaluations", json={
            "models": [w.detector, f"{w.registered}@1"],
            "data": {"dataset_id": w.dataset, "annotation_set_id": w.set, "audio_ids": [w.audio]},
            "config": {"artifact_types": ["glitch"], "boost_terms": ["stent"], "keyterms": ["aspirin"]},
        }),
        C("GET", "/api/v1/evaluations/{evaluation_id}", path={"evaluation_id": w.evaluation}),
        C("GET", "/api/v1/evaluations/{evaluation_id}/files", path={"evaluation_id": w.evaluation},
          query={"model": w.detector, "sort": "score", "direction": "desc", "format": "json"}),
        C("POST", wh, json={"url": "http://127.0.0.1:9/h", "event_types": ["webhook.test"], "description": "d", "enabled": False}),
        C("PATCH", wh + "/{endpoint_id}", path=WH, json={"url": "http://127.0.0.1:9/h", "event_types": ["webhook.test"], "description": "d"}),
        *[C(m, wh + "/{endpoint_id}" + tail, path=WH) for m, tail in (("GET", ""), ("DELETE", ""), ("POST", "/test"))],
        C("POST", wh + "/{endpoint_id}/rotate-secret", path=WH, json={"grace_seconds": 0}),
        C("GET", wh + "/{endpoint_id}/deliveries", path=WH, query={"status": "failed", "event_type": "webhook.test"}),
        C("POST", "/api/v1/webhook-messages/{message_id}/redeliver", path={"message_id": w.message}),
    ]


def _json_strings(value: Any, pointer: tuple = ()) -> list[tuple]:
    """Pointers of every string in ``value``; a free-form object's keys as (..., key, "*key*")."""
    found = []
    if isinstance(value, str):
        found.append(pointer)
    elif isinstance(value, dict):
        for k, v in value.items():
            if pointer and pointer[-1] in FREE_FORM:
                found.append((*pointer, k, "*key*"))
            found.extend(_json_strings(v, (*pointer, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found.extend(_json_strings(v, (*pointer, i)))
    return found


def mutations(all_cases: list[Case]) -> list[Mutation]:
    out = []
    for case in all_cases:
        places = [("path", (name,)) for name in case.path]
        places += [("query", (name,)) for name in case.query]
        places += [("form", (name,)) for name in case.form]
        places += [("json", p) for p in _json_strings(case.json)]
        out += [Mutation(case, where, pointer, kind) for where, pointer in places for kind in (NUL, SURROGATE)]
    return out


def _replaced(value: Any, pointer: tuple) -> Any:
    if not pointer:
        return MARK
    head, rest = pointer[0], pointer[1:]
    if rest == ("*key*",):
        return {(MARK if k == head else k): v for k, v in value.items()}
    copy = list(value) if isinstance(value, list) else dict(value)
    copy[head] = _replaced(value[head], rest)
    return copy


def send(base_url: str, key: str, m: Mutation) -> requests.Response:
    case, bad = m.case, WIRE_BYTES[m.kind]
    header = {"Authorization": f"Bearer {key}"} if case.route.startswith("/api/v3") else {"X-API-Key": key}
    encoded = quote(bad)
    path = {k: encoded if m.where == "path" and m.pointer[0] == k else quote(str(v), safe="") for k, v in case.path.items()}
    url = base_url + case.route.format(**path)
    query = [f"{quote(k)}={encoded if m.where == 'query' and m.pointer[0] == k else quote(str(v), safe='')}"
             for k, v in case.query.items()]
    if query:
        url += "?" + "&".join(query)
    kwargs: dict[str, Any] = {"headers": header, "timeout": 60}
    if case.json is not None:
        body = case.json if m.where != "json" else _replaced(case.json, m.pointer)
        kwargs["data"] = json.dumps(body).replace(MARK, JSON_ESCAPES[m.kind]).encode()
        header["Content-Type"] = "application/json"
    if case.form or case.files:
        form = {k: (bad if m.where == "form" and m.pointer[0] == k else v.encode()) for k, v in case.form.items()}
        kwargs["files"] = {**{k: (None, v) for k, v in form.items()}, **case.files}
    return requests.request(case.method, url, **kwargs)


def check(m: Mutation, r: requests.Response) -> str | None:
    """What is wrong with the answer to ``m``, or None."""
    where = f"{m.case.op} {m.where} {m.pointer} {m.kind} -> {r.status_code} {r.text[:300]}"
    if r.status_code >= 500:
        return f"{where}: a server error"
    if r.status_code >= 400:
        try:
            body = r.json()
        except ValueError:
            return f"{where}: not JSON"
        v3 = m.case.route.startswith("/api/v3")
        if not isinstance(body, dict) or set(body) != (V3_SHAPE if v3 else {"detail"}):
            return f"{where}: not the API's error shape"
    if not m.refused_at_field:
        return None
    if r.status_code != 422:
        return f"{where}: expected 422 at the field"
    body, loc = r.json(), m.loc()
    if m.case.route.startswith("/api/v3"):
        errors = body["details"].get("errors", [])
        if body["error_code"] != "VALIDATION_ERROR":
            return f"{where}: expected VALIDATION_ERROR"
    else:
        errors = body["detail"]
    if not any(len(e["loc"]) >= 2 and e["loc"] == loc[: len(e["loc"])] for e in errors):
        return f"{where}: no error at {loc}"
    return None


# --- the organization's resources ----------------------------------------------------------------------


def _wav() -> bytes:
    return encode_audio(0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16_000), 16_000, "wav")


@pytest.fixture(scope="module")
def world(platform) -> SimpleNamespace:
    c = platform.org(f"hostile-{uuid.uuid4().hex[:6]}")
    v3 = Client(c.base_url, c.key, header="Authorization", org_id=c.org_id)

    def made(r: requests.Response, status: int = 201) -> dict:
        assert r.status_code == status, r.text
        return r.json()

    dataset = made(c.post("/api/v1/datasets", json={"name": "d", "artifact_types": [{"name": "glitch"}]}))["id"]
    upload = made(c.post(f"/api/v1/datasets/{dataset}/audio/upload-url",
                         json={"filename": "a.wav", "content_type": "audio/wav", "file_size": 100}))
    set_id = made(c.post(f"/api/v1/datasets/{dataset}/annotation-sets"))["id"]
    annotation = made(c.post(
        f"/api/v1/datasets/{dataset}/annotation-sets/{set_id}/annotations",
        json={"audio_file_id": upload["audio_id"], "artifact_type": "glitch", "start_ms": 0, "end_ms": 10,
              "extra_data": {"note": "kept"}},
    ))
    detector = register_detector(platform.settings, c.org_id, ["glitch"])
    job = made(c.post("/api/v1/inference-jobs", json={"model_id": detector}))["id"]
    file = made(c.post(f"/api/v1/inference-jobs/{job}/files/upload-url",
                       json={"filename": "a.wav", "file_size_bytes": 100}))
    with session_scope(platform.settings.database_url) as s:
        training = TrainingJob(organization_id=c.org_id, dataset_id=dataset, annotation_set_id=set_id,
                               config={"artifact_types": ["glitch"]}, status="completed")
        s.add(training)
        s.flush()
        training_id = training.id
    registered_id = registry.ensure_registered(platform.settings.database_url, c.org_id, "reg", "detector")
    with session_scope(platform.settings.database_url) as s:
        registry.add_version(s, registered_id, detector_model_id=detector)
    made(c.put("/api/v1/registry/models/reg/aliases/production", json={"version": 1, "reason": "r"}), 200)
    with session_scope(platform.settings.database_url) as s:  # a finished evaluation to read
        evaluation = Evaluation(organization_id=c.org_id, kind="detector", status="completed", progress=100.0,
                                models=[{"reference": detector, "label": detector, "model_id": detector, "target": detector}] * 2,
                                data={}, items=[], config={"artifact_types": ["glitch"]})
        s.add(evaluation)
        s.flush()
        evaluation_id = evaluation.id
    with session_scope(platform.settings.database_url) as s:  # a review to undo (its file is never processed)
        review = DetectionReview(organization_id=c.org_id, inference_file_id=file["file_id"], detection_id="d0", action="accept")
        s.add(review)
        s.flush()
        review_id = review.id
    webhook = made(c.post("/api/v1/webhook-endpoints", json={"url": "http://127.0.0.1:9/hostile"}))["id"]
    message = c.post(f"/api/v1/webhook-endpoints/{webhook}/test").json()["delivery_id"]
    blobs = make_blob_store(platform.settings, secret=signing_secret(platform.settings.database_url))
    download = dict(p.split("=", 1) for p in blobs.presigned_get(file["s3_key"], expires_s=600, filename="a.wav")
                    .split("?", 1)[1].split("&"))
    return SimpleNamespace(
        client=c,
        dataset=dataset,
        audio=upload["audio_id"],
        upload_fields=upload["fields"],
        set=set_id,
        annotation=annotation,
        annotation_id=annotation["id"],
        detector=detector,
        inference_job=job,
        file=file["file_id"],
        training_job=training_id,
        key_id=made(c.post("/api/v1/auth/api-keys", json={"name": "spare"}))["id"],
        custom=made(v3.post("/api/v3/custom_models", json={"name": "m", "language": "en"}))["id"],
        download_query={k: requests.utils.unquote(v) for k, v in download.items()},
        audio_bytes=_wav(),
        registered="reg",
        evaluation=evaluation_id,
        webhook=webhook,
        message=message,
        review=review_id,
    )


# --- the sweep --------------------------------------------------------------------------------------------


def test_nul_and_lone_surrogates_are_refused_everywhere(platform, world):
    c = world.client
    failures = []
    for m in mutations(cases(world)):
        key = c.key
        if m.case.route.endswith("/run"):  # 5 training starts an hour per organization: each its own
            o = platform.org(f"hostile-run-{uuid.uuid4().hex[:6]}")
            own = Client(o.base_url, o.key, header="Authorization", org_id=o.org_id)
            custom = own.post("/api/v3/custom_models", json={"name": "m", "language": "en"}).json()["id"]
            m, key = replace(m, case=replace(m.case, path={"model_id": custom})), o.key
        elif m.case.route.startswith("/api/v3"):  # v3 limits count per key: each request gets its own
            with session_scope(platform.settings.database_url) as s:
                _, key = create_api_key(s, c.org_id, "sweep")
        failure = check(m, send(platform.base_url, key, m))
        if failure:
            failures.append(failure)
    assert not failures, f"{len(failures)} hostile values not refused cleanly:\n" + "\n".join(failures)

    # Nothing hostile was stored, and what was there is unchanged and still readable.
    ds = c.get(f"/api/v1/datasets/{world.dataset}")
    assert ds.status_code == 200 and (ds.json()["name"], ds.json()["description"]) == ("d", None), ds.text
    assert c.get("/api/v1/datasets").json()["total"] == 1
    got = c.get(f"/api/v1/datasets/{world.dataset}/annotation-sets/{world.set}").json()["annotations"]
    assert got == [world.annotation]
    assert c.get("/api/v1/auth/api-keys").status_code == 200
    v3 = {"Authorization": f"Bearer {c.key}"}
    models = c.get("/api/v3/custom_models", headers=v3).json()
    assert [m["name"] for m in models["result"]] == ["m"] and models["result"][0]["description"] is None
    assert c.get(f"/api/v1/models/{world.detector}").json()["name"] is None
    assert requests.get(f"{platform.base_url}/healthz", timeout=30).status_code == 200


def test_v1_ids_are_uuids(platform, world):
    """Any UUID spelling finds the resource; anything else is a 422 at the id, never a lookup."""
    c = world.client
    assert c.get(f"/api/v1/datasets/{world.dataset.upper()}").json()["id"] == world.dataset
    for bad in ("nope", world.dataset + "0", "%00", "%ED%A0%80"):
        r = c.get(f"/api/v1/datasets/{bad}")
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "dataset_id"], r.text
    r = c.post("/api/v1/inference-jobs", json={"model_id": "not-a-uuid"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "model_id"], r.text
    r = c.get("/api/v1/inference-jobs", params={"model_id": "x"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "model_id"], r.text


# --- completeness -------------------------------------------------------------------------------------------


def _string_inputs(spec: dict) -> set[tuple[str, str, tuple]]:
    """(operation, where, pointer with list indices as "[]") of every string the schema takes."""
    schemas = spec["components"]["schemas"]

    def walk(schema: dict, pointer: tuple, out: set) -> None:
        if "$ref" in schema:
            schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
        for sub in schema.get("anyOf", []):
            walk(sub, pointer, out)
        kind = schema.get("type")
        if kind == "string" and schema.get("format") != "binary" and "contentMediaType" not in schema:
            out.add(pointer)
        elif kind == "object":
            for name, sub in schema.get("properties", {}).items():
                walk(sub, (*pointer, name), out)
            if schema.get("additionalProperties") is True:
                out.add((*pointer, "*key*"))
        elif kind == "array":
            walk(schema.get("items", {}), (*pointer, "[]"), out)

    found = set()
    for route, ops in spec["paths"].items():
        for method, op in ops.items():
            name = f"{method.upper()} {route}"
            for param in op.get("parameters", []):
                leaves: set = set()
                walk(param["schema"], (), leaves)
                if leaves:
                    found.add((name, param["in"], (param["name"],)))
            for media, content in op.get("requestBody", {}).get("content", {}).items():
                leaves = set()
                walk(content.get("schema", {}), (), leaves)
                where = "json" if media == "application/json" else "form"
                found |= {(name, where, p if where == "json" else p[:1]) for p in leaves}
    return found


def test_every_string_input_is_swept():
    """Every string input /openapi.json declares is replaced by the sweep (new routes need a case)."""
    dummy = SimpleNamespace(**{k: "x" for k in (
        "dataset", "audio", "set", "detector", "inference_job", "file", "training_job", "key_id", "custom", "registered",
        "evaluation", "webhook", "message", "review",
    )}, annotation={}, annotation_id="x", upload_fields={"key": "k", "policy": "p", "signature": "s", "Content-Type": "audio/wav"},
        download_query={"key": "k", "expires": "1", "filename": "a.wav", "signature": "s"}, audio_bytes=b"")
    swept = set()
    for m in mutations(cases(dummy)):
        pointer = tuple("[]" if isinstance(p, int) else p for p in m.pointer)
        if pointer and pointer[-1] == "*key*":
            pointer = (*pointer[:-2], "*key*")
        elif len(pointer) > 1 and pointer[-2] in FREE_FORM:  # a value inside free-form JSON
            continue
        swept.add((m.case.op, m.where, pointer))
    declared = _string_inputs(create_api().openapi())
    missing = declared - swept
    assert not missing, "string inputs the sweep does not replace:\n" + "\n".join(map(str, sorted(missing)))
