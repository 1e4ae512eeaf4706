"""API keys, scopes and error shapes of v1, over real HTTP."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import requests

from cluster.db import session_scope
from cluster.tables import ApiKey
from schemas.auth import DETECTION_READ


def test_health(platform):
    assert requests.get(f"{platform.base_url}/healthz", timeout=10).json() == {"status": "ok"}


def test_missing_and_invalid_keys_answer_401_in_v1_shape(platform, org):
    r = requests.get(f"{platform.base_url}/api/v1/datasets", timeout=10)
    assert r.status_code == 401 and r.json() == {"detail": "Invalid or missing API key"}
    r = requests.get(f"{platform.base_url}/api/v1/datasets", headers={"X-API-Key": org.key + "x"}, timeout=10)
    assert r.status_code == 401 and r.json() == {"detail": "Invalid or missing API key"}
    # Authorization: Bearer works on v1 too
    r = requests.get(f"{platform.base_url}/api/v1/datasets", headers={"Authorization": f"Bearer {org.key}"}, timeout=10)
    assert r.status_code == 200


def test_key_lifecycle_shown_once_hashed_revocable_expirable(platform, org):
    r = org.post("/api/v1/auth/api-keys", json={"name": "ci", "scopes": [DETECTION_READ]})
    assert r.status_code == 201, r.text
    created = r.json()
    secret = created["key"]
    assert secret.startswith(created["key_prefix"]) and created["scopes"] == [DETECTION_READ]
    listed = org.get("/api/v1/auth/api-keys").json()
    assert created["id"] in [k["id"] for k in listed] and all("key" not in k for k in listed)
    with session_scope(platform.settings.database_url) as s:
        row = s.get(ApiKey, created["id"])
        assert secret not in (row.key_hash, row.key_prefix) and len(row.key_hash) == 64

    reader = requests.Session()
    reader.headers["X-API-Key"] = secret
    assert reader.get(f"{platform.base_url}/api/v1/datasets", timeout=10).status_code == 200
    r = reader.post(f"{platform.base_url}/api/v1/datasets", json={"name": "x", "artifact_types": [{"name": "glitch"}]}, timeout=10)
    assert r.status_code == 403 and "detection:write" in r.json()["detail"]

    assert org.delete(f"/api/v1/auth/api-keys/{created['id']}").status_code == 204
    r = reader.get(f"{platform.base_url}/api/v1/datasets", timeout=10)
    assert r.status_code == 401
    assert org.delete(f"/api/v1/auth/api-keys/{created['id']}").status_code == 404


def test_expired_key_answers_api_key_expired(platform, org):
    soon = datetime.now(timezone.utc) + timedelta(seconds=2)
    secret = org.post("/api/v1/auth/api-keys", json={"name": "short", "expires_at": soon.isoformat()}).json()["key"]
    ok = requests.get(f"{platform.base_url}/api/v1/datasets", headers={"X-API-Key": secret}, timeout=10)
    assert ok.status_code == 200
    import time

    time.sleep(max(0.0, (soon - datetime.now(timezone.utc)).total_seconds()) + 0.2)
    r = requests.get(f"{platform.base_url}/api/v1/datasets", headers={"X-API-Key": secret}, timeout=10)
    assert r.status_code == 401 and r.json() == {"detail": "API key expired"}
    past = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()
    assert org.post("/api/v1/auth/api-keys", json={"name": "past", "expires_at": past}).status_code == 400


def test_keys_of_another_organization_are_invisible(org, other_org):
    kid = org.post("/api/v1/auth/api-keys", json={"name": "mine"}).json()["id"]
    assert kid not in [k["id"] for k in other_org.get("/api/v1/auth/api-keys").json()]
    assert other_org.delete(f"/api/v1/auth/api-keys/{kid}").status_code == 404


def test_validation_errors_use_fastapi_shape(org):
    r = org.post("/api/v1/auth/api-keys", json={"name": "", "scopes": ["nope"]})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert isinstance(detail, list) and {"loc", "msg", "type"} <= set(detail[0])


def test_unknown_route_is_404_detail(org):
    r = org.get("/api/v1/no-such-thing")
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}


def test_authentication_hands_its_connection_back_to_the_pool(private_database_url):
    """Routes await models (seconds) after authenticating: a connection held across that
    await starves the pool under concurrency (QueuePool timeouts answered 500 before)."""
    from starlette.requests import Request

    from cluster.accounts import create_api_key, create_organization
    from cluster.db import get_engine, init_schema, open_session
    from serve_app.deps import get_principal

    init_schema(private_database_url)
    with session_scope(private_database_url) as s:
        org = create_organization(s, "pool")
        _, key = create_api_key(s, org.id, "pool-key")
        org_id = org.id
    pool = get_engine(private_database_url).pool
    session = open_session(private_database_url)
    try:
        for _ in range(2):  # the second call finds last_used_at fresh and writes nothing
            request = Request({"type": "http", "method": "GET", "path": "/", "headers": [(b"x-api-key", key.encode())]})
            assert get_principal(request, session).organization_id == org_id
            assert pool.checkedout() == 0
    finally:
        session.close()
