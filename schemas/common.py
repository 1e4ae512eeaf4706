"""Shapes shared by every v1 resource."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Generic, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, PlainSerializer

T = TypeVar("T")

# ISO 8601 UTC with a trailing Z, as the vendor pages' clients parse it.
UTCTimestamp = Annotated[
    datetime,
    PlainSerializer(lambda d: d.isoformat().replace("+00:00", "Z"), return_type=str, when_used="json"),
]


LogLevel = Literal["debug", "info", "warning", "error"]
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)


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
