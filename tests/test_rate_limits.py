"""v3 rate limits: the database counter (atomic, windowed) and the headers and 429 over HTTP."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from sqlalchemy import func, select

from cluster.db import init_schema, session_scope
from cluster.stt_tables import RateLimitCounter
from serve_app.rate_limits import Rate, hit
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


def test_concurrent_hits_are_counted_exactly_once(db):
    key, rate, now = uuid.uuid4().hex, Rate(1000, HOUR_S), time.time()
    seen: list[int] = []
    lock = threading.Lock()

    def worker():
        for _ in range(20):
            used = hit(db, key, "data_uploads", rate, now=now).used
            with lock:
                seen.append(used)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(1, 121))  # no lost or doubled increment
    with session_scope(db) as s:
        total = s.scalar(select(func.sum(RateLimitCounter.count)).where(RateLimitCounter.key_id == key))
    assert total == 120


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
    fresh = Client(platform.base_url, second_key, header="Authorization").get(f"/api/v3/custom_models/{mid}/log")
    assert fresh.status_code == 200 and _limits(fresh)[:2] == (20, 19)


def test_status_checks_share_one_bucket_across_both_list_paths(platform, org):
    c = Client(platform.base_url, org.key, header="Authorization")
    first = _limits(c.get("/api/v3/custom_models"))[1]
    assert _limits(c.get("/api/v3/speech-to-text/models"))[1] == first - 1
