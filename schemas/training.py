"""v1 training jobs and the detector training configuration."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from schemas.augmentation import DetectorAugmentation
from schemas.common import Id, LogEntry, ORMModel, Page, Text, UTCTimestamp

TrainingStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
ACTIVE_TRAINING = ("queued", "running")  # a record in these states may still change


class TrainingConfig(BaseModel):
    """Detector training options; defaults and ranges are the contract's."""

    artifact_types: list[Text] = Field(min_length=1, max_length=64)
    epochs: int = Field(20, ge=1, le=100)
    validation_split: float = Field(0.2, ge=0.1, le=0.5)
    learning_rate: float = Field(0.001, ge=0.0001, le=0.1)
    batch_size: int = Field(32, ge=8, le=256)
    chunk_size_ms: int = Field(500, ge=100, le=10_000, description="Analysis window of the detector (ms).")
    stride_ms: int = Field(250, ge=10, le=10_000, description="Hop between windows (ms); boundaries are frame-precise (10 ms).")
    num_workers: int | None = Field(None, ge=0, le=64, description="Ray Train workers; default from settings.")
    use_gpu: bool | None = Field(None, description="Default: GPUs when the cluster has them.")
    seed: int = 0
    augmentation: DetectorAugmentation = Field(default_factory=DetectorAugmentation)
    registered_model: str | None = Field(
        None,
        max_length=200,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$",
        description="Registry name the trained model becomes the next version of; default: one per dataset (dataset-{dataset_id}).",
    )

    @model_validator(mode="after")
    def _stride_fits(self) -> "TrainingConfig":
        if self.stride_ms > self.chunk_size_ms:
            raise ValueError("stride_ms must not exceed chunk_size_ms")
        if len(set(self.artifact_types)) != len(self.artifact_types):
            raise ValueError("artifact_types must be unique")
        return self


class TrainingJobCreate(BaseModel):
    dataset_id: Id
    annotation_set_id: Id
    config: TrainingConfig


class TrainingJobPublic(ORMModel):
    id: str
    dataset_id: str
    annotation_set_id: str
    config: dict[str, Any]
    status: TrainingStatus
    progress: float
    current_epoch: int
    metrics: dict[str, Any]
    model_id: str | None
    error_message: str | None
    ray_job_id: str | None
    created_at: UTCTimestamp
    started_at: UTCTimestamp | None
    completed_at: UTCTimestamp | None


class TrainingJobLogs(Page[LogEntry]):
    """A page of a training job's log: ``{"job_id", "items": [{timestamp, level, message}], "total", "page", "page_size"}``."""

    job_id: str
