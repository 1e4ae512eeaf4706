"""Schema fuzzing of the deployed app: every operation of its /openapi.json, over real HTTP.

schemathesis generates valid (positive) and invalid (negative) cases per operation. Every
answer must be free of 5xx, carry a documented status code, and have the documented content
type and body schema; an invalid case must also be refused with a 4xx. Path ids and the id
fields of queries and bodies are, field by field and at random, either generated or the id of
a real resource of the fuzzing organization seeded for that operation, so 2xx answers are
checked as well as 404s.

v1 requests carry ``X-API-Key``, v3 requests ``Authorization: Bearer``; every key has all
scopes. v3 rate limits count per organization, so each fuzzing organization (with its own seeded
resources) serves fewer v3 requests than the smallest bucket of the deployment's settings allows
and a 429 never stands in for a real answer.

Runtime is bounded by the number of cases (POSITIVE_EXAMPLES and NEGATIVE_EXAMPLES per
operation, no shrinking) and a time limit per operation.

Heavy work: ``POST /api/v1/training-jobs`` and ``POST /api/v3/custom_models/{model_id}/run``
are fuzzed like every other operation but only ever get bodies that are refused, because the
fuzzing organization never holds a published annotation set over ready audio, nor a custom
model with the minimum of training audio (its one seeded pair is half a second long);
``test_fuzzing_started_no_work`` checks that nothing started.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.checks import negative_data_rejection
from sqlalchemy import select

from cluster import registry
from cluster.accounts import create_api_key
from cluster.db import session_scope
from cluster.evaluation_tables import Evaluation, EvaluationFile
from cluster.stt_tables import CustomModel
from cluster.tables import TrainingJob
from data_pipelines.audio import encode_audio
from serve_app.rate_limits import BUCKETS, Rate
from serve_app.routes.stt import AUDIO_PART_TYPES
from tests.factories import register_detector

POSITIVE_EXAMPLES = 25  # generated valid cases per operation
NEGATIVE_EXAMPLES = 12  # generated invalid cases per operation
OPERATION_TIMEOUT_S = 120
ARTIFACT = "click"  # the seeded dataset's one artifact type
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
HYPOTHESIS = dict(
    deadline=None,
    database=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)

# Operations fuzzing cannot bring to a 2xx, and why; every other one must answer 2xx at least once.
NO_SUCCESS = {
    "POST /api/v1/training-jobs": "kept from starting (see above)",
    "POST /api/v3/custom_models/{model_id}/run": "kept from starting (see above)",
    "DELETE /api/v1/training-jobs/{job_id}": "the seeded job has finished",
    "POST /api/v1/datasets/{dataset_id}/audio/confirm": "needs an object uploaded to storage",
    "POST /api/v1/inference-jobs/{job_id}/files/confirm": "needs an object uploaded to storage",
    "GET /api/v1/inference-jobs/{job_id}/files/{file_id}/download-url": "needs a confirmed upload",
    "GET /api/v1/datasets/{dataset_id}/audio/{audio_id}/download-url": "needs a confirmed upload",
    "POST /blobs/upload": "needs a signed upload form",
    "GET /blobs/download": "needs a signed URL",
    "PUT /api/v3/custom_models/{model_id}/data": "needs decodable audio",
    "GET /api/v3/custom_models/{model_id}/data/{data_id}/audio-url": "needs a training pair (decodable audio)",
    "POST /api/v3/stt": "needs decodable audio",
    "POST /api/v1/evaluations": "needs ready (decoded) audio under a published set, or test pairs",
    "GET /api/v1/inference-jobs/{job_id}/files/{file_id}/peaks": "needs a processed file (the seeded one is never uploaded)",
    "POST /api/v1/inference-jobs/{job_id}/files/{file_id}/reviews": "needs a processed file (the seeded one is never uploaded)",
    "GET /api/v1/datasets/{dataset_id}/audio/{audio_id}/peaks": "needs processed audio (the seeded file is never uploaded)",
    "GET /api/v1/datasets/{dataset_id}/audio/{audio_id}/spectrogram": "needs processed audio (the seeded file is never uploaded)",
    "GET /api/v1/inference-jobs/{job_id}/files/{file_id}/spectrogram": "needs a processed file (the seeded one is never uploaded)",
    "POST /api/v1/inference-jobs/{job_id}/files/{file_id}/send-to-dataset": "needs a processed, reviewed file",
    "DELETE /api/v1/inference-jobs/{job_id}/files/{file_id}/reviews/{review_id}": "needs a review, of a processed file",
}

SEEDED_ODDS = (True, True, True, False)  # a field takes a real value 3 times in 4

# generated field -> the Seeds attributes holding real values for it
SEEDED_FIELDS = {
    "dataset_id": ("dataset_id",),
    "audio_id": ("audio_id",),
    "audio_file_id": ("audio_id",),
    "set_id": ("set_id",),
    "annotation_set_id": ("set_id",),
    "annotation_id": ("annotation_id",),
    "artifact_type": ("artifact_type",),
    "key_id": ("key_id",),
    "file_id": ("inference_file_id",),
    "data_id": ("data_id",),
    "filename": ("audio_filename",),
    "content_type": ("audio_content_type",),
    "model": ("base_model", "custom_model_key"),  # POST /api/v3/stt
    "language": ("language",),
    "evaluation_id": ("evaluation_id",),
    "endpoint_id": ("webhook_endpoint_id",),
    "message_id": ("webhook_message_id",),
    "url": ("webhook_url",),  # POST/PATCH /api/v1/webhook-endpoints
}


# registry routes: their path names and version numbers (and the bodies' version fields)
REGISTRY_FIELDS = {
    "name": ("registered_name",),
    "alias": ("alias_name",),
    "version": ("registered_version",),
    "to_version": ("registered_version",),
}


def seed_attributes(path: str, field: str) -> tuple[str, ...]:
    if path.endswith("/gate"):
        gate_fields = {"alias": ("gated_alias",), "evaluation_data": ("detector_data",), "metric": ("gate_metric",)}
        if field in gate_fields:
            return gate_fields[field]
    if path.startswith("/api/v1/registry/models/{name}"):
        return REGISTRY_FIELDS.get(field, ())
    if field == "job_id":
        return ("inference_job_id",) if path.startswith("/api/v1/inference-jobs") else ("training_job_id",)
    if field == "model_id":
        return ("custom_model_id",) if path.startswith("/api/v3") else ("detector_model_id",)
    return SEEDED_FIELDS.get(field, ())


def static_operations() -> list[tuple[str, str]]:
    """(method, path) of the app's routes, for collection; the test checks the live schema matches."""
    from serve_app.app import create_api

    paths = create_api().openapi()["paths"]
    return [(method.upper(), path) for path, ops in paths.items() for method in ops]


