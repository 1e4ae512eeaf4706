"""Metadata tables (SQLAlchemy 2). The same models run on SQLite (embedded) and PostgreSQL.

Rule: routes and jobs use these ORM classes through a ``Session``; multi-step state
transitions that several processes race on (claims, leases, job completion) live in
``cluster/`` functions so there is one implementation of each.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    insert,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC on the way out, whatever the backend stores (SQLite drops tzinfo)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


def _id() -> Mapped[str]:
    return mapped_column(String(36), primary_key=True, default=new_id)


def _org() -> Mapped[str]:
    return mapped_column(String(36), ForeignKey("organizations.id", ondelete="CASCADE"), index=True)


def _created() -> Mapped[datetime]:
    return mapped_column(default=utcnow)


class Instance(Base):
    """One row: per-deployment secrets shared by every process (signing of local blob URLs)."""

    __tablename__ = "instance"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    schema_version: Mapped[int] = mapped_column(Integer)
    signing_secret: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = _created()


class OrganizationNumber(Base):
    """A portable sequence (SQLite has none): each INSERT allocates the next organization number."""

    __tablename__ = "organization_numbers"
    __table_args__ = {"sqlite_autoincrement": True}  # never reuse a number, even after deletions
    number: Mapped[int] = mapped_column(Integer, primary_key=True)


def _next_organization_number(context: Any) -> int:
    """Per-row default, so one flush of several organizations still gets distinct numbers."""
    stmt = insert(OrganizationNumber).returning(OrganizationNumber.number)
    return context.connection.execute(stmt).scalar_one()


class Organization(Base):
    """``number`` is the small integer identity v3 answers carry as ``organization_id``."""

    __tablename__ = "organizations"
    id: Mapped[str] = _id()
    number: Mapped[int] = mapped_column(Integer, unique=True, default=_next_organization_number)
    name: Mapped[str] = mapped_column(String(200))
    custom_model_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = _created()


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = _id()
    organization_id: Mapped[str] = _org()
    name: Mapped[str] = mapped_column(String(200))
    key_prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Dataset(Base):
    __tablename__ = "datasets"
    id: Mapped[str] = _id()
    organization_id: Mapped[str] = _org()
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    artifact_types: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AudioFile(Base):
    """Dataset audio: pending -> normalizing -> embedding -> ready | failed."""

    __tablename__ = "audio_files"
    id: Mapped[str] = _id()
    organization_id: Mapped[str] = _org()
    dataset_id: Mapped[str] = mapped_column(String(36), ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    original_filename: Mapped[str] = mapped_column(String(500))
    content_type: Mapped[str] = mapped_column(String(100))
    declared_size: Mapped[int] = mapped_column(BigInteger)
    blob_key: Mapped[str] = mapped_column(String(300))
    features_key: Mapped[str | None] = mapped_column(String(300), nullable=True)
    duration_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    sample_rate: Mapped[int | None] = mapped_column(Integer, nullable=True)
    channels: Mapped[int | None] = mapped_column(Integer, nullable=True)
    processing_status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AnnotationSet(Base):
    __tablename__ = "annotation_sets"
    __table_args__ = (UniqueConstraint("dataset_id", "version"),)
    id: Mapped[str] = _id()
    organization_id: Mapped[str] = _org()
    dataset_id: Mapped[str] = mapped_column(String(36), ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="draft")
    created_at: Mapped[datetime] = _created()
    published_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Annotation(Base):
    __tablename__ = "annotations"
    id: Mapped[str] = _id()
    annotation_set_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("annotation_sets.id", ondelete="CASCADE"), index=True
    )
    audio_file_id: Mapped[str] = mapped_column(String(36), ForeignKey("audio_files.id", ondelete="CASCADE"), index=True)
    artifact_type: Mapped[str] = mapped_column(String(100))
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int] = mapped_column(BigInteger)
    confidence: Mapped[float] = mapped_column(Float, default=1.0)
    extra_data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = _created()


class TrainingJob(Base):
    """queued -> running -> completed | failed | cancelled; the Ray Job does the work."""

    __tablename__ = "training_jobs"
    id: Mapped[str] = _id()
    organization_id: Mapped[str] = _org()
    dataset_id: Mapped[str] = mapped_column(String(36), ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    annotation_set_id: Mapped[str] = mapped_column(String(36), ForeignKey("annotation_sets.id", ondelete="CASCADE"))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    current_epoch: Mapped[int] = mapped_column(Integer, default=0)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    model_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    ray_job_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(36), nullable=True)  # the API key that started it
    created_at: Mapped[datetime] = _created()
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(nullable=True)


class TrainingJobLogEntry(Base):
    """One entry of a detector training job's log (``GET .../logs``), written by the training module.

    Kept with the job (deleted with it), so the log survives restarts and Ray's own log
    rotation; the raw driver output stays with Ray, for operators.
    """

    __tablename__ = "training_job_log_entries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    training_job_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("training_jobs.id", ondelete="CASCADE"), index=True
    )
    timestamp: Mapped[datetime] = mapped_column(default=utcnow)
    level: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)


class DetectorModel(Base):
    __tablename__ = "detector_models"
    id: Mapped[str] = _id()
    organization_id: Mapped[str] = _org()
    training_job_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    artifact_types: Mapped[list[Any]] = mapped_column(default=list)
    eval_metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    checkpoint_key: Mapped[str] = mapped_column(String(300))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    archived_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None


class InferenceJob(Base):
    __tablename__ = "inference_jobs"
    id: Mapped[str] = _id()
    organization_id: Mapped[str] = _org()
    model_id: Mapped[str] = mapped_column(String(36), ForeignKey("detector_models.id"), index=True)
    # What the client named (a UUID, name@alias or name@3) and the registry version it resolved to.
    model_reference: Mapped[str | None] = mapped_column(String(300), nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(300), nullable=True)  # name@version
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = _created()
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(nullable=True)


class InferenceFile(Base):
    """pending (not confirmed) -> queued -> processing (leased) -> completed | failed."""

    __tablename__ = "inference_files"
    __table_args__ = (Index("ix_inference_files_claim", "status", "lease_until"),)
    id: Mapped[str] = _id()
    organization_id: Mapped[str] = _org()
    inference_job_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("inference_jobs.id", ondelete="CASCADE"), index=True
    )
    original_filename: Mapped[str] = mapped_column(String(500))
    content_type: Mapped[str] = mapped_column(String(100))
    declared_size: Mapped[int] = mapped_column(BigInteger)
    blob_key: Mapped[str] = mapped_column(String(300))
    duration_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    detections: Mapped[list[Any]] = mapped_column(default=list)
    detection_count: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column(nullable=True)
    queued_at: Mapped[datetime | None] = mapped_column(nullable=True)
    processed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = _created()
