"""The model registry (Fathom's own v1 endpoints): registered models, versions, aliases and their history."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field

from schemas.common import ORMModel, Page, Text, UTCTimestamp

ModelKind = Literal["detector", "stt"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"
ALIAS_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"  # and not all digits: name@3 is a version
NAME_FIELD = Field(
    min_length=1,
    max_length=200,
    pattern=NAME_PATTERN,
    description="Letters, digits, '.', '_' and '-'; referenced as name@3 or name@alias.",
)


def is_alias(value: str) -> bool:
    return bool(re.match(ALIAS_PATTERN, value)) and not value.isdigit()


def _alias(value: str) -> str:
    if not is_alias(value):
        raise ValueError("an alias is 1-64 letters, digits, '_' or '-', starts with a letter or digit and is not all digits")
    return value


# Path parameters are checked before any lookup: a name or alias that cannot exist is a 422 at the field.
RegisteredName = Annotated[str, Field(max_length=200, pattern=NAME_PATTERN)]
AliasName = Annotated[str, Field(max_length=64), AfterValidator(_alias)]


class RegisteredModelCreate(BaseModel):
    name: str = NAME_FIELD
    kind: ModelKind
    description: Text | None = Field(None, max_length=10_000)


class RegisteredModelUpdate(BaseModel):
    description: Text | None = Field(None, max_length=10_000)


class RegisteredModelPublic(BaseModel):
    name: str
    kind: ModelKind
    description: str | None
    latest_version: int = Field(description="0 until a training run succeeds.")
    aliases: dict[str, int] = Field(description="alias -> version")
    created_at: UTCTimestamp


class RegisteredModelList(Page[RegisteredModelPublic]):
    pass


class ModelVersionPublic(BaseModel):
    name: str
    version: int
    kind: ModelKind
    model_ref: dict[str, Any] = Field(
        description="detector: {model_id} (the v1 model UUID); stt: {model_id: custom_model_{id}, training_run}."
    )
    training_job_id: str | None
    data: dict[str, Any] = Field(description="What it was trained on: dataset and annotation set, or the data pairs.")
    config: dict[str, Any]
    metrics: dict[str, Any]
    created_at: UTCTimestamp
    created_by: str | None = Field(description="Id of the API key that started the run.")
    is_archived: bool


class ModelVersionList(Page[ModelVersionPublic]):
    pass


MAX_VERSION = 2**31 - 1  # the database's INTEGER


class AliasSet(BaseModel):
    version: int = Field(ge=1, le=MAX_VERSION)
    reason: Text = Field("", max_length=2000)
    expected_version: int | None = Field(
        None, ge=1, le=MAX_VERSION, description="Compare-and-set: the version the alias names now (null: it does not exist yet); a stale value answers 409."
    )
    force: bool = Field(False, description="Move past the alias's promotion gate; needs a reason, and the history marks the move forced.")


class AliasRollback(BaseModel):
    to_version: int | None = Field(None, ge=1, le=MAX_VERSION, description="Default: the version the alias named before its current one.")
    reason: Text = Field("", max_length=2000)


class AliasPublic(BaseModel):
    name: str
    alias: str
    version: int | None = Field(description="null when ?at= names a moment the alias did not exist.")
    set_at: UTCTimestamp | None


class AliasEventPublic(ORMModel):
    action: Literal["set", "rollback", "delete"]
    version: int | None
    previous_version: int | None
    set_at: UTCTimestamp
    set_by: str | None
    reason: str
    forced: bool


class AliasHistory(BaseModel):
    name: str
    alias: str
    events: list[AliasEventPublic]
