"""v1 annotation sets (versioned per dataset, draft -> published) and their annotations.

An annotation names an audio file of the same dataset, one of the dataset's artifact
types, and a span ``[start_ms, end_ms)`` that lies inside the file once its duration is
known. Only draft sets change; a published set is what training jobs read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cluster.accounts import Principal
from cluster.tables import Annotation, AnnotationSet, AudioFile, Dataset, utcnow
from schemas.auth import DETECTION_READ, DETECTION_WRITE
from schemas.datasets import (
    AnnotationBulkCreate,
    AnnotationBulkCreated,
    AnnotationCreate,
    AnnotationPublic,
    AnnotationSetDetail,
    AnnotationSetList,
    AnnotationSetSummary,
    AnnotationUpdate,
)
from schemas.common import Id
from serve_app.deps import SessionDep, require
from serve_app.errors import V1_ROUTE_ERRORS, ApiError, v1_errors
from serve_app.routes.datasets import get_dataset, type_names

router = APIRouter(
    prefix="/api/v1/datasets/{dataset_id}/annotation-sets",
    tags=["annotation sets"],
    responses=v1_errors(*V1_ROUTE_ERRORS, 404),
)
Reader = Annotated[Principal, Depends(require(DETECTION_READ))]
Writer = Annotated[Principal, Depends(require(DETECTION_WRITE))]

VERSION_ATTEMPTS = 10  # SQLite has no row locks: concurrent creations retry on the (dataset_id, version) constraint
ID_CHUNK = 500  # ids per IN (...) query, well under every backend's bound-parameter limit
PUBLISHED_MESSAGE = "Annotation set is published and cannot be changed"


class InvalidAnnotation(ValueError):
    """An annotation that names something outside its dataset or outside its audio file."""


# --- lookups ---------------------------------------------------------------------------------


def get_set(session: Session, principal: Principal, dataset_id: str, set_id: str, *, lock: bool = False) -> AnnotationSet:
    """One annotation set of the caller's dataset, or 404; ``lock`` serializes writers on PostgreSQL."""
    dataset = get_dataset(session, principal, dataset_id)
    stmt = select(AnnotationSet).where(AnnotationSet.id == set_id, AnnotationSet.dataset_id == dataset.id)
    row = session.scalar(stmt.with_for_update() if lock else stmt)
    if row is None:
        raise ApiError(404, "Annotation set not found")
    return row


def get_draft(session: Session, principal: Principal, dataset_id: str, set_id: str) -> tuple[Dataset, AnnotationSet]:
    """The dataset and its draft set, locked for a change; 409 when the set is published."""
    aset = get_set(session, principal, dataset_id, set_id, lock=True)
    if aset.status != "draft":
        raise ApiError(409, PUBLISHED_MESSAGE)
    return session.get(Dataset, aset.dataset_id), aset


def file_durations(session: Session, dataset_id: str, audio_ids: Iterable[str]) -> dict[str, int | None]:
    """``{audio_id: duration_ms or None}`` for those ids that are files of ``dataset_id``."""
    ids = sorted(set(audio_ids))
    found: dict[str, int | None] = {}
    for i in range(0, len(ids), ID_CHUNK):
        rows = session.execute(
            select(AudioFile.id, AudioFile.duration_ms).where(
                AudioFile.dataset_id == dataset_id, AudioFile.id.in_(ids[i : i + ID_CHUNK])
            )
        ).all()
        found.update({audio_id: duration for audio_id, duration in rows})
    return found


def check_annotation(
    values: AnnotationCreate, types: Sequence[str], durations: dict[str, int | None]
) -> None:
    """Raise InvalidAnnotation naming what is wrong; the schema already checked ranges and order."""
    if values.audio_file_id not in durations:
        raise InvalidAnnotation(f"audio_file_id '{values.audio_file_id}' is not an audio file of this dataset")
    if values.artifact_type not in types:
        raise InvalidAnnotation(
            f"artifact_type '{values.artifact_type}' is not a type of this dataset; valid types: {list(types)}"
        )
    duration = durations[values.audio_file_id]
    if duration is not None and values.end_ms > duration:
        raise InvalidAnnotation(
            f"end_ms {values.end_ms} is past the end of audio file '{values.audio_file_id}' (duration_ms {duration})"
        )


# --- summaries -------------------------------------------------------------------------------


