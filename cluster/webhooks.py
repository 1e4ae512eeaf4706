"""Webhook endpoints and the delivery state machine.

A delivery (``WebhookMessage``) is ``pending`` until an attempt succeeds (``succeeded``) or no
attempt is left (``failed``). The Dispatcher claims due deliveries with a lease; the claim
increments ``attempts``, and the attempt's outcome is written only while that claim still holds
(``status == pending and attempts == claimed``). A replica that dies mid-attempt writes nothing:
the lease runs out and the delivery is sent again, with the same ``webhook-id``.

Outcomes: 2xx succeeds; 410 Gone disables the endpoint; network errors, 408, 429 (after its
``Retry-After`` when longer) and 5xx are retried on ``settings.webhook_retry_schedule_s`` with
jitter; any other answer fails the delivery (the receiver refused it; redeliver it by hand).
An endpoint failing for ``webhook_disable_after_s`` is disabled; disabling records a
``webhook_endpoint.disabled`` event in the same transaction.
"""

from __future__ import annotations

import base64
import random
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from cluster.db import session_scope
from cluster.evaluation_tables import OutboxEvent
from cluster.outbox import record_event
from cluster.tables import utcnow
from cluster.webhook_tables import WebhookAttempt, WebhookEndpoint, WebhookMessage
from schemas.settings import Settings

RETRYABLE_STATUS = frozenset({408, 429})
MAX_RETRY_AFTER_S = 86400.0
SNIPPET_BYTES = 2048


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The current secret, and the previous one while its grace lasts (receivers accept either)."""
    out = [endpoint.secret]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires is not None and expires > now:
        out.append(endpoint.previous_secret)
    return out


def rotate_secret(endpoint: WebhookEndpoint, grace_s: int) -> str:
    now = utcnow()
    secret = new_secret()
    endpoint.previous_secret = endpoint.secret if grace_s > 0 else None
    endpoint.previous_secret_expires_at = now + timedelta(seconds=grace_s) if grace_s > 0 else None
    endpoint.secret, endpoint.updated_at = secret, now
    return secret


def disable(session: Session, endpoint_id: str, reason: str) -> bool:
    """Disable an enabled endpoint and record ``webhook_endpoint.disabled``; False if it was not enabled."""
    now = utcnow()
    won = session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.enabled.is_(True))
        .values(enabled=False, disabled_reason=reason, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if won:
        org = session.scalar(select(WebhookEndpoint.organization_id).where(WebhookEndpoint.id == endpoint_id))
        record_event(
            session, org, "webhook_endpoint.disabled", endpoint_id,
            ids={"webhook_endpoint_id": endpoint_id}, status="disabled", error=reason,
            links={"webhook_endpoint": f"/api/v1/webhook-endpoints/{endpoint_id}"},
        )
    return bool(won)


# --- delivery ----------------------------------------------------------------------------------


def _claimable(now: datetime):
    return and_(
        WebhookMessage.status == "pending",
        WebhookMessage.next_attempt_at <= now,
        or_(WebhookMessage.lease_until.is_(None), WebhookMessage.lease_until < now),
    )


def claim(url: str, *, limit: int, lease_s: float) -> list[tuple[str, int]]:
    """Claim up to ``limit`` due deliveries of enabled endpoints; returns (message_id, attempt) pairs."""
    now = utcnow()
    claimed: list[tuple[str, int]] = []
    with session_scope(url) as s:
        rows = s.execute(
            select(WebhookMessage.id, WebhookMessage.attempts)
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookMessage.endpoint_id)
            .where(_claimable(now), WebhookEndpoint.enabled.is_(True))
            .order_by(WebhookMessage.next_attempt_at, WebhookMessage.id)
            .limit(limit)
        ).all()
        for message_id, attempts in rows:
            won = s.execute(
                update(WebhookMessage)
                .where(WebhookMessage.id == message_id, WebhookMessage.attempts == attempts, _claimable(now))
                .values(attempts=attempts + 1, lease_until=now + timedelta(seconds=lease_s))
                .execution_options(synchronize_session=False)
            ).rowcount
            if won:
                claimed.append((message_id, attempts + 1))
    return claimed


@dataclass(frozen=True)
class Plan:
    """What one attempt sends: the body is the event's, so every attempt signs the same bytes."""

    message_id: str
    endpoint_id: str
    url: str
    body: dict[str, Any]
    secrets: list[str]


def _holds(message_id: str, attempt: int):
    return and_(WebhookMessage.id == message_id, WebhookMessage.status == "pending", WebhookMessage.attempts == attempt)


