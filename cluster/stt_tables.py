"""Metadata tables of v3 custom speech-to-text, on the same ``Base`` as ``cluster.tables``.

Ids are integers (the v3 API speaks integers). SQLite's AUTOINCREMENT keeps an id from
ever being reused after a deletion: ``custom_model_{id}`` keys, blob keys and Ray Job
submission ids are all derived from them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cluster.tables import Base, utcnow

_NO_REUSE = {"sqlite_autoincrement": True}


class CustomModel(Base):
    """Training status 1 (created, no data) -> 2 (ready) -> 3 (running) -> 4 (success) | 5 (failed)."""

    __tablename__ = "custom_models"
    __table_args__ = (Index("ix_custom_models_org_status", "organization_id", "training_status"), _NO_REUSE)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization_id: Mapped[str] = mapped_column(String(36), ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    language: Mapped[str] = mapped_column(String(16))
    base_model: Mapped[str] = mapped_column(String(32))
    training_status: Mapped[int] = mapped_column(Integer, default=1)
    status_message: Mapped[str] = mapped_column(String(500))
    training_progress: Mapped[float] = mapped_column(Float, default=0.0)  # percent, 0-100
    training_runs: Mapped[int] = mapped_column(Integer, default=0)  # POST /run accepted so far
    started_training_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_training_at: Mapped[datetime | None] = mapped_column(nullable=True)
    failed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    training_metrics: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    ray_job_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    run_by: Mapped[str | None] = mapped_column(String(36), nullable=True)  # the API key of the current run
    checkpoint_key: Mapped[str | None] = mapped_column(String(300), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TrainingDataPair(Base):
    """One audio file and its verbatim transcript, for training (``train``) or evaluation (``test``)."""

    __tablename__ = "custom_model_data"
    __table_args__ = (_NO_REUSE,)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(Integer, ForeignKey("custom_models.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(8))
    filename: Mapped[str] = mapped_column(String(500))
    transcript_filename: Mapped[str] = mapped_column(String(500))
    audio_key: Mapped[str] = mapped_column(String(300))
    audio_bytes: Mapped[int] = mapped_column(BigInteger)
    transcript: Mapped[str] = mapped_column(Text)  # normalised (data_pipelines.text): the training target
    original_transcript: Mapped[str] = mapped_column(Text)  # as uploaded
    duration_seconds: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TrainingLogEntry(Base):
    __tablename__ = "custom_model_log"
    __table_args__ = (_NO_REUSE,)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(Integer, ForeignKey("custom_models.id", ondelete="CASCADE"), index=True)
    timestamp: Mapped[datetime] = mapped_column(default=utcnow)
    level: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)


class RateLimitCounter(Base):
    """Requests of one API key in one fixed window of one bucket; incremented by an atomic upsert."""

    __tablename__ = "rate_limit_counters"
    key_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    bucket: Mapped[str] = mapped_column(String(32), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # unix seconds
    count: Mapped[int] = mapped_column(Integer, default=0)
