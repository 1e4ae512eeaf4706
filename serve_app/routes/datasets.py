"""v1 datasets: named collections of audio plus the artifact types annotated in them."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from cluster.accounts import Principal
from cluster.blob_keys import dataset_prefix, view_prefixes
from cluster.tables import Annotation, AnnotationSet, AudioFile, Dataset, TrainingJob
from schemas.auth import DETECTION_READ, DETECTION_WRITE
from schemas.common import Id, Page, Text
from schemas.datasets import DatasetCreate, DatasetPublic, DatasetUpdate
from schemas.training import ACTIVE_TRAINING
from serve_app.deps import BlobsDep, PageDep, SessionDep, require
from serve_app.errors import V1_ROUTE_ERRORS, ApiError, v1_errors

log = logging.getLogger("fathom.datasets")

router = APIRouter(prefix="/api/v1/datasets", tags=["datasets"], responses=v1_errors(*V1_ROUTE_ERRORS))
Reader = Annotated[Principal, Depends(require(DETECTION_READ))]
Writer = Annotated[Principal, Depends(require(DETECTION_WRITE))]

NOT_NULL_FIELDS = ("name", "artifact_types")


def get_dataset(session: Session, principal: Principal, dataset_id: str, *, lock: bool = False) -> Dataset:
    """The caller's dataset, or 404: another organization's ids look exactly like unknown ones."""
    stmt = select(Dataset).where(Dataset.id == dataset_id, Dataset.organization_id == principal.organization_id)
    row = session.scalar(stmt.with_for_update() if lock else stmt)
    if row is None:
        raise ApiError(404, "Dataset not found")
    return row


def type_names(dataset: Dataset) -> list[str]:
    return [t["name"] for t in dataset.artifact_types]


@router.post("", status_code=201, response_model=DatasetPublic)
def create_dataset(body: DatasetCreate, session: SessionDep, principal: Writer) -> Dataset:
    """Create a dataset with the artifact types its annotations may use."""
    row = Dataset(
        organization_id=principal.organization_id,
        name=body.name,
        description=body.description,
        artifact_types=[t.model_dump() for t in body.artifact_types],
    )
    session.add(row)
    session.commit()
    return row


@router.get("", response_model=Page[DatasetPublic])
def list_datasets(
    session: SessionDep,
    principal: Reader,
    page: PageDep,
    q: Annotated[Text | None, Query(max_length=200, description="Case-insensitive substring of the name.")] = None,
) -> dict:
    """The organization's datasets, newest first."""
    where = [Dataset.organization_id == principal.organization_id]
    if q:
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append(Dataset.name.ilike(f"%{escaped}%", escape="\\"))
    return page.fetch(session, select(Dataset).where(*where), Dataset.created_at.desc(), Dataset.id)


@router.get("/{dataset_id}", response_model=DatasetPublic, responses=v1_errors(404))
def get_one(dataset_id: Id, session: SessionDep, principal: Reader) -> Dataset:
    """One dataset."""
    return get_dataset(session, principal, dataset_id)


@router.patch("/{dataset_id}", response_model=DatasetPublic, responses=v1_errors(404, 409))
def update_dataset(dataset_id: Id, body: DatasetUpdate, session: SessionDep, principal: Writer) -> Dataset:
    """Rename, describe, or change artifact types (a type used by annotations cannot be removed)."""
    changes = body.model_dump(exclude_unset=True)
    nulls = [name for name in NOT_NULL_FIELDS if name in changes and changes[name] is None]
    if nulls:
        raise ApiError(400, f"{', '.join(nulls)} cannot be null; omit a field to leave it unchanged")
    row = get_dataset(session, principal, dataset_id, lock=True)
    if "artifact_types" in changes:
        new_names = [t["name"] for t in changes["artifact_types"]]
        removed = sorted(set(type_names(row)) - set(new_names))
        if removed:
            in_use = session.scalars(
                select(Annotation.artifact_type)
                .join(AnnotationSet, Annotation.annotation_set_id == AnnotationSet.id)
                .where(AnnotationSet.dataset_id == row.id, Annotation.artifact_type.in_(removed))
                .distinct()
            ).all()
            if in_use:
                raise ApiError(
                    409, f"artifact types {sorted(in_use)} are used by annotations of this dataset and cannot be removed"
                )
    for name, value in changes.items():
        setattr(row, name, value)
    session.commit()
    return row


@router.delete("/{dataset_id}", status_code=204, responses=v1_errors(404, 409))
def delete_dataset(dataset_id: Id, session: SessionDep, blobs: BlobsDep, principal: Writer) -> Response:
    """Delete a dataset with its audio, features, annotation sets and stored objects."""
    row = get_dataset(session, principal, dataset_id, lock=True)
    busy = session.scalar(
        select(TrainingJob.id).where(TrainingJob.dataset_id == row.id, TrainingJob.status.in_(ACTIVE_TRAINING)).limit(1)
    )
    if busy is not None:
        raise ApiError(409, f"Dataset is used by training job {busy}, which is queued or running; cancel it first")
    prefix = dataset_prefix(row.id)
    stray_features = session.scalars(
        select(AudioFile.features_key).where(AudioFile.dataset_id == row.id, AudioFile.features_key.is_not(None))
    ).all()
    # Rows first: a failure after this commit leaves unreferenced objects, never rows pointing at nothing.
    session.delete(row)  # annotation sets, annotations, audio rows and training jobs go by ON DELETE CASCADE
    session.commit()
    removed = blobs.delete_prefix(prefix)
    removed += sum(blobs.delete_prefix(view_prefix) for view_prefix in view_prefixes(prefix))
    for key in stray_features:
        if not key.startswith(prefix):
            blobs.delete(key)
    log.info("dataset %s deleted with %d stored objects", row.id, removed)
    return Response(status_code=204)