def plan(url: str, message_id: str, attempt: int) -> Plan | None:
    """The claimed attempt's request, or None when the claim was lost or the endpoint disabled."""
    with session_scope(url) as s:
        row = s.execute(
            select(WebhookMessage, WebhookEndpoint, OutboxEvent.payload)
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookMessage.endpoint_id)
            .join(OutboxEvent, OutboxEvent.id == WebhookMessage.event_id)
            .where(_holds(message_id, attempt))
        ).first()
        if row is None or not row[1].enabled:
            return None
        message, endpoint, payload = row
        return Plan(message.id, endpoint.id, endpoint.url, payload, signing_secrets(endpoint, utcnow()))


@dataclass(frozen=True)
class Outcome:
    """One attempt as it went: an answer (``status_code``) or none (``error``)."""

    status_code: int | None = None
    latency_ms: int | None = None
    response_snippet: str | None = None
    error: str | None = None
    retry_after_s: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def retryable(self) -> bool:
        code = self.status_code
        return code is None or code in RETRYABLE_STATUS or code >= 500


def retry_delay(settings: Settings, attempt: int, outcome: Outcome, rng: random.Random) -> float | None:
    """Seconds until the attempt after ``attempt`` (1-based), or None when none is left.

    ``webhook_retry_schedule_s[n]`` is the wait before attempt n+1 (the first is the initial
    send); each is jittered by +- ``webhook_retry_jitter``; a longer Retry-After wins.
    """
    schedule = settings.webhook_retry_schedule_s
    if not outcome.retryable or attempt >= len(schedule):
        return None
    delay = schedule[attempt] * (1 + rng.uniform(-settings.webhook_retry_jitter, settings.webhook_retry_jitter))
    if outcome.retry_after_s is not None:
        delay = max(delay, min(outcome.retry_after_s, MAX_RETRY_AFTER_S))
    return max(delay, 0.0)


def record_attempt(url: str, settings: Settings, message_id: str, attempt: int, outcome: Outcome,
                   rng: random.Random | None = None) -> str | None:
    """Log the attempt and move the delivery on, if the claim still holds; returns its new status (None: lost)."""
    now = utcnow()
    with session_scope(url) as s:
        message = s.scalars(select(WebhookMessage).where(_holds(message_id, attempt)).with_for_update()).first()
        if message is None:
            return None
        retry_base = message.retry_base
        s.add(WebhookAttempt(
            message_id=message_id, at=now, status_code=outcome.status_code, latency_ms=outcome.latency_ms,
            response_snippet=outcome.response_snippet[:SNIPPET_BYTES] if outcome.response_snippet else None,
            error=outcome.error,
        ))
        endpoint = s.get(WebhookEndpoint, message.endpoint_id)
        if outcome.succeeded:
            message.status, message.next_attempt_at = "succeeded", None
            endpoint.failing_since = None
        elif outcome.status_code == 410:
            message.status, message.next_attempt_at = "failed", None
            disable(s, endpoint.id, "the receiver answered 410 Gone")
        else:
            endpoint.failing_since = endpoint.failing_since or now
            delay = retry_delay(settings, attempt - retry_base, outcome, rng or random.Random())
            if now - endpoint.failing_since >= timedelta(seconds=settings.webhook_disable_after_s):
                message.status, message.next_attempt_at = "failed", None
                days = settings.webhook_disable_after_s / 86400
                disable(s, endpoint.id, f"every delivery failed for {days:g} days")
            elif delay is None:
                message.status, message.next_attempt_at = "failed", None
            else:
                message.next_attempt_at = now + timedelta(seconds=delay)
        message.lease_until = None
        return message.status


def redeliver(session: Session, message: WebhookMessage) -> None:
    """Send again now, with the same id (fresh timestamp and signature); the retry schedule starts over."""
    message.status, message.next_attempt_at, message.lease_until = "pending", utcnow(), None
    message.retry_base = message.attempts


def send_test_event(session: Session, endpoint: WebhookEndpoint) -> str:
    """Record ``webhook.test`` for this endpoint alone; returns the delivery's id."""
    event = record_event(
        session, endpoint.organization_id, "webhook.test", endpoint.id,
        ids={"webhook_endpoint_id": endpoint.id}, status="test",
        links={"webhook_endpoint": f"/api/v1/webhook-endpoints/{endpoint.id}"}, endpoint_id=endpoint.id,
    )
    session.flush()
    return session.scalar(select(WebhookMessage.id).where(WebhookMessage.event_id == event.id))
