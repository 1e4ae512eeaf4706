"""Rate limits of the v3 API: fixed windows per organization and per key, counted in the database.

Ingress replicas are separate processes, so the counters live in the database and each
request increments its counters with one atomic upsert each (``INSERT .. ON CONFLICT DO
UPDATE .. RETURNING``, on SQLite and PostgreSQL alike). A request counts against its key
first (limit: ``stt_rate_key_share`` of the organization's) and, when the key admits it,
against its organization (the documented figure; the vendor's limits are per account), so a
refused key cannot spend its organization's window. A route declares its bucket::

    @router.get("/x", dependencies=[rate_limited("status_checks")])

The dependency records the bucket uncounted on the ASGI scope before it authenticates (what a
401 reports), then the counted usage nearer to refusing, and answers 429 when either window is
spent; :class:`RateLimitHeaders` writes ``X-RateLimit-*`` onto every v3 answer, errors included,
and answers given before a bucket is known (unknown routes, 405, 413) report the status-checks
bucket uncounted.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, replace
from functools import lru_cache

from fastapi import Depends, Request
from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cluster.accounts import Principal
from cluster.db import get_engine
from cluster.stt_tables import RateLimitCounter
from serve_app.deps import SettingsDep, get_principal
from serve_app.metrics import rate_limit_refused
from serve_app.errors import ApiError, is_v3

WINDOW_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
SCOPE_KEY = "fathom.rate_limit"  # ASGI scope entry holding the request's Usage
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
UNROUTED_BUCKET = "status_checks"  # what a v3 answer that reached no route's bucket reports
ORG_COUNTER_PREFIX = "org:"  # counter ids: key ids are hyphenated UUIDs, organizations "org:" + 32 hex

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

    def window_start(self, now: float) -> int:
        return int(now // self.window_s) * self.window_s


@dataclass(frozen=True)
class Usage:
    bucket: str
    limit: int
    used: int  # requests in this window, this one included
    reset: int  # unix seconds when the window ends
    window_s: int
    counted_per: str = "key"  # "key", "organization", or "none" (not counted: no key, or no route)

    @classmethod
    def uncounted(cls, bucket: str, rate: Rate, now: float) -> Usage:
        return cls(bucket, rate.limit, 0, rate.window_start(now) + rate.window_s, rate.window_s, "none")

    @property
    def exceeded(self) -> bool:
        return self.used > self.limit

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    def retry_after(self, now: float) -> int:
        return max(1, math.ceil(self.reset - now))

    def headers(self) -> dict[str, str]:
        values = (self.limit, self.remaining, self.reset)
        return {name: str(value) for name, value in zip(RATE_HEADERS, values)}


def org_counter_id(organization_id: str) -> str:
    """The counter id of an organization: fits the 36 characters a key id takes, never equals one."""
    return ORG_COUNTER_PREFIX + uuid.UUID(organization_id).hex


def hit(url: str, key_id: str, bucket: str, rate: Rate, *, now: float | None = None) -> Usage:
    """Count one request of counter ``key_id`` (a key id or :func:`org_counter_id`) in ``bucket``'s
    current window; one short transaction."""
    now = time.time() if now is None else now
    window_start = rate.window_start(now)
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
        if used == 1:  # a new window: drop this counter's spent ones, so the table holds one row per counter and bucket
            conn.execute(
                delete(table).where(
                    table.c.key_id == key_id, table.c.bucket == bucket, table.c.window_start < window_start
                )
            )
    return Usage(bucket=bucket, limit=rate.limit, used=used, reset=window_start + rate.window_s, window_s=rate.window_s)


def count_request(
    url: str, key_id: str, organization_id: str, bucket: str, rate: Rate, key_share: float, *, now: float | None = None
) -> Usage:
    """Count one request against its key, then (if the key admits it) its organization; returns the
    usage nearer to refusing, so an exceeded one whenever either is (the organization on a tie)."""
    now = time.time() if now is None else now
    key = hit(url, key_id, bucket, Rate(max(1, math.floor(rate.limit * key_share)), rate.window_s), now=now)
    if key.exceeded:
        return key
    org = replace(hit(url, org_counter_id(organization_id), bucket, rate, now=now), counted_per="organization")
    return min(org, key, key=lambda u: u.remaining)


def rate_limited(bucket: str):
    """Route dependency (for ``dependencies=[...]``) counting the calling key and its organization
    against ``bucket``."""
    setting = BUCKETS[bucket]

    def _announce(request: Request, settings: SettingsDep) -> Rate:
        rate = Rate.parse(getattr(settings, setting))
        request.scope[SCOPE_KEY] = Usage.uncounted(bucket, rate, time.time())  # what a 401 reports
        return rate

    # Dependencies resolve in parameter order: the bucket is on the scope before authentication can
    # refuse. (A default, not Annotated: the annotation is a string naming a local.)
    def _count(
        request: Request,
        settings: SettingsDep,
        rate: Rate = Depends(_announce),
        principal: Principal = Depends(get_principal),
    ) -> Usage:
        share = settings.stt_rate_key_share
        usage = count_request(settings.database_url, principal.key_id, principal.organization_id, bucket, rate, share)
        request.scope[SCOPE_KEY] = usage
        if usage.exceeded:
            rate_limit_refused(bucket)
            retry_after = usage.retry_after(time.time())
            raise ApiError(
                429,
                f"Rate limit exceeded: {usage.limit} {bucket.replace('_', ' ')} requests per {usage.window_s} s "
                f"per {usage.counted_per}; retry in {retry_after} s",
                error_code="RATE_LIMIT_EXCEEDED",
                details={
                    "retry_after": retry_after,
                    "limit": usage.limit,
                    "window_seconds": usage.window_s,
                    "bucket": bucket,
                    "counted_per": usage.counted_per,
                },
                headers={**usage.headers(), "Retry-After": str(retry_after)},
            )
        return usage

    return Depends(_count)


class RateLimitHeaders:
    """ASGI middleware: ``X-RateLimit-*`` on every v3 answer, whatever produced it: the request's
    bucket when a route declared one, else the status-checks bucket uncounted."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_v3(Request(scope)):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                usage = scope.get(SCOPE_KEY) or _unrouted(scope)
                headers = MutableHeaders(scope=message)
                for name, value in usage.headers().items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _unrouted(scope: Scope) -> Usage:
    settings = scope["app"].state.settings
    return Usage.uncounted(UNROUTED_BUCKET, Rate.parse(getattr(settings, BUCKETS[UNROUTED_BUCKET])), time.time())
