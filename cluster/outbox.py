"""The event outbox: what subscribers must hear about, written in the same transaction as its cause.

``record_event`` adds the event and one webhook delivery per enabled endpoint of the
organization that subscribes to its type, all in the caller's transaction: the state change,
its event and its deliveries commit or roll back together, so a crash can delay a delivery
(``cluster.webhooks`` retries it) but never lose one.

The payload is thin (``schemas.webhooks.event_body``): ``data`` holds ids, the status, the
error, a small summary, and links relative to the public URL (made absolute when sent).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cluster.evaluation_tables import OutboxEvent
from cluster.tables import utcnow
from cluster.webhook_tables import WebhookEndpoint, WebhookMessage
from schemas.webhooks import EVENT_TYPES, event_body


def record_event(
    session: Session,
    organization_id: str,
    type_: str,
    subject_id: str,
    *,
    ids: dict[str, Any],
    status: str,
    error: str | None = None,
    summary: dict[str, Any] | None = None,
    links: dict[str, str] | None = None,
    endpoint_id: str | None = None,
) -> OutboxEvent:
    """Add an event (and its deliveries) to the caller's transaction. ``endpoint_id``: to that endpoint only."""
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type_!r}")
    now = utcnow()
    data = {"ids": ids, "status": status, "error": error[:1000] if error else None, "summary": summary or {}, "links": links or {}}
    event = OutboxEvent(organization_id=organization_id, type=type_, subject_id=subject_id, payload=event_body(type_, now, data), created_at=now)
    session.add(event)
    session.flush()
    query = select(WebhookEndpoint.id, WebhookEndpoint.event_types).where(
        WebhookEndpoint.organization_id == organization_id, WebhookEndpoint.enabled.is_(True)
    )
    if endpoint_id is not None:
        query = query.where(WebhookEndpoint.id == endpoint_id)
    for target, types in session.execute(query).all():
        if endpoint_id is not None or not types or type_ in types:
            session.add(
                WebhookMessage(
                    organization_id=organization_id, endpoint_id=target, event_id=event.id, event_type=type_,
                    status="pending", next_attempt_at=now, created_at=now,
                )
            )
    return event
