"""Tables of the model registry: registered models, their immutable versions, aliases and every alias move.

One registry for both kinds: a version of a ``detector`` names a v1 model (UUID); a version
of an ``stt`` model names a v3 custom model's training run and its checkpoint.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cluster.tables import Base, _created, _id, _org, utcnow


class RegisteredModel(Base):
    """A named line of versions; ``latest_version`` is claimed by a conditional update per new version."""

    __tablename__ = "registered_models"
    __table_args__ = (UniqueConstraint("organization_id", "name", name="uq_registered_models_org_name"),)
    id: Mapped[str] = _id()
    organization_id: Mapped[str] = _org()
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    latest_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ModelVersion(Base):
    """One successful training run, never changed after it is written (only archived)."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("registered_model_id", "version", name="uq_model_versions_model_version"),)
    id: Mapped[str] = _id()
    registered_model_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("registered_models.id", ondelete="CASCADE"), index=True
    )
    organization_id: Mapped[str] = _org()
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    detector_model_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    custom_model_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    training_run: Mapped[int | None] = mapped_column(Integer, nullable=True)
    checkpoint_key: Mapped[str | None] = mapped_column(String(300), nullable=True)
    training_job_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime] = _created()
    archived_at: Mapped[datetime | None] = mapped_column(nullable=True)


class ModelAlias(Base):
    """Where an alias points now; its past is in ``ModelAliasEvent``."""

    __tablename__ = "model_aliases"
    registered_model_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("registered_models.id", ondelete="CASCADE"), primary_key=True
    )
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AliasGate(Base):
    """A promotion gate of one alias: a move must be evaluated on ``evaluation_data`` and not regress ``metric`` by more than ``max_regression``."""

    __tablename__ = "alias_gates"
    registered_model_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("registered_models.id", ondelete="CASCADE"), primary_key=True
    )
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    evaluation_data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metric: Mapped[str] = mapped_column(String(8))  # f1 | wer | cer
    max_regression: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelAliasEvent(Base):
    """One move of an alias (set, rollback or removal: ``version`` None), written with the move itself.

    The history answers which version an alias named at any moment, and is the event a
    notification of the move is built from.
    """

    __tablename__ = "model_alias_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    registered_model_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("registered_models.id", ondelete="CASCADE"), index=True
    )
    organization_id: Mapped[str] = _org()
    alias: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))  # set | rollback | delete
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    previous_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    set_by: Mapped[str | None] = mapped_column(String(36), nullable=True)
    set_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
