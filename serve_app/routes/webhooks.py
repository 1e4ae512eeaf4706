"""Webhook endpoints, their delivery log, redelivery, tests and secret rotation.

Fathom's own v1 endpoints (v1 error shape, both auth headers): v1 keys (detection scopes) and
v3-style keys (custom_models scopes) may both manage them. Events are recorded with their cause
(``cluster.outbox``) and sent by the Dispatcher (``serve_app.webhook_delivery``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from cluster import webhook_urls, webhooks
from cluster.accounts import Principal
from cluster.evaluation_tables import OutboxEvent
from cluster.tables import utcnow
from cluster.webhook_tables import WebhookAttempt, WebhookEndpoint, WebhookMessage
from schemas.auth import CUSTOM_MODELS_READ, CUSTOM_MODELS_WRITE, DETECTION_READ, DETECTION_WRITE
from schemas.common import Id
from schemas.settings import Settings
from schemas.webhooks import (
    DeliveryAttempt,
    DeliveryStatus,
    EventType,
    Redelivery,
    SecretRotated,
    SecretRotation,
    WebhookDelivery,
    WebhookDeliveryList,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointList,
    WebhookEndpointPublic,
    WebhookEndpointUpdate,
    WebhookTest,
)
from serve_app.deps import PageDep, SessionDep, SettingsDep, fetch_window, require
from serve_app.errors import V1_ROUTE_ERRORS, ApiError, v1_errors

router = APIRouter(prefix="/api/v1", tags=["webhooks"], responses=v1_errors(*V1_ROUTE_ERRORS))

Reader = Annotated[Principal, Depends(require(DETECTION_READ, CUSTOM_MODELS_READ))]
Writer = Annotated[Principal, Depends(require(DETECTION_WRITE, CUSTOM_MODELS_WRITE))]
EndpointPath = Annotated[Id, Path()]
MessagePath = Annotated[str, Path(pattern=r"^msg_[A-Za-z0-9_-]{1,36}$")]
ENDPOINTS = "/webhook-endpoints"
ENDPOINT = ENDPOINTS + "/{endpoint_id}"


def _owned(session: Session, principal: Principal, endpoint_id: str) -> WebhookEndpoint:
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.organization_id != principal.organization_id:
        raise ApiError(404, "Webhook endpoint not found")
    return endpoint


def _check_url(url: str, settings: Settings) -> str:
    try:
        webhook_urls.check_url(url, settings)
    except webhook_urls.UnsafeWebhookUrl as e:
        raise ApiError(400, f"Webhook URL refused: {e}", details={"url": url}) from None
    return url


@router.post(ENDPOINTS, status_code=201, response_model=WebhookEndpointCreated, responses=v1_errors(400))
def create_endpoint(body: WebhookEndpointCreate, session: SessionDep, settings: SettingsDep, principal: Writer) -> WebhookEndpointCreated:
    """Subscribe a URL to events; the answer carries the signing secret, shown only here."""
    endpoint = WebhookEndpoint(
        organization_id=principal.organization_id, url=_check_url(body.url, settings), description=body.description,
        event_types=body.event_types, enabled=body.enabled, disabled_reason=None if body.enabled else "disabled by its owner",
        secret=webhooks.new_secret(), created_by=principal.key_id,
    )
    session.add(endpoint)
    session.commit()
    return WebhookEndpointCreated(**WebhookEndpointPublic.model_validate(endpoint).model_dump(), secret=endpoint.secret)


@router.get(ENDPOINTS, response_model=WebhookEndpointList)
def list_endpoints(session: SessionDep, principal: Reader, page: PageDep) -> WebhookEndpointList:
    query = select(WebhookEndpoint).where(WebhookEndpoint.organization_id == principal.organization_id)
    rows, total = fetch_window(session, query, (WebhookEndpoint.created_at, WebhookEndpoint.id), page.offset, page.page_size)
    return WebhookEndpointList(items=rows, total=total, page=page.page, page_size=page.page_size)


@router.get(ENDPOINT, response_model=WebhookEndpointPublic, responses=v1_errors(404))
def get_endpoint(endpoint_id: EndpointPath, session: SessionDep, principal: Reader) -> WebhookEndpoint:
    return _owned(session, principal, endpoint_id)


@router.patch(ENDPOINT, response_model=WebhookEndpointPublic, responses=v1_errors(400, 404))
def update_endpoint(
    endpoint_id: EndpointPath, body: WebhookEndpointUpdate, session: SessionDep, settings: SettingsDep, principal: Writer
) -> WebhookEndpoint:
    """Change the URL, event types or description; ``enabled`` turns delivery off and on again."""
    endpoint = _owned(session, principal, endpoint_id)
    if body.url is not None:
        endpoint.url = _check_url(body.url, settings)
    if body.event_types is not None:
        endpoint.event_types = body.event_types
    if body.description is not None:
        endpoint.description = body.description
    if body.enabled is not None and body.enabled != endpoint.enabled:
        endpoint.enabled = body.enabled
        endpoint.disabled_reason = None if body.enabled else "disabled by its owner"
        endpoint.failing_since = None
    endpoint.updated_at = utcnow()
    session.commit()
    return endpoint


@router.delete(ENDPOINT, status_code=204, responses=v1_errors(404))
def delete_endpoint(endpoint_id: EndpointPath, session: SessionDep, principal: Writer) -> Response:
    """Remove the endpoint with its delivery log; pending deliveries are not sent."""
    session.delete(_owned(session, principal, endpoint_id))
    session.commit()
    return Response(status_code=204)


@router.post(ENDPOINT + "/test", status_code=202, response_model=WebhookTest, responses=v1_errors(404, 409))
def test_endpoint(endpoint_id: EndpointPath, session: SessionDep, principal: Writer) -> WebhookTest:
    """Send a ``webhook.test`` event to this endpoint alone (whatever its event types)."""
    endpoint = _owned(session, principal, endpoint_id)
    if not endpoint.enabled:
        raise ApiError(409, "Webhook endpoint is disabled; enable it first", details={"disabled_reason": endpoint.disabled_reason})
    delivery_id = webhooks.send_test_event(session, endpoint)
    session.commit()
    return WebhookTest(delivery_id=delivery_id)


@router.post(ENDPOINT + "/rotate-secret", response_model=SecretRotated, responses=v1_errors(404))
def rotate_secret(endpoint_id: EndpointPath, body: SecretRotation, session: SessionDep, principal: Writer) -> SecretRotated:
    """A new secret; until ``grace_seconds`` pass, deliveries carry signatures of both the new and the previous one."""
    endpoint = _owned(session, principal, endpoint_id)
    secret = webhooks.rotate_secret(endpoint, body.grace_seconds)
    session.commit()
    return SecretRotated(secret=secret, previous_secret_expires_at=endpoint.previous_secret_expires_at)


def _delivery(message: WebhookMessage, payload: dict, attempts: list[WebhookAttempt]) -> WebhookDelivery:
    return WebhookDelivery(
        id=message.id, endpoint_id=message.endpoint_id, event_type=message.event_type, status=message.status,
        next_attempt_at=message.next_attempt_at, created_at=message.created_at, payload=payload,
        attempts=[DeliveryAttempt.model_validate(a) for a in attempts],
    )


@router.get(ENDPOINT + "/deliveries", response_model=WebhookDeliveryList, responses=v1_errors(404))
def list_deliveries(
    endpoint_id: EndpointPath,
    session: SessionDep,
    principal: Reader,
    page: PageDep,
    status: Annotated[DeliveryStatus | None, Query()] = None,
    event_type: Annotated[EventType | None, Query()] = None,
) -> WebhookDeliveryList:
    """The delivery log, newest first: every event sent to this endpoint, with each attempt."""
    endpoint = _owned(session, principal, endpoint_id)
    query = select(WebhookMessage).where(WebhookMessage.endpoint_id == endpoint.id)
    if status is not None:
        query = query.where(WebhookMessage.status == status)
    if event_type is not None:
        query = query.where(WebhookMessage.event_type == event_type)
    rows, total = fetch_window(session, query, (WebhookMessage.created_at.desc(), WebhookMessage.id.desc()), page.offset, page.page_size)
    ids = [m.id for m in rows]
    attempts: dict[str, list[WebhookAttempt]] = {i: [] for i in ids}
    for a in session.scalars(select(WebhookAttempt).where(WebhookAttempt.message_id.in_(ids)).order_by(WebhookAttempt.id)):
        attempts[a.message_id].append(a)
    payloads = dict(session.execute(select(OutboxEvent.id, OutboxEvent.payload).where(OutboxEvent.id.in_({m.event_id for m in rows}))).all())
    items = [_delivery(m, payloads.get(m.event_id, {}), attempts[m.id]) for m in rows]
    return WebhookDeliveryList(items=items, total=total, page=page.page, page_size=page.page_size)


@router.post("/webhook-messages/{message_id}/redeliver", status_code=202, response_model=Redelivery, responses=v1_errors(404, 409))
def redeliver(message_id: MessagePath, session: SessionDep, principal: Writer) -> Redelivery:
    """Send a delivery again now: same ``webhook-id``, fresh timestamp and signature, the retry schedule anew."""
    message = session.get(WebhookMessage, message_id)
    if message is None or message.organization_id != principal.organization_id:
        raise ApiError(404, "Webhook message not found")
    endpoint = session.get(WebhookEndpoint, message.endpoint_id)
    if not endpoint.enabled:
        raise ApiError(409, "Webhook endpoint is disabled; enable it first", details={"disabled_reason": endpoint.disabled_reason})
    if message.status == "pending" and message.lease_until is not None and message.lease_until > utcnow():
        raise ApiError(409, "This delivery is being attempted now; see its log for the outcome")
    webhooks.redeliver(session, message)
    session.commit()
    return Redelivery(id=message.id, status=message.status, next_attempt_at=message.next_attempt_at)
