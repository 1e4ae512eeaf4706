"""v1 detector models (detection-models.md)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from schemas.common import ORMModel, Text, UTCTimestamp


class ClassMetrics(BaseModel):
    precision: float
    recall: float
    f1_score: float
    support: int


class EvalMetrics(BaseModel):
    """Event-based (sed_eval) metrics on the validation split."""

    precision: float = 0.0
    recall: float = 0.0
    f1_score: float = 0.0
    per_class: dict[str, ClassMetrics] = Field(default_factory=dict)


class DetectorModelPublic(ORMModel):
    id: str
    name: str | None
    description: str | None
    artifact_types: list[str]
    training_job_id: str | None
    eval_metrics: EvalMetrics
    is_active: bool
    is_archived: bool
    created_at: UTCTimestamp
    config: dict[str, Any] = Field(default_factory=dict, description="Training configuration of the model.")


class DetectorModelUpdate(BaseModel):
    name: Text | None = Field(None, max_length=200)
    description: Text | None = Field(None, max_length=10_000)
    is_active: bool | None = None
