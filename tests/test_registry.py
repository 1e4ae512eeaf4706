"""The model registry over real HTTP: versions, aliases (compare-and-set), history, ?at=, rollback, references, tenancy.

Versions are written here by the registry's own ``add_version`` beside factory-made models,
as a training run's completion writes them; the flow tests (detection and STT) make them by
training.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from cluster import registry
from cluster.db import session_scope
from tests.factories import Client, register_detector

TYPES = ["glitch", "long_pause"]


def add_detector_version(platform, org: Client, name: str) -> tuple[int, str]:
    """(version, v1 model id) of a new detector model recorded as the next version of ``name``."""
    model_id = register_detector(platform.settings, org.org_id, TYPES)
    url = platform.settings.database_url
    registered_id = registry.ensure_registered(url, org.org_id, name, "detector")
    with session_scope(url) as s:
        v = registry.add_version(s, registered_id, detector_model_id=model_id, data={"dataset_id": "d"}, metrics={"f1_score": 0.5})
        return v.version, model_id


@pytest.fixture
def two_versions(platform, org):
    name = f"tts-qa-{uuid.uuid4().hex[:6]}"
    (v1, m1), (v2, m2) = add_detector_version(platform, org, name), add_detector_version(platform, org, name)
    assert (v1, v2) == (1, 2)
    return name, m1, m2


def put_alias(c: Client, name: str, alias: str, **body):
    return c.put(f"/api/v1/registry/models/{name}/aliases/{alias}", json=body)


def test_versions_are_listed_newest_first_and_name_their_models(platform, org, two_versions):
    name, m1, m2 = two_versions
    got = org.get(f"/api/v1/registry/models/{name}").json()
    assert (got["kind"], got["latest_version"], got["aliases"]) == ("detector", 2, {})
    listed = org.get(f"/api/v1/registry/models/{name}/versions").json()
    assert [v["version"] for v in listed["items"]] == [2, 1] and listed["total"] == 2
    assert [v["model_ref"]["model_id"] for v in listed["items"]] == [m2, m1]
    one = org.get(f"/api/v1/registry/models/{name}/versions/1").json()
    assert one["metrics"] == {"f1_score": 0.5} and one["is_archived"] is False
    assert org.get(f"/api/v1/registry/models/{name}/versions/3").status_code == 404
    assert name in [m["name"] for m in org.get("/api/v1/registry/models", params={"kind": "detector", "page_size": 100}).json()["items"]]
    assert org.get("/api/v1/registry/models", params={"kind": "stt"}).json()["total"] == 0


def test_alias_moves_history_at_and_rollback(platform, org, two_versions):
    name, m1, m2 = two_versions
    before = datetime.now(timezone.utc)
    r = put_alias(org, name, "production", version=1, reason="first release", expected_version=None)
    assert r.status_code == 200 and r.json()["version"] == 1, r.text
    time.sleep(0.05)
    job = org.post("/api/v1/inference-jobs", json={"model_id": f"{name}@production"}).json()
    assert (job["model_id"], job["model_reference"], job["model_version"]) == (m1, f"{name}@production", f"{name}@1")
    assert org.post("/api/v1/inference-jobs", json={"model_id": f"{name}@2"}).json()["model_id"] == m2
    plain = org.post("/api/v1/inference-jobs", json={"model_id": m2}).json()
    assert (plain["model_reference"], plain["model_version"]) == (None, f"{name}@2")  # a UUID still works
    assert org.post("/api/v1/inference-jobs", json={"model_id": f"{name}@staging"}).status_code == 404

    stale = put_alias(org, name, "production", version=2, reason="promote", expected_version=2)
    assert stale.status_code == 409 and "names version 1" in stale.json()["detail"]
    moved = put_alias(org, name, "production", version=2, reason="promote", expected_version=1).json()
    time.sleep(0.05)
    assert org.post("/api/v1/inference-jobs", json={"model_id": f"{name}@production"}).json()["model_id"] == m2
    back = org.post(f"/api/v1/registry/models/{name}/aliases/production/rollback", json={"reason": "regressed"})
    assert back.status_code == 200 and back.json()["version"] == 1, back.text

    history = org.get(f"/api/v1/registry/models/{name}/aliases/production/history").json()["events"]
    assert [(e["action"], e["version"], e["previous_version"], e["reason"]) for e in history] == [
        ("set", 1, None, "first release"),
        ("set", 2, 1, "promote"),
        ("rollback", 1, 2, "regressed"),
    ]
    assert {e["set_by"] for e in history} == {history[0]["set_by"]} and history[0]["set_by"]

    def at(moment: datetime) -> int | None:
        return org.get(f"/api/v1/registry/models/{name}/aliases/production", params={"at": moment.isoformat()}).json()["version"]

    times = [datetime.fromisoformat(e["set_at"].replace("Z", "+00:00")) for e in history]
    assert at(before - timedelta(seconds=1)) is None
    assert [at(t) for t in times] == [1, 2, 1]
    assert at(times[1] - timedelta(microseconds=1)) == 1 and at(datetime.fromisoformat(moved["set_at"].replace("Z", "+00:00"))) == 2
    assert org.get(f"/api/v1/registry/models/{name}").json()["aliases"] == {"production": 1}

    assert org.delete(f"/api/v1/registry/models/{name}/aliases/production", params={"reason": "retired"}).status_code == 204
    assert org.get(f"/api/v1/registry/models/{name}/aliases/production").status_code == 404
    assert org.get(f"/api/v1/registry/models/{name}/aliases/production/history").json()["events"][-1]["version"] is None


def test_concurrent_compare_and_set_has_exactly_one_winner(platform, org, two_versions):
    name, _, _ = two_versions
    assert put_alias(org, name, "production", version=1, reason="r").status_code == 200
    clients = [Client(org.base_url, org.key, org_id=org.org_id) for _ in range(8)]
    with cf.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda c: put_alias(c, name, "production", version=2, reason="race", expected_version=1).status_code, clients))
    assert sorted(codes) == [200] + [409] * 7, codes
    assert len(org.get(f"/api/v1/registry/models/{name}/aliases/production/history").json()["events"]) == 2


def test_an_alias_cannot_name_an_archived_version(platform, org, two_versions):
    name, m1, _ = two_versions
    assert put_alias(org, name, "production", version=1, reason="r").status_code == 200
    assert put_alias(org, name, "production", version=2, reason="r").status_code == 200
    assert org.delete(f"/api/v1/models/{m1}").status_code == 204  # archiving the v1 model archives version 1
    assert org.get(f"/api/v1/registry/models/{name}/versions/1").json()["is_archived"] is True
    r = put_alias(org, name, "production", version=1, reason="r")
    assert r.status_code == 409 and "archived" in r.json()["detail"]
    r = org.post(f"/api/v1/registry/models/{name}/aliases/production/rollback", json={"reason": "r"})
    assert r.status_code == 409 and "no other version" in r.json()["detail"]  # version 1 is archived


def test_created_names_kinds_and_validation(platform, org):
    name = f"speech-{uuid.uuid4().hex[:6]}"
    r = org.post("/api/v1/registry/models", json={"name": name, "kind": "stt", "description": "calls"})
    assert r.status_code == 201 and r.json()["latest_version"] == 0, r.text
    assert org.post("/api/v1/registry/models", json={"name": name, "kind": "stt"}).status_code == 409
    assert org.post("/api/v1/registry/models", json={"name": "has space", "kind": "stt"}).status_code == 422
    assert org.post("/api/v1/registry/models", json={"name": "x", "kind": "llm"}).status_code == 422
    assert org.patch(f"/api/v1/registry/models/{name}", json={"description": "d2"}).json()["description"] == "d2"
    assert put_alias(org, name, "production", version=1, reason="r").status_code == 404  # no such version
    assert put_alias(org, name, "123", version=1, reason="r").status_code == 422  # all digits would read as a version
    assert put_alias(org, name, "bad alias", version=1, reason="r").status_code == 422
    with pytest.raises(registry.RegistryError) as e:  # a detector run cannot add to an stt name
        registry.ensure_registered(platform.settings.database_url, org.org_id, name, "detector")
    assert e.value.status_code == 409


def test_other_organizations_see_nothing(platform, org, other_org, two_versions):
    name, m1, _ = two_versions
    assert put_alias(org, name, "production", version=1, reason="r").status_code == 200
    for path in ("", "/versions", "/versions/1", "/aliases/production", "/aliases/production/history"):
        r = other_org.get(f"/api/v1/registry/models/{name}{path}")
        assert r.status_code == 404 and r.json() == {"detail": "Registered model not found"}, (path, r.text)
    assert put_alias(other_org, name, "production", version=2, reason="r").status_code == 404
    assert other_org.post(f"/api/v1/registry/models/{name}/aliases/production/rollback", json={}).status_code == 404
    assert other_org.post("/api/v1/inference-jobs", json={"model_id": f"{name}@production"}).status_code == 404
    assert other_org.get("/api/v1/registry/models").json()["total"] == 0


def test_scopes_follow_the_kind(platform, org):
    """Every registry route needs the v1 scopes first; an stt registered model also needs custom_models scopes."""
    detection_only = platform.org(f"det-{uuid.uuid4().hex[:6]}", scopes=["detection:read", "detection:write"])
    name = f"speech-{uuid.uuid4().hex[:6]}"
    registry.ensure_registered(platform.settings.database_url, detection_only.org_id, name, "stt")
    r = detection_only.get(f"/api/v1/registry/models/{name}")
    assert r.status_code == 403 and "custom_models:read" in r.json()["detail"]
    assert detection_only.get("/api/v1/registry/models").json()["total"] == 0  # only the kinds the key may read
    assert detection_only.post("/api/v1/registry/models", json={"name": "s2", "kind": "stt"}).status_code == 403
    stt_only = platform.org(f"stt-{uuid.uuid4().hex[:6]}", scopes=["custom_models:read", "custom_models:write"])
    r = stt_only.get("/api/v1/registry/models")
    assert r.status_code == 403 and "detection:read" in r.json()["detail"]
