"""Reviews of detections: a person's accept, reject or correction of one detection of an inference file."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cluster.tables import Base, _created, _id, _org


class DetectionReview(Base):
    """At most one per detection (the unique key): a new review of it replaces the old, undo deletes it."""

    __tablename__ = "detection_reviews"
    __table_args__ = (UniqueConstraint("inference_file_id", "detection_id", name="uq_detection_reviews_detection"),)
    id: Mapped[str] = _id()
    organization_id: Mapped[str] = _org()
    inference_file_id: Mapped[str] = mapped_column(String(36), ForeignKey("inference_files.id", ondelete="CASCADE"), index=True)
    detection_id: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(10))  # accept | reject | correct
    artifact_type: Mapped[str | None] = mapped_column(String(100), nullable=True)  # corrections only
    start_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    end_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    reviewed_by: Mapped[str | None] = mapped_column(String(36), nullable=True)  # the API key
    reviewed_at: Mapped[datetime] = _created()
