"""v1 datasets, dataset audio, annotation sets and annotations."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from schemas.common import Id, JsonObject, ORMModel, Text, UTCTimestamp

ProcessingStatus = Literal["pending", "normalizing", "embedding", "ready", "failed"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-]*$"
MAX_SPAN_MS = 2**31 - 1  # ms (~24.8 days), far past any accepted audio (settings.max_audio_seconds)


class ArtifactType(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=NAME_PATTERN)
    description: Text | None = Field(None, max_length=1000)
    color: Text | None = Field(None, max_length=32)


def _check_unique_types(types: list[ArtifactType] | None) -> None:
    names = [t.name for t in types or []]
    if len(names) != len(set(names)):
        raise ValueError("artifact_types names must be unique")


class DatasetCreate(BaseModel):
    name: Text = Field(min_length=1, max_length=200)
    description: Text | None = Field(None, max_length=5000)
    artifact_types: list[ArtifactType] = Field(min_length=1, max_length=64)

    @model_validator(mode="after")
    def _unique_types(self) -> "DatasetCreate":
        _check_unique_types(self.artifact_types)
        return self


class DatasetUpdate(BaseModel):
    name: Text | None = Field(None, min_length=1, max_length=200)
    description: Text | None = Field(None, max_length=5000)
    artifact_types: list[ArtifactType] | None = Field(
        None, min_length=1, max_length=64, description="Types may be added; a type in use cannot be removed."
    )

    @model_validator(mode="after")
    def _unique_types(self) -> "DatasetUpdate":
        _check_unique_types(self.artifact_types)
        return self


class DatasetPublic(ORMModel):
    id: str
    name: str
    description: str | None
    artifact_types: list[ArtifactType]
    created_at: UTCTimestamp
    updated_at: UTCTimestamp


class AudioUploadRequest(BaseModel):
    filename: str = Field(min_length=1, max_length=500, description="Shown without path or control characters.")
    content_type: Text = Field(min_length=1, max_length=100)
    file_size: int = Field(gt=0, description="Bytes; at most 500 MB.")


class AudioUploadUrl(BaseModel):
    audio_id: str
    upload_url: str
    fields: dict[str, str]
    key: str
    expires_in: int


class AudioConfirm(BaseModel):
    audio_id: Id


class AudioConfirmed(BaseModel):
    audio_id: str
    status: ProcessingStatus
    message: str


class AudioFilePublic(ORMModel):
    id: str
    original_filename: str
    duration_ms: int | None
    sample_rate: int | None
    channels: int | None
    processing_status: ProcessingStatus
    error_message: str | None
    created_at: UTCTimestamp


class AnnotationCreate(BaseModel):
    audio_file_id: Id
    artifact_type: Text = Field(min_length=1, max_length=100)
    start_ms: int = Field(ge=0, le=MAX_SPAN_MS)
    end_ms: int = Field(gt=0, le=MAX_SPAN_MS)
    confidence: float = Field(1.0, ge=0.0, le=1.0)
    extra_data: JsonObject = Field(default_factory=dict)

    @model_validator(mode="after")
    def _ordered(self) -> "AnnotationCreate":
        if self.end_ms <= self.start_ms:
            raise ValueError("end_ms must be greater than start_ms")
        return self


class AnnotationUpdate(BaseModel):
    artifact_type: Text | None = Field(None, min_length=1, max_length=100)
    start_ms: int | None = Field(None, ge=0, le=MAX_SPAN_MS)
    end_ms: int | None = Field(None, gt=0, le=MAX_SPAN_MS)
    confidence: float | None = Field(None, ge=0.0, le=1.0)
    extra_data: JsonObject | None = None


class AnnotationBulkCreate(BaseModel):
    annotations: list[AnnotationCreate] = Field(min_length=1, max_length=10_000)


class AnnotationPublic(ORMModel):
    id: str
    annotation_set_id: str
    audio_file_id: str
    artifact_type: str
    start_ms: int
    end_ms: int
    confidence: float
    extra_data: dict[str, Any]
    created_at: UTCTimestamp


class AnnotationBulkCreated(BaseModel):
    created: int
    annotations: list[AnnotationPublic]


class AnnotationSetSummary(BaseModel):
    id: str
    dataset_id: str
    version: int
    status: Literal["draft", "published"]
    total_annotations: int
    total_positive_duration_ms: int
    annotations_by_type: dict[str, int]
    created_at: UTCTimestamp
    published_at: UTCTimestamp | None


class AnnotationSetDetail(AnnotationSetSummary):
    annotations: list[AnnotationPublic]


class AnnotationSetList(BaseModel):
    items: list[AnnotationSetSummary]
    total: int
