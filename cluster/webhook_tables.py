"""Tables of webhook endpoints, their deliveries (one per event and endpoint) and every delivery attempt.

A delivery row is created in the same transaction as its outbox event (``cluster.outbox``), so
an event that happened is never without its deliveries; its ``id`` is the ``webhook-id`` a
receiver deduplicates by, the same on every retry and redelivery.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cluster.tables import Base, _created, _id, _org, utcnow


def new_message_id() -> str:
    return f"msg_{secrets.token_urlsafe(18)}"


class WebhookEndpoint(Base):
    """The secrets are kept as issued: signing needs them (``previous_secret`` only while its grace lasts)."""

    __tablename__ = "webhook_endpoints"
    id: Mapped[str] = _id()
    organization_id: Mapped[str] = _org()
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    event_types: Mapped[list[Any]] = mapped_column(default=list)  # empty: every type
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    secret: Mapped[str] = mapped_column(String(100))
    previous_secret: Mapped[str | None] = mapped_column(String(100), nullable=True)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    failing_since: Mapped[datetime | None] = mapped_column(nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookMessage(Base):
    """One event for one endpoint; claimed with a lease, every write conditional on the claim's ``attempts``."""

    __tablename__ = "webhook_messages"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=new_message_id)
    organization_id: Mapped[str] = _org()
    endpoint_id: Mapped[str] = mapped_column(String(36), ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[int] = mapped_column(Integer, ForeignKey("outbox_events.id", ondelete="CASCADE"), index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)  # pending | succeeded | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # claims so far, never reset: the claim token
    retry_base: Mapped[int] = mapped_column(Integer, default=0)  # attempts before the last redelivery
    next_attempt_at: Mapped[datetime | None] = mapped_column(nullable=True, index=True)
    lease_until: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = _created()


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(40), ForeignKey("webhook_messages.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    latency_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_snippet: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
