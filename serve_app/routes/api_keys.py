"""v1 API keys: create (secret shown once), list, revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from sqlalchemy import select

from cluster.accounts import Principal, create_api_key
from cluster.tables import ApiKey, utcnow
from schemas.auth import KEYS_MANAGE, ApiKeyCreate, ApiKeyCreated, ApiKeyPublic
from schemas.common import Id
from serve_app.deps import SessionDep, require
from serve_app.errors import V1_ROUTE_ERRORS, ApiError, v1_errors

router = APIRouter(prefix="/api/v1/auth/api-keys", tags=["api-keys"], responses=v1_errors(*V1_ROUTE_ERRORS))
Manager = Annotated[Principal, Depends(require(KEYS_MANAGE))]


@router.post("", status_code=201, response_model=ApiKeyCreated)
def create_key(body: ApiKeyCreate, session: SessionDep, principal: Manager) -> ApiKeyCreated:
    """Create an API key for the caller's organization; the secret is in this answer only."""
    if body.expires_at is not None and body.expires_at <= utcnow():
        raise ApiError(400, "expires_at must be in the future")
    if body.scopes and not set(body.scopes) <= principal.scopes:
        raise ApiError(403, "A key cannot grant scopes its creator lacks")
    scopes = body.scopes or sorted(principal.scopes)  # omitted: the creator's scopes, never more
    expires_at = body.expires_at or principal.expires_at  # omitted: the creator's expiry, never later
    if principal.expires_at is not None and expires_at > principal.expires_at:
        latest = principal.expires_at.isoformat()
        raise ApiError(403, f"A key cannot outlive its creator: expires_at must not be later than {latest}")
    row, secret = create_api_key(session, principal.organization_id, body.name, scopes=scopes, expires_at=expires_at)
    session.commit()
    return ApiKeyCreated(**ApiKeyPublic.model_validate(row).model_dump(), key=secret)


@router.get("", response_model=list[ApiKeyPublic])
def list_keys(session: SessionDep, principal: Manager) -> list[ApiKey]:
    """Active keys of the caller's organization (never the secrets)."""
    return list(
        session.scalars(
            select(ApiKey)
            .where(ApiKey.organization_id == principal.organization_id, ApiKey.revoked_at.is_(None))
            .order_by(ApiKey.created_at)
        )
    )


@router.delete("/{key_id}", status_code=204, responses=v1_errors(404))
def revoke_key(key_id: Id, session: SessionDep, principal: Manager) -> Response:
    """Revoke a key; it answers 401 from now on."""
    row = session.get(ApiKey, key_id)
    if row is None or row.organization_id != principal.organization_id or row.revoked_at is not None:
        raise ApiError(404, "API key not found")
    row.revoked_at = utcnow()
    session.commit()
    return Response(status_code=204)
