"""Tables of evaluations (several models scored on one set of files), their per-file rows, and the event outbox.

An evaluation is durable queued work like an inference job: the Dispatcher claims it with a
lease, writes one row per (model, file) as each prediction is scored, and finishes it with a
summary computed from those rows, so the rows always add up to the summary.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cluster.tables import Base, _created, _id, _org, utcnow


class Evaluation(Base):
    """``models``: the resolved references, in request order ([{reference, label, target, ...}])."""

    __tablename__ = "evaluations"
    id: Mapped[str] = _id()
    organization_id: Mapped[str] = _org()
    kind: Mapped[str] = mapped_column(String(16))  # detector | stt
    models: Mapped[list[Any]] = mapped_column(default=list)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)  # as requested: the gate compares it
    items: Mapped[list[Any]] = mapped_column(default=list)  # the files, resolved at creation
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)  # percent of (model, file) rows written
    results: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column(nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime] = _created()
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)


class EvaluationFile(Base):
    """One model's result on one file; written once (the unique key keeps a re-claimed run from doubling it)."""

    __tablename__ = "evaluation_files"
    __table_args__ = (UniqueConstraint("evaluation_id", "model_index", "item_id", name="uq_evaluation_files_row"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    evaluation_id: Mapped[str] = mapped_column(String(36), ForeignKey("evaluations.id", ondelete="CASCADE"), index=True)
    model_index: Mapped[int] = mapped_column(Integer)
    item_id: Mapped[str] = mapped_column(String(36))
    filename: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(20))  # completed | failed
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)  # the headline metric (F1 or WER) for sorting
    errors: Mapped[int] = mapped_column(Integer, default=0)  # FP + FN, or word edits
    row: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboxEvent(Base):
    """Something a subscriber must hear about (``cluster.outbox``)."""

    __tablename__ = "outbox_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization_id: Mapped[str] = _org()
    type: Mapped[str] = mapped_column(String(64))
    subject_id: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