def auth_headers(key: str, path: str) -> dict[str, str]:
    if path.startswith("/api/v3"):
        return {"Authorization": f"Bearer {key}"}
    if path.startswith("/api/v1"):
        return {"X-API-Key": key}
    return {}  # health and the signed blob URLs take no key


@dataclass
class Tenant:
    key: str
    seeds: Seeds


class Tenants:
    """Fuzzing organizations, each with an all-scope key and its own seeds, each retired before its
    v3 requests could overfill any rate bucket; every one made is listed in ``organization_ids``."""

    def __init__(self, platform, v3_uses: int):
        self.platform = platform
        self.v3_uses = v3_uses
        self.organization_ids: list[str] = []
        self._current: Tenant | None = None
        self._left = 0

    def fresh(self) -> None:
        """The next request starts a new organization (each operation gets its own seeds)."""
        self._current = None

    def take(self, path: str) -> Tenant:
        v3 = path.startswith("/api/v3")
        if self._current is None or (v3 and self._left == 0):
            client = self.platform.org(f"fuzz-{uuid.uuid4().hex[:6]}")
            self.organization_ids.append(client.org_id)
            self._current = Tenant(client.key, Seeds(self.platform, client.org_id, client.key))
            self._left = self.v3_uses
        self._left -= v3
        return self._current


