"""Reviewing an inference file's detections: one review per detection, the newest replacing the old.

Two reviewers of one detection at once both succeed and the later write wins: the insert runs in
a savepoint, and the one that meets the unique key updates the row the other inserted.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cluster.review_tables import DetectionReview
from cluster.tables import InferenceFile, utcnow


class ReviewError(Exception):
    def __init__(self, status_code: int, message: str):
        super().__init__(message)
        self.status_code, self.message = status_code, message


def detection(file: InferenceFile, detection_id: str) -> dict[str, Any]:
    found = next((d for d in file.detections or [] if d.get("id") == detection_id), None)
    if found is None:
        raise ReviewError(404, f"Detection {detection_id!r} not found in this file")
    return found


def review_values(file: InferenceFile, artifact_types: list[str], detection_id: str, action: str,
                  artifact_type: str | None, start_ms: int | None, end_ms: int | None) -> dict[str, Any]:
    """The stored fields: a correction holds the whole corrected detection, accept and reject nothing more."""
    d = detection(file, detection_id)
    if action != "correct":
        return {"artifact_type": None, "start_ms": None, "end_ms": None}
    kind = artifact_type or d["artifact_type"]
    start = d["start_ms"] if start_ms is None else start_ms
    end = d["end_ms"] if end_ms is None else end_ms
    if kind not in artifact_types:
        raise ReviewError(400, f"artifact_type {kind!r} is not one of the model's types {artifact_types}")
    if start >= end:
        raise ReviewError(400, f"the corrected detection must end after it starts ({start}-{end} ms)")
    if file.duration_ms is not None and end > file.duration_ms:
        raise ReviewError(400, f"the corrected detection ends after the file ({file.duration_ms} ms)")
    return {"artifact_type": kind, "start_ms": start, "end_ms": end}


def record(session: Session, file: InferenceFile, detection_id: str, action: str, values: dict[str, Any],
           note: str | None, reviewed_by: str | None) -> DetectionReview:
    fields = {"action": action, "note": note, "reviewed_by": reviewed_by, "reviewed_at": utcnow(), **values}
    existing = _current(session, file.id, detection_id)
    if existing is None:
        try:
            with session.begin_nested():
                row = DetectionReview(organization_id=file.organization_id, inference_file_id=file.id, detection_id=detection_id, **fields)
                session.add(row)
            return row
        except IntegrityError:  # reviewed at the same moment by someone else: update theirs
            existing = _current(session, file.id, detection_id)
    for k, v in fields.items():
        setattr(existing, k, v)
    session.flush()
    return existing


def _current(session: Session, file_id: str, detection_id: str) -> DetectionReview | None:
    return session.scalars(
        select(DetectionReview)
        .where(DetectionReview.inference_file_id == file_id, DetectionReview.detection_id == detection_id)
        .with_for_update()
    ).first()


def reviewed_count(session: Session, file_id: str) -> int:
    return session.scalar(select(func.count()).select_from(DetectionReview).where(DetectionReview.inference_file_id == file_id)) or 0
