"""v3 rate limits: the database counters per key and organization (atomic, windowed) and the headers and
429 over HTTP."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import requests
from sqlalchemy import func, select

from cluster.db import init_schema, session_scope
from cluster.stt_tables import RateLimitCounter
from serve_app.rate_limits import Rate, count_request, hit, org_counter_id
from tests.factories import Client

HOUR_S = 3600


@pytest.fixture
def db(database_url) -> str:
    init_schema(database_url)
    return database_url


def test_rate_parse():
    assert Rate.parse("10/hour") == Rate(10, 3600) and Rate.parse("100/minute") == Rate(100, 60)
    for bad in ("0/hour", "ten/hour", "5/week", "5", "-1/second"):
        with pytest.raises(ValueError, match="N/unit"):
            Rate.parse(bad)


def test_fixed_window_counts_then_resets(db):
    key, rate, start = uuid.uuid4().hex, Rate(3, 60), 1_800_000_000  # a window boundary (multiple of 60)
    used = [hit(db, key, "status_checks", rate, now=start + t) for t in (0, 10, 20, 30)]
    assert [u.used for u in used] == [1, 2, 3, 4] and [u.exceeded for u in used] == [False, False, False, True]
    assert {u.reset for u in used} == {start + 60}
    assert [u.headers()["X-RateLimit-Remaining"] for u in used] == ["2", "1", "0", "0"]
    assert used[-1].retry_after(start + 30) == 30 and used[-1].retry_after(start + 59.9) == 1
    fresh = hit(db, key, "status_checks", rate, now=start + 61)
    assert (fresh.used, fresh.exceeded, fresh.reset) == (1, False, start + 120)
    other_bucket = hit(db, key, "log_retrieval", rate, now=start + 30)
    other_key = hit(db, uuid.uuid4().hex, "status_checks", rate, now=start + 30)
    assert other_bucket.used == other_key.used == 1
    with session_scope(db) as s:  # the spent window was dropped when the new one began
        rows = s.scalars(
            select(RateLimitCounter.window_start).where(
                RateLimitCounter.key_id == key, RateLimitCounter.bucket == "status_checks"
            )
        ).all()
    assert rows == [start + 60]


def test_organization_counts_all_its_keys_and_a_share_caps_each(db):
    org, other_org, start = str(uuid.uuid4()), str(uuid.uuid4()), 1_800_000_000
    k1, k2, k3 = (str(uuid.uuid4()) for _ in range(3))

    def count(key: str, organization: str = org, share: float = 1.0, limit: int = 3):
        return count_request(db, key, organization, "status_checks", Rate(limit, 60), share, now=start + 5)

    # Share 1: the documented figure is the organization's, whichever of its keys spends it.
    admitted = [count(k) for k in (k1, k1, k2)]
    assert [(u.counted_per, u.used, u.exceeded) for u in admitted] == [("organization", n, False) for n in (1, 2, 3)]
    refused = count(k2)
    assert (refused.counted_per, refused.used, refused.remaining, refused.exceeded) == ("organization", 4, 0, True)
    assert refused.headers()["X-RateLimit-Remaining"] == "0" and refused.reset == start + 60
    assert not count(str(uuid.uuid4()), other_org).exceeded  # another organization is unaffected

    # Share 0.5 of 6: each key stops at 3, and a key's refusals do not spend its organization's window.
    org, (j1, j2, j3) = str(uuid.uuid4()), (str(uuid.uuid4()) for _ in range(3))
    assert [count(j1, org, 0.5, 6).exceeded for _ in range(5)] == [False, False, False, True, True]
    assert count(j1, org, 0.5, 6).counted_per == "key"
    assert [count(j2, org, 0.5, 6).exceeded for _ in range(3)] == [False, False, False]  # org at 6 of 6
    last = count(j3, org, 0.5, 6)
    assert (last.counted_per, last.used, last.exceeded) == ("organization", 7, True)
    with session_scope(db) as s:
        row = s.get(RateLimitCounter, (org_counter_id(org), "status_checks", start))
        assert row is not None and row.count == 7 and len(row.key_id) == 36  # fits String(36)
    assert org_counter_id(org) not in (j1, j2, j3) and ":" not in j1


def test_concurrent_hits_are_counted_exactly_once(db):
    """Six keys of one organization at once: no lost or doubled increment in either counter."""
    org, rate, now = str(uuid.uuid4()), Rate(1000, HOUR_S), time.time()
    keys = [str(uuid.uuid4()) for _ in range(6)]
    seen: list[int] = []
    lock = threading.Lock()

    def worker(key: str):
        for _ in range(20):
            usage = count_request(db, key, org, "data_uploads", rate, 1.0, now=now)
            assert usage.counted_per == "organization"  # never further from refusing than a key
            with lock:
                seen.append(usage.used)

    threads = [threading.Thread(target=worker, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(1, 121))
    with session_scope(db) as s:
        counts = dict(s.execute(select(RateLimitCounter.key_id, RateLimitCounter.count)).all())
    assert counts[org_counter_id(org)] == 120 and [counts[k] for k in keys] == [20] * 6


def _limits(r) -> tuple[int, int, int]:
    return (
        int(r.headers["X-RateLimit-Limit"]),
        int(r.headers["X-RateLimit-Remaining"]),
        int(r.headers["X-RateLimit-Reset"]),
    )


def test_headers_on_every_answer_and_429_when_spent(platform, org):
    c = Client(platform.base_url, org.key, header="Authorization")
    created = c.post("/api/v3/custom_models", json={"name": "limited", "language": "en"})
    assert created.status_code == 201 and _limits(created)[:2] == (10, 9)
    mid = created.json()["id"]
    hour_end = (int(time.time()) // HOUR_S + 1) * HOUR_S

    for i in range(20):  # log retrieval: 20/hour
        r = c.get(f"/api/v3/custom_models/{mid}/log")
        assert r.status_code == 200 and _limits(r)[:2] == (20, 19 - i), r.headers
    assert abs(_limits(r)[2] - hour_end) <= 1
    r = c.get(f"/api/v3/custom_models/{mid}/log")
    assert r.status_code == 429 and r.json()["error_code"] == "RATE_LIMIT_EXCEEDED", r.text
    retry_after = r.json()["details"]["retry_after"]
    assert int(r.headers["Retry-After"]) == retry_after and 0 < retry_after <= HOUR_S
    assert _limits(r)[:2] == (20, 0)
    assert c.get(f"/api/v3/custom_models/{mid + 1_000_000}/log").status_code == 429  # per key, not per model

    # Other buckets of the same key, and other keys, are unaffected; errors carry their bucket's headers.
    assert c.get(f"/api/v3/custom_models/{mid}").status_code == 200
    missing = c.get(f"/api/v3/custom_models/{mid + 1_000_000}")
    assert missing.status_code == 404 and _limits(missing)[0] == 100
    invalid = c.get("/api/v3/custom_models", params={"limit": 0})
    assert invalid.status_code == 422 and _limits(invalid)[0] == 100
    conflict = c.post(f"/api/v3/custom_models/{mid}/run", json={})
    assert conflict.status_code == 409 and _limits(conflict)[:2] == (5, 4)
    second_key = org.post("/api/v1/auth/api-keys", json={"name": "second"}).json()["key"]
    same_org = Client(platform.base_url, second_key, header="Authorization").get(f"/api/v3/custom_models/{mid}/log")
    assert same_org.status_code == 429 and same_org.json()["details"]["counted_per"] == "organization"


def test_keys_of_one_organization_share_its_limits(platform, org, other_org):
    """The documented limits are the organization's: minting keys does not multiply them."""
    keys = [org.post("/api/v1/auth/api-keys", json={"name": f"k{i}"}).json()["key"] for i in range(2)]
    clients = [Client(platform.base_url, k, header="Authorization") for k in keys]
    mid = clients[0].post("/api/v3/custom_models", json={"name": "shared", "language": "en"}).json()["id"]
    for i in range(20):  # log retrieval: 20/hour, spent by both keys together
        r = clients[i % 2].get(f"/api/v3/custom_models/{mid}/log")
        assert r.status_code == 200 and _limits(r)[:2] == (20, 19 - i), (i, r.status_code, r.headers)
    for c in clients:
        r = c.get(f"/api/v3/custom_models/{mid}/log")
        assert r.status_code == 429 and _limits(r)[:2] == (20, 0), r.text
        details = r.json()["details"]
        assert details["counted_per"] == "organization" and int(r.headers["Retry-After"]) == details["retry_after"]
    other = Client(platform.base_url, other_org.key, header="Authorization")
    other_mid = other.post("/api/v3/custom_models", json={"name": "theirs", "language": "en"}).json()["id"]
    fresh = other.get(f"/api/v3/custom_models/{other_mid}/log")
    assert fresh.status_code == 200 and _limits(fresh)[:2] == (20, 19)