class Seeds:
    """Real resources of the fuzzing organization, each created on first use."""

    artifact_type = ARTIFACT
    base_model = "general"
    language = "en"
    audio_filename = "a.wav"
    audio_content_type = "audio/wav"

    def __init__(self, platform, organization_id: str, key: str):
        self.platform = platform
        self.organization_id = organization_id
        self.key = key

    def _call(self, method: str, path: str, **kw: Any) -> dict:
        url, headers = self.platform.base_url + path, auth_headers(self.key, path)
        r = requests.request(method, url, headers=headers, timeout=60, **kw)
        assert r.status_code in (200, 201, 202), f"seeding {method} {path}: {r.status_code} {r.text}"
        return r.json()

    @cached_property
    def dataset_id(self) -> str:
        body = {"name": "fuzz", "artifact_types": [{"name": ARTIFACT}]}
        return self._call("POST", "/api/v1/datasets", json=body)["id"]

    @cached_property
    def audio_id(self) -> str:
        body = {"filename": "a.wav", "content_type": "audio/wav", "file_size": 1000}
        return self._call("POST", f"/api/v1/datasets/{self.dataset_id}/audio/upload-url", json=body)["audio_id"]

    @cached_property
    def draft_set(self) -> tuple[str, str]:
        """(set id, annotation id): a draft set holding one annotation, so that it can be published."""
        set_id = self._call("POST", f"/api/v1/datasets/{self.dataset_id}/annotation-sets")["id"]
        body = {"audio_file_id": self.audio_id, "artifact_type": ARTIFACT, "start_ms": 0, "end_ms": 100}
        path = f"/api/v1/datasets/{self.dataset_id}/annotation-sets/{set_id}/annotations"
        return set_id, self._call("POST", path, json=body)["id"]

    @property
    def set_id(self) -> str:
        return self.draft_set[0]

    @property
    def annotation_id(self) -> str:
        return self.draft_set[1]

    @cached_property
    def training_job_id(self) -> str:
        """A finished (failed) job row: training itself is never started by this module."""
        with session_scope(self.platform.settings.database_url) as s:
            job = TrainingJob(
                organization_id=self.organization_id,
                dataset_id=self.dataset_id,
                annotation_set_id=self.set_id,
                config={"artifact_types": [ARTIFACT]},
                status="failed",
                error_message="seeded for fuzzing",
            )
            s.add(job)
            s.flush()
            return job.id

    @cached_property
    def detector_model_id(self) -> str:
        return register_detector(self.platform.settings, self.organization_id, [ARTIFACT], name="fuzz")

    @cached_property
    def inference_job_id(self) -> str:
        return self._call("POST", "/api/v1/inference-jobs", json={"model_id": self.detector_model_id})["id"]

    @cached_property
    def inference_file_id(self) -> str:
        body = {"filename": "a.wav", "file_size_bytes": 1000}
        path = f"/api/v1/inference-jobs/{self.inference_job_id}/files/upload-url"
        return self._call("POST", path, json=body)["file_id"]

    @cached_property
    def key_id(self) -> str:
        with session_scope(self.platform.settings.database_url) as s:
            row, _ = create_api_key(s, self.organization_id, "fuzz-victim")
            return row.id

    @cached_property
    def custom_model_id(self) -> int:
        return self._call("POST", "/api/v3/custom_models", json={"name": "fuzz", "language": "en"})["id"]

    @property
    def custom_model_key(self) -> str:
        return f"custom_model_{self.custom_model_id}"

    alias_name = "production"
    registered_version = 1

    @cached_property
    def registered_name(self) -> str:
        """A detector registered model with versions 1 and 2, its production alias moved 1 -> 2 (so it can roll back)."""
        name, url = "fuzz-registry", self.platform.settings.database_url
        registered_id = registry.ensure_registered(url, self.organization_id, name, "detector")
        with session_scope(url) as s:
            for _ in range(2):
                registry.add_version(s, registered_id, detector_model_id=self.detector_model_id)
        for version in (1, 2):
            self._call("PUT", f"/api/v1/registry/models/{name}/aliases/production", json={"version": version, "reason": "seeded"})
        return name

    gate_metric = "f1"  # the seeded registered model is a detector

    @property
    def detector_data(self) -> dict:
        """Evaluation data of the seeded dataset, as a promotion gate names it."""
        return {"dataset_id": self.dataset_id, "annotation_set_id": self.set_id}

    @cached_property
    def gated_alias(self) -> str:
        """An alias of the seeded registered model with a promotion gate (and no version yet)."""
        url = self.platform.settings.database_url
        with session_scope(url) as s:
            registered = registry.get_registered(s, self.organization_id, self.registered_name)
            data = {"dataset_id": self.dataset_id, "annotation_set_id": self.set_id}
            registry.set_gate(s, registered, "gated", evaluation_data=data, metric="f1", max_regression=0.05)
        return "gated"

    @cached_property
    def evaluation_id(self) -> str:
        """A completed evaluation of two detectors on one file (its row written as a run would)."""
        detector = self.detector_model_id
        item = {"id": self.audio_id, "filename": "a.wav", "audio_key": "k", "duration_ms": 1000, "events": []}
        row = {"duration_ms": 1000, "classes": {ARTIFACT: {"tp": 0, "fp": 0, "fn": 0, "false_positives": [], "missed": [],
                                                         "segments": [0, 0, 0], "sweep": {}}}}
        with session_scope(self.platform.settings.database_url) as s:
            evaluation = Evaluation(
                organization_id=self.organization_id, kind="detector", status="completed", progress=100.0, items=[item],
                models=[{"reference": detector, "label": detector, "model_id": detector, "target": detector}, {"reference": "fuzz-registry@1", "label": "fuzz-registry@1", "model_id": detector, "target": detector}],
                data={"dataset_id": self.dataset_id, "annotation_set_id": self.set_id}, config={"artifact_types": [ARTIFACT]},
            )
            s.add(evaluation)
            s.flush()
            for m in range(2):
                s.add(EvaluationFile(evaluation_id=evaluation.id, model_index=m, item_id=self.audio_id, filename="a.wav",
                                     status="completed", score=1.0, row=row))
            return evaluation.id

    webhook_url = "http://127.0.0.1:9/fuzz"  # loopback is allowed on the test platform; nothing listens there

    @cached_property
    def webhook_endpoint_id(self) -> str:
        return self._call("POST", "/api/v1/webhook-endpoints", json={"url": self.webhook_url})["id"]

    @cached_property
    def webhook_message_id(self) -> str:
        """The endpoint's test delivery (its attempts fail: connection refused; it can be redelivered)."""
        return self._call("POST", f"/api/v1/webhook-endpoints/{self.webhook_endpoint_id}/test")["delivery_id"]

    @cached_property
    def data_id(self) -> int:
        """Half a second of silence: the model becomes ready (2) but holds too little audio to train."""
        wav = encode_audio(np.zeros(8000, dtype=np.float32), 16000, "wav")
        files = {"audio_file": ("a.wav", wav, "audio/wav"), "transcript_file": ("a.txt", b"hello", "text/plain")}
        path = f"/api/v3/custom_models/{self.custom_model_id}/data"
        return self._call("PUT", path, data={"type": "train"}, files=files)["id"]


