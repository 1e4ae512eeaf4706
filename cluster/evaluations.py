"""The evaluation state machine: queued → running → completed | failed, every exit a conditional update.

The Dispatcher claims an evaluation with a lease; a claim is identified by the attempt it
incremented, and every write of the run (a file row, progress, the end) is conditional on
that attempt still holding the claim, so a run that lost its lease writes nothing more. A run
left behind by a dead replica is claimed again and goes on from the rows already written.
The end of a run and its outbox event are one transaction.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cluster.db import session_scope
from cluster.evaluation_tables import Evaluation, EvaluationFile
from cluster.outbox import record_event
from cluster.tables import utcnow

TERMINAL = ("completed", "failed")


def _claimable(now):
    return or_(Evaluation.status == "queued", and_(Evaluation.status == "running", Evaluation.lease_until < now))


def claim(url: str, *, lease_s: float, max_attempts: int) -> tuple[str, int] | None:
    """Claim the oldest queued (or abandoned) evaluation: (id, attempt), or None.

    An evaluation claimed ``max_attempts`` times without finishing fails with a message saying so.
    """
    now = utcnow()
    with session_scope(url) as s:
        exhausted = s.scalars(select(Evaluation.id).where(_claimable(now), Evaluation.attempts >= max_attempts)).all()
    for evaluation_id in exhausted:
        fail(url, evaluation_id, None, f"evaluation did not finish after {max_attempts} attempts")
    with session_scope(url) as s:
        ids = s.scalars(
            select(Evaluation.id).where(_claimable(now), Evaluation.attempts < max_attempts).order_by(Evaluation.created_at).limit(5)
        ).all()
        for evaluation_id in ids:
            won = s.execute(
                update(Evaluation)
                .where(Evaluation.id == evaluation_id, _claimable(now), Evaluation.attempts < max_attempts)
                .values(
                    status="running",
                    attempts=Evaluation.attempts + 1,
                    lease_until=now + timedelta(seconds=lease_s),
                    started_at=func.coalesce(Evaluation.started_at, now),
                )
                .execution_options(synchronize_session=False)
            ).rowcount
            if won:
                attempt = s.scalar(select(Evaluation.attempts).where(Evaluation.id == evaluation_id))
                return evaluation_id, int(attempt)
    return None


def _holds(evaluation_id: str, attempt: int | None):
    held = and_(Evaluation.id == evaluation_id, Evaluation.status.in_(("queued", "running")))
    return held if attempt is None else and_(held, Evaluation.attempts == attempt)


def written(url: str, evaluation_id: str) -> set[tuple[int, str]]:
    """(model_index, item_id) of the rows already written."""
    with session_scope(url) as s:
        return {
            (m, i)
            for m, i in s.execute(
                select(EvaluationFile.model_index, EvaluationFile.item_id).where(EvaluationFile.evaluation_id == evaluation_id)
            )
        }


def record_file(
    url: str,
    evaluation_id: str,
    attempt: int,
    *,
    lease_s: float,
    total: int,
    model_index: int,
    item: dict[str, Any],
    row: dict[str, Any] | None = None,
    score: float | None = None,
    errors: int = 0,
    error: str | None = None,
) -> bool:
    """Write one (model, file) row, advance progress by its share of ``total`` rows and renew the lease.

    False when the claim was lost. The row and its progress are one transaction, so a row
    already written (by an earlier run of the claim) is neither doubled nor counted twice.
    """
    with session_scope(url) as s:
        # The first statement is the claim's own write: it takes the row lock before any read.
        held = s.execute(
            update(Evaluation)
            .where(_holds(evaluation_id, attempt))
            .values(lease_until=utcnow() + timedelta(seconds=lease_s), progress=Evaluation.progress + 100.0 / max(1, total))
            .execution_options(synchronize_session=False)
        ).rowcount
        if not held:
            return False
        s.add(
            EvaluationFile(
                evaluation_id=evaluation_id,
                model_index=model_index,
                item_id=str(item["id"]),
                filename=item["filename"],
                status="failed" if error else "completed",
                error_message=error,
                score=score,
                errors=errors,
                row=row or {},
            )
        )
        try:
            s.flush()
        except IntegrityError:  # written by this claim's earlier attempt: already counted
            s.rollback()
    return True


def release(url: str, evaluation_id: str, attempt: int) -> None:
    """Give a claim back at once (a worker failed, not the evaluation): the next claim goes on from the rows written."""
    with session_scope(url) as s:
        s.execute(
            update(Evaluation).where(_holds(evaluation_id, attempt)).values(lease_until=utcnow()).execution_options(synchronize_session=False)
        )


def _end(url: str, evaluation_id: str, attempt: int | None, values: dict[str, Any], event: str) -> bool:
    with session_scope(url) as s:
        won = s.execute(
            update(Evaluation)
            .where(_holds(evaluation_id, attempt))
            .values(finished_at=utcnow(), lease_until=None, **values)
            .execution_options(synchronize_session=False)
        ).rowcount
        if won:
            row = s.get(Evaluation, evaluation_id)
            link = f"/api/v1/evaluations/{evaluation_id}"
            record_event(
                s, row.organization_id, event, evaluation_id,
                ids={"evaluation_id": evaluation_id}, status=row.status, error=row.error_message,
                summary={"kind": row.kind, "models": [m.get("label") for m in row.models], "files": len(row.items)},
                links={"evaluation": link, "files": f"{link}/files"},
            )
    return bool(won)


def finish(url: str, evaluation_id: str, attempt: int, results: dict[str, Any]) -> bool:
    return _end(url, evaluation_id, attempt, {"status": "completed", "progress": 100.0, "results": results}, "evaluation.completed")


def fail(url: str, evaluation_id: str, attempt: int | None, message: str) -> bool:
    """Fail a queued or running evaluation (``attempt`` None: whichever claim holds it)."""
    return _end(url, evaluation_id, attempt, {"status": "failed", "error_message": message[:2000]}, "evaluation.failed")


def file_rows(session: Session, evaluation_id: str) -> list[EvaluationFile]:
    return list(
        session.scalars(
            select(EvaluationFile).where(EvaluationFile.evaluation_id == evaluation_id).order_by(EvaluationFile.model_index, EvaluationFile.id)
        )
    )


def latest_scores(
    session: Session, organization_id: str, data: dict[str, Any], label: str
) -> tuple[str, dict[str, Any]] | None:
    """(evaluation id, that model's summary) of the newest completed evaluation on ``data`` that scored ``label``.

    Reads the 200 newest completed evaluations' ids, data and results only (never their items).
    """
    rows = session.execute(
        select(Evaluation.id, Evaluation.data, Evaluation.models, Evaluation.results)
        .where(Evaluation.organization_id == organization_id, Evaluation.status == "completed")
        .order_by(Evaluation.finished_at.desc())
        .limit(200)
    )
    for evaluation_id, evaluated, models, results in rows:
        if evaluated != data or not results:
            continue
        for model, result in zip(models, results["models"]):
            if model["label"] == label and result.get("summary"):
                return evaluation_id, result["summary"]
    return None
