"""Shapes shared by every v1 resource."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, PlainSerializer

T = TypeVar("T")

# ISO 8601 UTC with a trailing Z, as the vendor pages' clients parse it.
UTCTimestamp = Annotated[
    datetime,
    PlainSerializer(lambda d: d.isoformat().replace("+00:00", "Z"), return_type=str, when_used="json"),
]


class ORMModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    """v1 list envelope: ``{"items", "total", "page", "page_size"}``."""

    items: list[T]
    total: int
    page: int
    page_size: int