def substitute_seeds(case: schemathesis.Case, seeds: Seeds, draw) -> None:
    """Replace generated ids with real ones, each field with probability 3/4."""
    body = case.body if isinstance(case.body, dict) else {}
    containers = [case.path_parameters or {}, case.query or {}, body]
    containers += [item for item in body.get("annotations", []) if isinstance(item, dict)]
    containers += [body[k] for k in ("data", "evaluation_data") if isinstance(body.get(k), dict)]
    for container in containers:
        for field in list(container):
            attributes = seed_attributes(case.operation.path, field)
            if attributes and draw(st.sampled_from(SEEDED_ODDS), label=field):
                container[field] = getattr(seeds, draw(st.sampled_from(attributes), label=field))


@pytest.fixture(scope="module")
def tenants(platform) -> Tenants:
    smallest = min(Rate.parse(getattr(platform.settings, setting)).limit for setting in BUCKETS.values())
    return Tenants(platform, v3_uses=smallest - 1)  # one left in each bucket for the seeds' own request


@pytest.fixture(scope="module")
def api_schema(platform):
    schema = schemathesis.openapi.from_url(f"{platform.base_url}/openapi.json")
    # Audio parts go out as the generated bytes. No strategy for real audio on purpose: random
    # bytes exercise the decoders, and never add up to enough training audio for a run to start.
    audio_types = {t.strip() for t in AUDIO_PART_TYPES.split(",")}
    schemathesis.serializer.alias(sorted(audio_types), "application/octet-stream")
    return schema


@pytest.fixture(scope="module")
def tally():
    """label -> Counter of answers ("404", or "404 MODEL_NOT_FOUND" for v3 errors), shared by this module's tests."""
    return defaultdict(Counter)


