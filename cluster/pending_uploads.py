"""Uploads announced but never confirmed expire, so lists and totals show only real files.

A pending row (upload URL issued, file never confirmed: refused at confirm, or the URL never
used) expires ``upload_url_expiry_s + upload_grace_s`` after its URL was issued; the grace lets
an upload that started just before the URL expired still be confirmed. Confirm answers 409 after.

- Inference files are removed, row and object: an unconfirmed file never joined its job
  (``total_files`` counts confirmed files) and nothing else refers to it.
- Dataset audio is failed with ``UPLOAD_NEVER_COMPLETED``: annotations may already refer to the
  file (a published set's must not vanish), and a failed file is a state users already handle
  (listed, filtered, named by training's readiness check, deleted).

Each is one conditional statement (still pending, issued before the cutoff): a confirm racing
the sweep either queues the file first or finds it expired, never half of each.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from cluster.db import session_scope
from cluster.tables import AudioFile, InferenceFile, utcnow
from schemas.settings import Settings

UPLOAD_NEVER_COMPLETED = "upload never completed: the file was not confirmed before its upload URL expired"


def upload_cutoff(settings: Settings) -> datetime:
    """Pending uploads whose URL was issued before this instant have expired."""
    return utcnow() - timedelta(seconds=settings.upload_url_expiry_s + settings.upload_grace_s)


def expired_message(settings: Settings) -> str:
    """The 409 a confirm of an expired upload answers."""
    return (
        f"Upload expired: it was not confirmed within {settings.upload_url_expiry_s + settings.upload_grace_s} s "
        "of its upload URL; request a new upload URL and upload the file again"
    )


def expire_inference_uploads(session: Session, cutoff: datetime, file_ids: list[str] | None = None) -> list[str]:
    """Remove expired pending inference files (all, or those of ``file_ids``); returns their blob keys."""
    q = delete(InferenceFile).where(InferenceFile.status == "pending", InferenceFile.created_at < cutoff)
    if file_ids is not None:
        q = q.where(InferenceFile.id.in_(file_ids))
    return list(session.scalars(q.returning(InferenceFile.blob_key).execution_options(synchronize_session=False)))


def expire_dataset_uploads(session: Session, cutoff: datetime, audio_ids: list[str] | None = None) -> list[str]:
    """Fail expired pending dataset audio (all, or those of ``audio_ids``); returns their blob keys."""
    q = update(AudioFile).where(AudioFile.processing_status == "pending", AudioFile.created_at < cutoff)
    if audio_ids is not None:
        q = q.where(AudioFile.id.in_(audio_ids))
    q = q.values(processing_status="failed", error_message=UPLOAD_NEVER_COMPLETED, lease_until=None)
    return list(session.scalars(q.returning(AudioFile.blob_key).execution_options(synchronize_session=False)))


def expire_pending_uploads(url: str, settings: Settings) -> list[str]:
    """The periodic sweep (the dispatcher runs it); returns the blob keys to delete."""
    cutoff = upload_cutoff(settings)
    with session_scope(url) as s:
        return expire_inference_uploads(s, cutoff) + expire_dataset_uploads(s, cutoff)
