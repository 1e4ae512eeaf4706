"""Per-key rate limits of the v3 API: fixed windows counted in the metadata database.

Ingress replicas are separate processes, so the counters live in the database and each
request increments its bucket's counter with one atomic upsert (``INSERT .. ON CONFLICT
DO UPDATE .. RETURNING``, on SQLite and PostgreSQL alike). A route declares its bucket::

    @router.get("/x", dependencies=[rate_limited("status_checks")])

The dependency authenticates the key first, records the usage on the ASGI scope and
answers 429 when the window is spent; :class:`RateLimitHeaders` writes ``X-RateLimit-*``
onto whatever answer the request gets, errors included.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import lru_cache

from fastapi import Depends, Request
from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cluster.db import get_engine
from cluster.stt_tables import RateLimitCounter
from serve_app.deps import PrincipalDep, SettingsDep
from serve_app.errors import ApiError

WINDOW_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
SCOPE_KEY = "fathom.rate_limit"  # ASGI scope entry holding the request's Usage
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")

# bucket -> the setting holding its "N/unit" limit
BUCKETS = {
    "model_creation": "stt_rate_model_creation",
    "training_starts": "stt_rate_training_starts",
    "status_checks": "stt_rate_status_checks",
    "data_uploads": "stt_rate_data_uploads",
    "log_retrieval": "stt_rate_log_retrieval",
    "model_changes": "stt_rate_model_changes",
    "transcription": "stt_rate_transcription",
}


@dataclass(frozen=True)
class Rate:
    limit: int  # requests per window
    window_s: int

    @classmethod
    @lru_cache(maxsize=64)
    def parse(cls, text: str) -> Rate:
        """``"10/hour"`` -> Rate(10, 3600)."""
        count, _, unit = text.partition("/")
        if not count.isdigit() or int(count) < 1 or unit not in WINDOW_SECONDS:
            raise ValueError(f"rate {text!r} must be 'N/unit' with N >= 1 and unit one of {list(WINDOW_SECONDS)}")
        return cls(int(count), WINDOW_SECONDS[unit])


@dataclass(frozen=True)
class Usage:
    bucket: str
    limit: int
    used: int  # requests in this window, this one included
    reset: int  # unix seconds when the window ends
    window_s: int

    @property
    def exceeded(self) -> bool:
        return self.used > self.limit

    def retry_after(self, now: float) -> int:
        return max(1, math.ceil(self.reset - now))

    def headers(self) -> dict[str, str]:
        values = (self.limit, max(0, self.limit - self.used), self.reset)
        return {name: str(value) for name, value in zip(RATE_HEADERS, values)}


def hit(url: str, key_id: str, bucket: str, rate: Rate, *, now: float | None = None) -> Usage:
    """Count one request of ``key_id`` in ``bucket``'s current window; one short transaction."""
    now = time.time() if now is None else now
    window_start = int(now // rate.window_s) * rate.window_s
    engine = get_engine(url)
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    table = RateLimitCounter.__table__
    upsert = (
        dialect.insert(table)
        .values(key_id=key_id, bucket=bucket, window_start=window_start, count=1)
        .on_conflict_do_update(index_elements=["key_id", "bucket", "window_start"], set_={"count": table.c.count + 1})
        .returning(table.c.count)
    )
    with engine.begin() as conn:
        used = conn.execute(upsert).scalar_one()
        if used == 1:  # a new window: drop this key's spent ones, so the table holds one row per key and bucket
            conn.execute(
                delete(table).where(
                    table.c.key_id == key_id, table.c.bucket == bucket, table.c.window_start < window_start
                )
            )
    return Usage(bucket=bucket, limit=rate.limit, used=used, reset=window_start + rate.window_s, window_s=rate.window_s)


def rate_limited(bucket: str):
    """Route dependency (for ``dependencies=[...]``) counting the calling key against ``bucket``."""
    setting = BUCKETS[bucket]

    def _count(request: Request, principal: PrincipalDep, settings: SettingsDep) -> Usage:
        usage = hit(settings.database_url, principal.key_id, bucket, Rate.parse(getattr(settings, setting)))
        request.scope[SCOPE_KEY] = usage
        if usage.exceeded:
            retry_after = usage.retry_after(time.time())
            raise ApiError(
                429,
                f"Rate limit exceeded: {usage.limit} {bucket.replace('_', ' ')} requests per {usage.window_s} s; "
                f"retry in {retry_after} s",
                error_code="RATE_LIMIT_EXCEEDED",
                details={
                    "retry_after": retry_after,
                    "limit": usage.limit,
                    "window_seconds": usage.window_s,
                    "bucket": bucket,
                },
                headers={**usage.headers(), "Retry-After": str(retry_after)},
            )
        return usage

    return Depends(_count)


class RateLimitHeaders:
    """ASGI middleware: ``X-RateLimit-*`` of the request's bucket on its answer, whatever produced it."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            usage = scope.get(SCOPE_KEY)
            if message["type"] == "http.response.start" and usage is not None:
                headers = MutableHeaders(scope=message)
                for name, value in usage.headers().items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
