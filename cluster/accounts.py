"""Organizations and API keys: keys are random, shown once, stored as SHA-256."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cluster.tables import ApiKey, Organization, utcnow
from schemas.auth import ALL_SCOPES

KEY_PREFIX = "fth_"
PREFIX_CHARS = 12  # shown in listings: "fth_" + 8 characters
LAST_USED_RESOLUTION_S = 60  # last_used_at is written at most once a minute per key


class AuthError(Exception):
    """Why a presented key was refused; ``code`` is one of missing, invalid, expired, revoked."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Principal:
    organization_id: str
    key_id: str
    scopes: frozenset[str]
    expires_at: datetime | None = None  # the key's own expiry: keys it creates expire no later

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_organization(session: Session, name: str, *, custom_model_limit: int | None = None) -> Organization:
    org = Organization(name=name, custom_model_limit=custom_model_limit)
    session.add(org)
    session.flush()
    return org


def create_api_key(
    session: Session,
    organization_id: str,
    name: str,
    *,
    scopes: list[str] | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Returns the row and the secret, which is not stored anywhere."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        organization_id=organization_id,
        name=name,
        key_prefix=secret[:PREFIX_CHARS],
        key_hash=hash_key(secret),
        scopes=sorted(scopes) if scopes else list(ALL_SCOPES),
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row, secret


def authenticate(session: Session, presented: str | None) -> Principal:
    if not presented:
        raise AuthError("missing", "Invalid or missing API key")
    digest = hash_key(presented)
    candidates = session.scalars(select(ApiKey).where(ApiKey.key_prefix == presented[:PREFIX_CHARS])).all()
    row = next((c for c in candidates if hmac.compare_digest(c.key_hash, digest)), None)
    if row is None:
        raise AuthError("invalid", "Invalid or missing API key")
    now = utcnow()
    if row.revoked_at is not None:
        raise AuthError("revoked", "API key revoked")
    if row.expires_at is not None and row.expires_at <= now:
        raise AuthError("expired", "API key expired")
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > LAST_USED_RESOLUTION_S:
        row.last_used_at = now
        session.commit()
    return Principal(
        organization_id=row.organization_id, key_id=row.id, scopes=frozenset(row.scopes), expires_at=row.expires_at
    )