def summarize(session: Session, sets: Sequence[AnnotationSet]) -> list[AnnotationSetSummary]:
    """Counts per set and type, and the summed annotated span, in one grouped query."""
    stats: dict[str, dict[str, Any]] = {s.id: {"total": 0, "ms": 0, "by_type": {}} for s in sets}
    if sets:
        rows = session.execute(
            select(
                Annotation.annotation_set_id,
                Annotation.artifact_type,
                func.count(),
                func.coalesce(func.sum(Annotation.end_ms - Annotation.start_ms), 0),
            )
            .where(Annotation.annotation_set_id.in_(list(stats)))
            .group_by(Annotation.annotation_set_id, Annotation.artifact_type)
        ).all()
        for set_id, artifact_type, n, ms in rows:
            entry = stats[set_id]
            entry["total"] += int(n)
            entry["ms"] += int(ms)
            entry["by_type"][artifact_type] = int(n)
    return [
        AnnotationSetSummary(
            id=s.id,
            dataset_id=s.dataset_id,
            version=s.version,
            status=s.status,
            total_annotations=stats[s.id]["total"],
            total_positive_duration_ms=stats[s.id]["ms"],
            annotations_by_type=dict(sorted(stats[s.id]["by_type"].items())),
            created_at=s.created_at,
            published_at=s.published_at,
        )
        for s in sets
    ]


def detail(session: Session, aset: AnnotationSet) -> AnnotationSetDetail:
    annotations = session.scalars(
        select(Annotation)
        .where(Annotation.annotation_set_id == aset.id)
        .order_by(Annotation.audio_file_id, Annotation.start_ms, Annotation.id)
    ).all()
    return AnnotationSetDetail(
        **summarize(session, [aset])[0].model_dump(),
        annotations=[AnnotationPublic.model_validate(a) for a in annotations],
    )


# --- sets ------------------------------------------------------------------------------------


def add_draft_set(session: Session, principal: Principal, dataset_id: str) -> AnnotationSet:
    """A new draft set in the caller's transaction, its version one more than the dataset's latest.

    Each attempt runs in a savepoint: a concurrent creator that took the version (SQLite has no
    row locks) costs a retry, not the caller's transaction.
    """
    for _ in range(VERSION_ATTEMPTS):
        dataset = get_dataset(session, principal, dataset_id, lock=True)  # PostgreSQL: one creator at a time
        latest = session.scalar(select(func.max(AnnotationSet.version)).where(AnnotationSet.dataset_id == dataset.id))
        row = AnnotationSet(
            organization_id=principal.organization_id, dataset_id=dataset.id, version=(latest or 0) + 1, status="draft"
        )
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:
            continue  # another request took this version; read the new latest
        return row
    raise ApiError(409, "Annotation sets of this dataset are being created concurrently; retry")


@router.post("", status_code=201, response_model=AnnotationSetDetail, responses=v1_errors(409))
def create_set(dataset_id: Id, session: SessionDep, principal: Writer) -> AnnotationSetDetail:
    """Start a new draft annotation set; its version is one more than the dataset's latest."""
    row = add_draft_set(session, principal, dataset_id)
    session.commit()
    return detail(session, row)


@router.get("", response_model=AnnotationSetList)
def list_sets(dataset_id: Id, session: SessionDep, principal: Reader) -> AnnotationSetList:
    """The dataset's annotation sets with their counts, newest version first."""
    dataset = get_dataset(session, principal, dataset_id)
    sets = session.scalars(
        select(AnnotationSet).where(AnnotationSet.dataset_id == dataset.id).order_by(AnnotationSet.version.desc())
    ).all()
    return AnnotationSetList(items=summarize(session, sets), total=len(sets))


@router.get("/{set_id}", response_model=AnnotationSetDetail)
def get_one(dataset_id: Id, set_id: Id, session: SessionDep, principal: Reader) -> AnnotationSetDetail:
    """One annotation set with all its annotations (by file, then start time)."""
    return detail(session, get_set(session, principal, dataset_id, set_id))


