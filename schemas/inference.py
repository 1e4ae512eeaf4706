"""v1 inference jobs, files and detections (detection-inference.md)."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from schemas.common import Id, ORMModel, Text, UTCTimestamp

InferenceJobStatus = Literal["pending", "processing", "completed", "failed", "cancelled"]
FileStatus = Literal["pending", "queued", "processing", "completed", "failed"]


class InferenceConfig(BaseModel):
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="Minimum confidence to report.")
    merge_window_ms: int = Field(200, ge=0, le=5000, description="Merge same-type detections within this gap.")
    min_duration_ms: int = Field(50, ge=0, le=1000, description="Drop detections shorter than this.")


class Detection(BaseModel):
    id: str | None = Field(None, description="Stable within its file (reviews name it); null on files processed before ids were kept.")
    artifact_type: str
    start_ms: int
    end_ms: int
    confidence: float


REFERENCE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}@([0-9]{1,10}|[A-Za-z0-9][A-Za-z0-9_-]{0,63})$")


def _model_reference(value: str) -> str:
    """A model UUID (any spelling, stored canonical) or a registry reference ``name@3`` / ``name@alias``."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        pass
    if not REFERENCE_PATTERN.match(value):
        raise ValueError("must be a model UUID or a registry reference name@version or name@alias")
    return value


ModelReference = Annotated[str, Field(max_length=300), AfterValidator(_model_reference)]


class InferenceJobCreate(BaseModel):
    model_id: ModelReference = Field(
        description="The model UUID, or a registered model's version (name@3) or alias (name@production), resolved now."
    )
    config: InferenceConfig = Field(default_factory=InferenceConfig)


class FileUploadRequest(BaseModel):
    filename: str = Field(min_length=1, max_length=500, description="Shown without path or control characters.")
    file_size_bytes: int = Field(gt=0, le=524_288_000)
    content_type: Text = Field("audio/wav", min_length=1, max_length=100)


class FileUploadUrl(BaseModel):
    file_id: str
    upload_url: str
    upload_fields: dict[str, str]
    s3_key: str
    expires_in: int


class FileConfirm(BaseModel):
    file_id: Id


class InferenceFilePublic(ORMModel):
    id: str
    inference_job_id: str
    original_filename: str
    s3_key: str
    duration_ms: int | None
    status: FileStatus
    error_message: str | None
    detections: list[Detection]
    detection_count: int
    processed_at: UTCTimestamp | None


class InferenceJobPublic(BaseModel):
    id: str
    model_id: str
    model_reference: str | None = Field(None, description="The reference the job was created with, when not the UUID.")
    model_version: str | None = Field(None, description="The registry version the job runs: name@version.")
    config: InferenceConfig
    status: InferenceJobStatus
    total_files: int
    processed_files: int
    failed_files: int
    total_detections: int
    error_message: str | None
    created_at: UTCTimestamp
    started_at: UTCTimestamp | None
    completed_at: UTCTimestamp | None


class InferenceJobDetail(InferenceJobPublic):
    files: list[InferenceFilePublic]


class DownloadUrl(BaseModel):
    url: str
    expires_in: int
    filename: str


class Peaks(BaseModel):
    """Waveform peaks of a processed file over ``[start_ms, end_ms)``, for drawing it without decoding it.

    ``data`` interleaves each pixel's minimum and maximum, ``[min0, max0, min1, max1, ...]``, as
    integers where ``scale`` is full scale (divide by it for wavesurfer.js' -1..1 peaks).
    """

    duration_ms: int
    start_ms: int
    end_ms: int
    pixels_per_second: float
    scale: int
    data: list[int]


class Spectrogram(BaseModel):
    """The detector's log-mel bands over ``[start_ms, end_ms)``, for drawing a window of a processed file.

    ``data`` is base64 of ``frames * bands`` bytes, frame-major, lowest band first; a byte is
    ``log(mel power + 1e-6)`` mapped linearly from ``[log_low, log_high]`` to ``[0, 255]``. Each
    frame covers ``ms_per_frame`` (frames are max-pooled when the window has more than ``max_frames``).
    """

    start_ms: int
    end_ms: int
    ms_per_frame: float
    frames: int
    bands: int
    log_low: float
    log_high: float
    data: str


class DetectionWindow(BaseModel):
    """A file's detections overlapping ``[start_ms, end_ms)``, filtered by type and confidence, in time order."""

    start_ms: int
    end_ms: int
    total: int
    items: list[Detection]
