"""API keys and scopes (both APIs)."""

from __future__ import annotations

from datetime import datetime, timezone

from pydantic import BaseModel, Field, field_validator

from schemas.common import ORMModel, Text, UTCTimestamp

DETECTION_READ = "detection:read"
DETECTION_WRITE = "detection:write"
KEYS_MANAGE = "api_keys:manage"
CUSTOM_MODELS_READ = "custom_models:read"
CUSTOM_MODELS_WRITE = "custom_models:write"
STT = "stt"
ALL_SCOPES = (DETECTION_READ, DETECTION_WRITE, KEYS_MANAGE, CUSTOM_MODELS_READ, CUSTOM_MODELS_WRITE, STT)


class ApiKeyCreate(BaseModel):
    name: Text = Field(min_length=1, max_length=200)
    scopes: list[str] | None = Field(
        None, description="Omitted or empty: the creating key's scopes (every scope for a full key)."
    )
    expires_at: UTCTimestamp | None = Field(
        None,
        description="ISO 8601; a time without an offset is UTC. Omitted: the creating key's expiry; "
        "never later than it (403).",
    )

    @field_validator("expires_at")
    @classmethod
    def _in_utc(cls, v: datetime | None) -> datetime | None:
        if v is None:
            return v
        if v.tzinfo is None:
            return v.replace(tzinfo=timezone.utc)
        try:
            return v.astimezone(timezone.utc)
        except OverflowError:
            raise ValueError("expires_at is outside the supported date range") from None

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        unknown = sorted(set(v) - set(ALL_SCOPES))
        if unknown:
            raise ValueError(f"unknown scopes {unknown}; valid scopes are {list(ALL_SCOPES)}")
        return sorted(set(v))


class ApiKeyPublic(ORMModel):
    id: str
    name: str
    key_prefix: str
    scopes: list[str]
    created_at: UTCTimestamp
    expires_at: UTCTimestamp | None
    last_used_at: UTCTimestamp | None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="The secret; shown only in this answer.")