def test_every_v3_answer_carries_the_headers_unauthenticated_and_unrouted_uncounted(platform, org):
    """No key or no route: nothing to count against, so the bucket's limit with nothing spent."""
    base, now = platform.base_url, time.time()
    minute_end, hour_end = (int(now) // 60 + 1) * 60, (int(now) // HOUR_S + 1) * HOUR_S
    c = Client(base, org.key, header="Authorization")
    bad = Client(base, org.key + "x", header="Authorization")
    answers = {
        "no key": (requests.get(f"{base}/api/v3/custom_models", timeout=10), 401, 100),
        "bad key": (bad.post("/api/v3/custom_models", json={"name": "x", "language": "en"}), 401, 10),
        "bad key, log": (bad.get("/api/v3/custom_models/1/log"), 401, 20),
        "unknown route": (c.get("/api/v3/no-such-thing"), 404, 100),
        "unknown route, no key": (requests.get(f"{base}/api/v3/no/such/thing", timeout=10), 404, 100),
        "wrong method": (c.patch("/api/v3/custom_models"), 405, 100),
    }
    for what, (r, status, limit) in answers.items():
        assert r.status_code == status and "error_code" in r.json(), (what, r.status_code, r.text)
        limits = _limits(r)
        assert limits[:2] == (limit, limit), (what, r.headers)
        assert abs(limits[2] - (hour_end if limit in (10, 20) else minute_end)) <= 1, (what, r.headers)
    assert _limits(c.get("/api/v3/custom_models"))[1] == 99  # none of those was counted
    for v1 in (requests.get(f"{base}/api/v1/datasets", timeout=10), org.get("/api/v1/no-such-thing")):
        assert "X-RateLimit-Limit" not in v1.headers  # v1 has no rate limits


def test_status_checks_share_one_bucket_across_both_list_paths(platform, org):
    c = Client(platform.base_url, org.key, header="Authorization")
    first = _limits(c.get("/api/v3/custom_models"))[1]
    assert _limits(c.get("/api/v3/speech-to-text/models"))[1] == first - 1