def negatable(operation) -> bool:
    """Whether invalid input exists: any string is a valid (if unknown) string id."""
    typed_path = any(p.definition.get("schema", {}).get("type") != "string" for p in operation.path_parameters)
    return bool(operation.query or operation.body or typed_path)


def answer(response: requests.Response) -> str:
    """The status, with the error code of a v3 error body."""
    try:
        body = response.json() if response.status_code >= 400 else None
    except ValueError:
        body = None
    code = body.get("error_code", "") if isinstance(body, dict) else ""
    return f"{response.status_code} {code}".strip()


def invalid_on_the_wire(case) -> bool:
    """False for a negative case whose query holds a list of at most one item: sent, it is one
    value or none, which a scalar parameter rightly accepts (not data the server should refuse)."""
    return not any(isinstance(v, list) and len(v) <= 1 for v in (case.query or {}).values())


def fuzz(operation, mode, examples, platform, tenants, tally) -> None:
    checks = CHECKS + ([negative_data_rejection] if mode is schemathesis.GenerationMode.NEGATIVE else [])

    strategy = operation.as_strategy(generation_mode=mode)
    if mode is schemathesis.GenerationMode.NEGATIVE:
        strategy = strategy.filter(invalid_on_the_wire)

    @settings(max_examples=examples, **HYPOTHESIS)
    @given(case=strategy, data=st.data())
    def run(case, data) -> None:
        tenant = tenants.take(operation.path)
        if mode is schemathesis.GenerationMode.POSITIVE:
            substitute_seeds(case, tenant.seeds, data.draw)
        headers = auth_headers(tenant.key, operation.path)
        response = case.call(base_url=platform.base_url, headers=headers, timeout=60)
        tally[operation.label][answer(response)] += 1
        case.validate_response(response, checks=checks, headers=headers)

    run()


@pytest.mark.timeout(OPERATION_TIMEOUT_S, func_only=True)
@pytest.mark.parametrize("method,path", static_operations(), ids=lambda x: x)
def test_operation_conforms_to_schema(platform, api_schema, tenants, tally, method, path):
    operation = api_schema[path][method]
    tenants.fresh()
    fuzz(operation, schemathesis.GenerationMode.POSITIVE, POSITIVE_EXAMPLES, platform, tenants, tally)
    if negatable(operation):
        fuzz(operation, schemathesis.GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES, platform, tenants, tally)
    assert sum(tally[operation.label].values()) >= 1


def test_every_live_operation_was_fuzzed(platform, api_schema, tally):
    live = {(op.method.upper(), op.path) for op in (r.ok() for r in api_schema.get_all_operations())}
    assert live == set(static_operations())
    statuses = {label: {int(a.split()[0]) for a in answers} for label, answers in tally.items()}
    print(f"\nfuzzed {sum(sum(c.values()) for c in tally.values())} cases over {len(tally)} operations")
    for label, answers in sorted(tally.items()):
        print(f"  {label}: {dict(sorted(answers.items()))}")
    assert set(tally) == {f"{m} {p}" for m, p in live}
    assert not any(code >= 500 for codes in statuses.values() for code in codes)
    never_2xx = {label for label, codes in statuses.items() if not any(200 <= code < 300 for code in codes)}
    assert never_2xx <= set(NO_SUCCESS), sorted(never_2xx - set(NO_SUCCESS))
    # Generated bytes reach the audio decoders: the ingress's (training data) and the transcriber's.
    for label in ("PUT /api/v3/custom_models/{model_id}/data", "POST /api/v3/stt"):
        assert tally[label]["400 INVALID_AUDIO"] > 0, tally[label]


def test_fuzzing_started_no_work(platform, tenants):
    orgs = tenants.organization_ids
    with session_scope(platform.settings.database_url) as s:
        jobs = s.scalars(select(TrainingJob).where(TrainingJob.organization_id.in_(orgs))).all()
        models = s.scalars(select(CustomModel).where(CustomModel.organization_id.in_(orgs))).all()
        assert all(job.error_message == "seeded for fuzzing" and job.ray_job_id is None for job in jobs)
        assert models and all(m.training_status in (1, 2) for m in models), [m.training_status for m in models]
