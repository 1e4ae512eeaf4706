"""v1 detector models (detection-models.md): list, get, rename/activate, archive."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import ColumnElement, String, cast, select

from cluster import registry
from cluster.accounts import Principal
from cluster.tables import DetectorModel, utcnow
from schemas.auth import DETECTION_READ, DETECTION_WRITE
from schemas.common import Id, Page, Text
from schemas.models import DetectorModelPublic, DetectorModelUpdate
from serve_app.deps import PageDep, SessionDep, require
from serve_app.errors import V1_ROUTE_ERRORS, ApiError, v1_errors

router = APIRouter(prefix="/api/v1/models", tags=["models"], responses=v1_errors(*V1_ROUTE_ERRORS))
Reader = Annotated[Principal, Depends(require(DETECTION_READ))]
Writer = Annotated[Principal, Depends(require(DETECTION_WRITE))]


def lists_type(artifact_type: str) -> ColumnElement[bool]:
    """The model's ``artifact_types`` JSON array holds exactly ``artifact_type``.

    Matched on the array's JSON text (the same serializer writes it on SQLite and PostgreSQL),
    with LIKE's wildcards escaped, so the database pages the filtered list.
    """
    element = json.dumps(artifact_type).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return cast(DetectorModel.artifact_types, String).like(f"%{element}%", escape="\\")


def owned_model(session, principal: Principal, model_id: str) -> DetectorModel:
    model = session.get(DetectorModel, model_id)
    if model is None or model.organization_id != principal.organization_id:
        raise ApiError(404, "Model not found")
    return model


@router.get("", response_model=Page[DetectorModelPublic])
def list_models(
    session: SessionDep,
    principal: Reader,
    page: PageDep,
    is_active: Annotated[bool | None, Query()] = None,
    include_archived: Annotated[bool, Query(description="Archived models are hidden unless true.")] = False,
    artifact_type: Annotated[Text | None, Query(max_length=100, description="Only models that detect this type.")] = None,
) -> dict:
    """Models of the organization, newest first."""
    q = select(DetectorModel).where(DetectorModel.organization_id == principal.organization_id)
    if is_active is not None:
        q = q.where(DetectorModel.is_active == is_active)
    if not include_archived:
        q = q.where(DetectorModel.archived_at.is_(None))
    if artifact_type:
        q = q.where(lists_type(artifact_type))
    return page.fetch(session, q, DetectorModel.created_at.desc(), DetectorModel.id)


@router.get("/{model_id}", response_model=DetectorModelPublic, responses=v1_errors(404))
def get_model(model_id: Id, session: SessionDep, principal: Reader) -> DetectorModel:
    """One model with its evaluation metrics (archived models stay readable)."""
    return owned_model(session, principal, model_id)


@router.patch("/{model_id}", response_model=DetectorModelPublic, responses=v1_errors(404, 409))
def update_model(model_id: Id, body: DetectorModelUpdate, session: SessionDep, principal: Writer) -> DetectorModel:
    """Rename, describe, activate or deactivate a model."""
    model = owned_model(session, principal, model_id)
    changes = body.model_dump(exclude_unset=True)
    if model.archived_at is not None and changes.get("is_active"):
        raise ApiError(409, "Model is archived and cannot be reactivated")
    for field, value in changes.items():
        if field == "is_active" and value is None:
            raise ApiError(400, "is_active must be true or false")
        setattr(model, field, value)
    session.commit()
    return model


@router.delete("/{model_id}", status_code=204, responses=v1_errors(404))
def archive_model(model_id: Id, session: SessionDep, principal: Writer) -> Response:
    """Archive (soft-delete) a model: kept for audit, refused for inference."""
    model = owned_model(session, principal, model_id)
    if model.archived_at is None:
        model.archived_at = utcnow()
        model.is_active = False
        registry.archive_versions_of_detector(session, model.id)
        session.commit()
    return Response(status_code=204)
