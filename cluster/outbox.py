"""The event outbox: what subscribers must hear about, written in the same transaction as its cause.

Types: ``evaluation.completed``, ``evaluation.failed``, ``model.alias_moved``. Delivery
(webhooks, the UI's live updates) reads ``outbox_events`` in ``id`` order.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from cluster.evaluation_tables import OutboxEvent


def record_event(session: Session, organization_id: str, type_: str, subject_id: str, payload: dict[str, Any]) -> None:
    """Add an event to the caller's transaction: it commits or rolls back with its cause."""
    session.add(OutboxEvent(organization_id=organization_id, type=type_, subject_id=subject_id, payload=payload))
