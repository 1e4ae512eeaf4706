"""Shapes shared by every v1 resource, and the input types every request schema builds on."""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, PlainSerializer

T = TypeVar("T")

MAX_JSON_DEPTH = 32  # nesting levels of free-form JSON: objects and arrays

# ISO 8601 UTC with a trailing Z, as the vendor pages' clients parse it.
UTCTimestamp = Annotated[
    datetime,
    PlainSerializer(lambda d: d.isoformat().replace("+00:00", "Z"), return_type=str, when_used="json"),
]


LogLevel = Literal["debug", "info", "warning", "error"]
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)


def progress_percent(value: float) -> float:
    """A training run's reported progress as stored and answered: within 0-100, two decimals."""
    return round(min(max(float(value), 0.0), 100.0), 2)


def check_text(value: str) -> str:
    """Text both databases store and every answer can carry: PostgreSQL text holds no NUL, and
    UTF-8 (SQLite's driver, PostgreSQL, JSON answers) has no unpaired surrogates, which JSON
    escapes such as "\\ud800" decode to."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters (U+0000)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"holds an unpaired surrogate at position {e.start}, which is not Unicode text") from None
    return value


def check_json(value: Any, depth: int = 1) -> Any:
    """Free-form JSON that round-trips through both databases and back out: its strings (keys
    too) are ``Text``, no NaN/Infinity, no nesting deeper than the answer serializer writes."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("holds NaN or Infinity, which JSON does not allow")
    if isinstance(value, str):
        check_text(value)
    if isinstance(value, (dict, list)):
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"is nested deeper than {MAX_JSON_DEPTH} levels")
        items = [x for kv in value.items() for x in kv] if isinstance(value, dict) else value
        for item in items:
            check_json(item, depth + 1)
    return value


def _canonical_id(value: uuid.UUID) -> str:
    return str(value)


# Every free-text request field that reaches the database or an answer.
Text = Annotated[str, AfterValidator(check_text)]
# A v1 id: any UUID spelling in, the canonical lowercase string out (the form ids are stored in),
# so a malformed id is a 422 at the field and never reaches a query.
Id = Annotated[uuid.UUID, AfterValidator(_canonical_id)]
JsonObject = Annotated[dict[str, Any], AfterValidator(check_json)]


class ORMModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    """v1 list envelope: ``{"items", "total", "page", "page_size"}``."""

    items: list[T]
    total: int
    page: int
    page_size: int


class LogEntry(ORMModel):
    """One entry of a training log (detector jobs and custom STT models), written by the training module."""

    timestamp: UTCTimestamp
    level: LogLevel
    message: str