@router.post("/{set_id}/publish", response_model=AnnotationSetSummary, responses=v1_errors(409))
def publish_set(dataset_id: Id, set_id: Id, session: SessionDep, principal: Writer) -> AnnotationSetSummary:
    """Publish a draft set; from now on it is immutable and can be trained on."""
    aset = get_set(session, principal, dataset_id, set_id, lock=True)
    if aset.status != "draft":
        raise ApiError(409, "Annotation set is already published")
    if session.scalar(select(Annotation.id).where(Annotation.annotation_set_id == aset.id).limit(1)) is None:
        raise ApiError(400, "Annotation set has no annotations; add at least one before publishing")
    won = session.execute(
        update(AnnotationSet)
        .where(AnnotationSet.id == aset.id, AnnotationSet.status == "draft")
        .values(status="published", published_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    if not won:
        raise ApiError(409, "Annotation set is already published")
    session.commit()
    session.refresh(aset)
    return summarize(session, [aset])[0]


# --- annotations -----------------------------------------------------------------------------


@router.post("/{set_id}/annotations", status_code=201, response_model=AnnotationPublic, responses=v1_errors(409))
def create_annotation(
    dataset_id: Id, set_id: Id, body: AnnotationCreate, session: SessionDep, principal: Writer
) -> Annotation:
    """Add one annotation to a draft set."""
    dataset, aset = get_draft(session, principal, dataset_id, set_id)
    try:
        check_annotation(body, type_names(dataset), file_durations(session, dataset.id, [body.audio_file_id]))
    except InvalidAnnotation as e:
        raise ApiError(400, str(e)) from e
    row = Annotation(annotation_set_id=aset.id, **body.model_dump())
    session.add(row)
    session.commit()
    return row


@router.post(
    "/{set_id}/annotations/bulk",
    status_code=201,
    response_model=AnnotationBulkCreated,
    responses=v1_errors(409),
)
def create_annotations_bulk(
    dataset_id: Id, set_id: Id, body: AnnotationBulkCreate, session: SessionDep, principal: Writer
) -> AnnotationBulkCreated:
    """Add many annotations to a draft set, all or nothing (an error names the first bad index)."""
    dataset, aset = get_draft(session, principal, dataset_id, set_id)
    types = type_names(dataset)
    durations = file_durations(session, dataset.id, (a.audio_file_id for a in body.annotations))
    for i, item in enumerate(body.annotations):
        try:
            check_annotation(item, types, durations)
        except InvalidAnnotation as e:
            raise ApiError(400, f"annotations[{i}]: {e}; nothing was saved") from e
    rows = [Annotation(annotation_set_id=aset.id, **a.model_dump()) for a in body.annotations]
    session.add_all(rows)
    session.commit()
    return AnnotationBulkCreated(created=len(rows), annotations=[AnnotationPublic.model_validate(r) for r in rows])


def get_annotation(session: Session, aset: AnnotationSet, annotation_id: str) -> Annotation:
    row = session.scalar(
        select(Annotation).where(Annotation.id == annotation_id, Annotation.annotation_set_id == aset.id)
    )
    if row is None:
        raise ApiError(404, "Annotation not found")
    return row


@router.patch("/{set_id}/annotations/{annotation_id}", response_model=AnnotationPublic, responses=v1_errors(409))
def update_annotation(
    dataset_id: Id, set_id: Id, annotation_id: Id, body: AnnotationUpdate, session: SessionDep, principal: Writer
) -> Annotation:
    """Change an annotation of a draft set; the result is validated as a whole."""
    dataset, aset = get_draft(session, principal, dataset_id, set_id)
    row = get_annotation(session, aset, annotation_id)
    changes = body.model_dump(exclude_unset=True)
    nulls = sorted(name for name, value in changes.items() if value is None)
    if nulls:
        raise ApiError(400, f"{', '.join(nulls)} cannot be null; omit a field to leave it unchanged")
    current = AnnotationPublic.model_validate(row).model_dump(
        include={"audio_file_id", "artifact_type", "start_ms", "end_ms", "confidence", "extra_data"}
    )
    if changes.get("end_ms", current["end_ms"]) <= changes.get("start_ms", current["start_ms"]):
        raise ApiError(400, "end_ms must be greater than start_ms")
    merged = AnnotationCreate(**{**current, **changes})
    try:
        check_annotation(merged, type_names(dataset), file_durations(session, dataset.id, [row.audio_file_id]))
    except InvalidAnnotation as e:
        raise ApiError(400, str(e)) from e
    for name, value in changes.items():
        setattr(row, name, value)
    session.commit()
    return row


@router.delete("/{set_id}/annotations/{annotation_id}", status_code=204, responses=v1_errors(409))
def delete_annotation(
    dataset_id: Id, set_id: Id, annotation_id: Id, session: SessionDep, principal: Writer
) -> Response:
    """Remove an annotation from a draft set."""
    _, aset = get_draft(session, principal, dataset_id, set_id)
    session.delete(get_annotation(session, aset, annotation_id))
    session.commit()
    return Response(status_code=204)
