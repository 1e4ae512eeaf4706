"""A reviewed inference file becomes training data: dataset audio plus annotations in a draft set.

Accepted detections become annotations with the detection's type and bounds, corrected ones
with the correction's; rejected ones are not annotations (nothing to learn as positive) but are
recorded as reviewed negatives in the ``extra_data`` of the file's annotations, beside where each
annotation came from. The audio is a copy of the file's blob, queued for preprocessing like an
uploaded file; everything is written in the caller's transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from cluster.blob_keys import dataset_audio_key
from cluster.blob_store import BlobStore
from cluster.review_tables import DetectionReview
from cluster.tables import Annotation, AnnotationSet, AudioFile, InferenceFile, new_id

QUEUED_STATUS = "normalizing"  # what the preprocessing dispatcher claims (as a confirmed upload)


class ExportError(Exception):
    def __init__(self, status_code: int, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.status_code, self.message, self.details = status_code, message, details or {}


def reviewed_spans(file: InferenceFile, reviews: list[DetectionReview]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(positives, negatives): each ``{artifact_type, start_ms, end_ms, detection_id, review_id, action, confidence}``."""
    by_id = {d.get("id"): d for d in file.detections or []}
    positives, negatives = [], []
    for r in sorted(reviews, key=lambda r: (by_id.get(r.detection_id, {}).get("start_ms", 0), r.detection_id)):
        d = by_id.get(r.detection_id)
        if d is None:
            continue
        span = {
            "artifact_type": (r.artifact_type or d["artifact_type"]) if r.action == "correct" else d["artifact_type"],
            "start_ms": r.start_ms if r.action == "correct" and r.start_ms is not None else d["start_ms"],
            "end_ms": r.end_ms if r.action == "correct" and r.end_ms is not None else d["end_ms"],
            "detection_id": r.detection_id, "review_id": r.id, "action": r.action, "confidence": d["confidence"],
        }
        (negatives if r.action == "reject" else positives).append(span)
    return positives, negatives


def already_sent(session, aset: AnnotationSet, file: InferenceFile) -> str | None:
    """The audio id this file became in ``aset`` when it was sent there before."""
    for audio_id, extra in session.execute(
        select(Annotation.audio_file_id, Annotation.extra_data).where(Annotation.annotation_set_id == aset.id)
    ):
        if (extra or {}).get("source", {}).get("inference_file_id") == file.id:
            return audio_id
    return None


def send(session, blobs: BlobStore, *, file: InferenceFile, aset: AnnotationSet, positives: list[dict[str, Any]],
         negatives: list[dict[str, Any]]) -> tuple[AudioFile, list[Annotation]]:
    """Copy the audio into ``aset``'s dataset and add the annotations; the caller commits."""
    audio_id = new_id()
    key = dataset_audio_key(aset.dataset_id, audio_id)
    blobs.put_bytes(key, blobs.get_bytes(file.blob_key))
    audio = AudioFile(
        id=audio_id, organization_id=aset.organization_id, dataset_id=aset.dataset_id,
        original_filename=file.original_filename, content_type=file.content_type, declared_size=file.declared_size,
        blob_key=key, duration_ms=file.duration_ms, processing_status=QUEUED_STATUS,
    )
    session.add(audio)
    session.flush()  # the annotations reference the audio row
    source = {"inference_job_id": file.inference_job_id, "inference_file_id": file.id}
    negative_spans = [{k: n[k] for k in ("artifact_type", "start_ms", "end_ms", "detection_id", "review_id")} for n in negatives]
    rows = [
        Annotation(
            annotation_set_id=aset.id, audio_file_id=audio_id, artifact_type=p["artifact_type"],
            start_ms=p["start_ms"], end_ms=p["end_ms"], confidence=1.0,
            extra_data={"source": {**source, "detection_id": p["detection_id"], "review_id": p["review_id"],
                                   "action": p["action"], "model_confidence": p["confidence"]},
                        "reviewed_negatives": negative_spans},
        )
        for p in positives
    ]
    session.add_all(rows)
    return audio, rows
