"""v1 detector models (detection-models.md): list, get, rename/activate, archive."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import select

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


def public(model: DetectorModel) -> DetectorModelPublic:
    return DetectorModelPublic.model_validate(
        {
            "id": model.id,
            "name": model.name,
            "description": model.description,
            "artifact_types": model.artifact_types,
            "training_job_id": model.training_job_id,
            "eval_metrics": model.eval_metrics or {},
            "is_active": model.is_active,
            "is_archived": model.archived_at is not None,
            "created_at": model.created_at,
            "config": model.config or {},
        }
    )


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
    rows = session.scalars(q.order_by(DetectorModel.created_at.desc())).all()
    if artifact_type:
        rows = [m for m in rows if artifact_type in m.artifact_types]
    items = [public(m) for m in rows[page.offset : page.offset + page.page_size]]
    return {"items": items, "total": len(rows), "page": page.page, "page_size": page.page_size}


@router.get("/{model_id}", response_model=DetectorModelPublic, responses=v1_errors(404))
def get_model(model_id: Id, session: SessionDep, principal: Reader) -> DetectorModelPublic:
    """One model with its evaluation metrics (archived models stay readable)."""
    return public(owned_model(session, principal, model_id))


@router.patch("/{model_id}", response_model=DetectorModelPublic, responses=v1_errors(404, 409))
def update_model(model_id: Id, body: DetectorModelUpdate, session: SessionDep, principal: Writer) -> DetectorModelPublic:
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
    return public(model)


@router.delete("/{model_id}", status_code=204, responses=v1_errors(404))
def archive_model(model_id: Id, session: SessionDep, principal: Writer) -> Response:
    """Archive (soft-delete) a model: kept for audit, refused for inference."""
    model = owned_model(session, principal, model_id)
    if model.archived_at is None:
        model.archived_at = utcnow()
        model.is_active = False
        session.commit()
    return Response(status_code=204)
