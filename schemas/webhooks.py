"""Webhook endpoints, the events they receive, and their delivery log (Fathom's own v1 resources).

Deliveries follow Standard Webhooks: ``webhook-id`` (stable across retries and redeliveries),
``webhook-timestamp`` and ``webhook-signature: v1,<base64 HMAC-SHA256>`` over
``{id}.{timestamp}.{body}`` with the endpoint's ``whsec_`` secret (two signatures while a
rotated secret's grace lasts).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from schemas.common import ORMModel, Page, Text, UTCTimestamp

EVENT_TYPES = (
    "training_job.succeeded",
    "training_job.failed",
    "training_job.cancelled",
    "custom_model.training_succeeded",
    "custom_model.training_failed",
    "inference_job.completed",
    "inference_job.failed",
    "inference_job.cancelled",
    "evaluation.completed",
    "evaluation.failed",
    "model.alias_changed",
    "webhook_endpoint.disabled",
    "webhook.test",
)
MAX_GRACE_S = 7 * 86400
MAX_URL_CHARS = 2000
DeliveryStatus = Literal["pending", "succeeded", "failed"]


EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]


def _unique(types: list[str] | None) -> list[str] | None:
    return sorted(set(types)) if types is not None else None


class WebhookEndpointCreate(BaseModel):
    url: Text = Field(
        max_length=MAX_URL_CHARS,
        description="https:// only, resolving to a public address (an operator may allow http and private networks).",
        examples=["https://hooks.example.com/fathom"],
    )
    event_types: list[EventType] = Field(
        default_factory=list, max_length=len(EVENT_TYPES),
        description="Event types to receive; empty: every type. `webhook.test` always reaches the endpoint tested.",
    )
    enabled: bool = True
    description: Text = Field("", max_length=500)

    _types = field_validator("event_types")(_unique)


class WebhookEndpointUpdate(BaseModel):
    url: Text | None = Field(None, max_length=MAX_URL_CHARS)
    event_types: list[EventType] | None = Field(None, max_length=len(EVENT_TYPES))
    enabled: bool | None = Field(None, description="true re-enables a disabled endpoint (its failed deliveries stay failed; redeliver them).")
    description: Text | None = Field(None, max_length=500)

    _types = field_validator("event_types")(_unique)


class WebhookEndpointPublic(ORMModel):
    id: str
    url: str
    event_types: list[str]
    enabled: bool
    description: str
    disabled_reason: str | None = Field(description="Why the endpoint was disabled (410 Gone, days of failures, or its owner).")
    previous_secret_expires_at: UTCTimestamp | None = Field(description="Until then deliveries also carry the previous secret's signature.")
    failing_since: UTCTimestamp | None = Field(description="First failed attempt since the last success.")
    created_at: UTCTimestamp
    updated_at: UTCTimestamp


class WebhookEndpointCreated(WebhookEndpointPublic):
    secret: str = Field(description="The signing secret (whsec_...); shown only in this answer.")


class WebhookEndpointList(Page[WebhookEndpointPublic]):
    pass


class SecretRotation(BaseModel):
    grace_seconds: int = Field(
        86400, ge=0, le=MAX_GRACE_S,
        description="How long deliveries are signed with the previous secret as well (at most 7 days).",
    )


class SecretRotated(BaseModel):
    secret: str = Field(description="The new signing secret; shown only in this answer.")
    previous_secret_expires_at: UTCTimestamp | None


class DeliveryAttempt(ORMModel):
    at: UTCTimestamp
    status_code: int | None = Field(description="The receiver's HTTP status; null when no answer came.")
    latency_ms: int | None
    response_snippet: str | None = Field(description="The first 2 KB of the receiver's answer.")
    error: str | None = Field(description="Why the attempt failed without an answer, or why it counts as failed.")


class WebhookDelivery(BaseModel):
    """One event's delivery to one endpoint; its ``id`` is the ``webhook-id`` header."""

    id: str
    endpoint_id: str
    event_type: EventType
    status: DeliveryStatus = Field(description="pending: waiting for its next attempt; failed: no more attempts (redeliver it).")
    next_attempt_at: UTCTimestamp | None
    created_at: UTCTimestamp
    payload: dict[str, Any]
    attempts: list[DeliveryAttempt]


class WebhookDeliveryList(Page[WebhookDelivery]):
    pass


class Redelivery(BaseModel):
    id: str
    status: DeliveryStatus
    next_attempt_at: UTCTimestamp | None


class WebhookTest(BaseModel):
    delivery_id: str = Field(description="The webhook-id of the test delivery; follow it in the delivery log.")
    event_type: Literal["webhook.test"] = "webhook.test"


def event_body(event_type: str, timestamp: datetime, data: dict[str, Any]) -> dict[str, Any]:
    """The delivered JSON: thin, ids and links rather than documents (always under 20 KB)."""
    return {"type": event_type, "timestamp": timestamp.isoformat().replace("+00:00", "Z"), "data": data}
