"""The model registry: registered models, versions, aliases (compare-and-set), their history and rollback.

Fathom's own v1 endpoints (v1 error shape, both auth headers). Like every v1 route they
demand detection:read (reads) or detection:write (changes) before anything else; a
registered model of kind ``stt`` also needs custom_models:read or custom_models:write.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from cluster import registry
from cluster.accounts import Principal
from cluster.registry import RegistryError
from cluster.registry_tables import ModelVersion, RegisteredModel
from schemas.auth import CUSTOM_MODELS_READ, CUSTOM_MODELS_WRITE, DETECTION_READ, DETECTION_WRITE
from schemas.common import Text
from schemas.evaluations import AliasGatePublic, AliasGateSet
from schemas.registry import (
    AliasName,
    RegisteredName,
    AliasEventPublic,
    AliasHistory,
    AliasPublic,
    AliasRollback,
    MAX_VERSION,
    AliasSet,
    ModelKind,
    ModelVersionList,
    ModelVersionPublic,
    RegisteredModelCreate,
    RegisteredModelList,
    RegisteredModelPublic,
    RegisteredModelUpdate,
)
from serve_app.deps import PageDep, SessionDep, check_scope, fetch_window, require
from serve_app.errors import V1_ROUTE_ERRORS, ApiError, v1_errors
from serve_app.routes.evaluations import check_data_owned

router = APIRouter(prefix="/api/v1/registry/models", tags=["registry"], responses=v1_errors(*V1_ROUTE_ERRORS))

READ_SCOPES = {"detector": DETECTION_READ, "stt": CUSTOM_MODELS_READ}
WRITE_SCOPES = {"detector": DETECTION_WRITE, "stt": CUSTOM_MODELS_WRITE}
Reader = Annotated[Principal, Depends(require(DETECTION_READ))]
Writer = Annotated[Principal, Depends(require(DETECTION_WRITE))]
NamePath = Annotated[RegisteredName, Path()]
AliasPath = Annotated[AliasName, Path()]


@contextmanager
def refusals(session: Session) -> Iterator[None]:
    """A refused registry operation changes nothing and answers in the v1 shape."""
    try:
        yield
    except RegistryError as e:
        session.rollback()
        raise ApiError(e.status_code, str(e), details=e.details) from None


def _scope(principal: Principal, kind: str, write: bool) -> None:
    """The kind's own scope (the route already demanded the detection scope)."""
    check_scope(principal, (WRITE_SCOPES if write else READ_SCOPES)[kind])


def _owned(session: Session, principal: Principal, name: str, *, write: bool = False) -> RegisteredModel:
    with refusals(session):
        model = registry.get_registered(session, principal.organization_id, name)
    _scope(principal, model.kind, write)
    return model


def model_answer(session: Session, model: RegisteredModel) -> RegisteredModelPublic:
    return RegisteredModelPublic(
        name=model.name,
        kind=model.kind,
        description=model.description,
        latest_version=model.latest_version,
        aliases=registry.aliases(session, model),
        created_at=model.created_at,
    )


def version_answer(model: RegisteredModel, v: ModelVersion) -> ModelVersionPublic:
    if v.kind == "detector":
        ref = {"model_id": v.detector_model_id}
    else:
        ref = {"model_id": registry.stt_name(v.custom_model_id), "training_run": v.training_run}
    return ModelVersionPublic(
        name=model.name,
        version=v.version,
        kind=v.kind,
        model_ref=ref,
        training_job_id=v.training_job_id,
        data=v.data or {},
        config=v.config or {},
        metrics=v.metrics or {},
        created_at=v.created_at,
        created_by=v.created_by,
        is_archived=v.archived_at is not None,
    )


@router.post("", status_code=201, response_model=RegisteredModelPublic, responses=v1_errors(409))
def create_registered_model(body: RegisteredModelCreate, session: SessionDep, principal: Writer) -> RegisteredModelPublic:
    """Register a name ahead of training (training also creates it on first use)."""
    _scope(principal, body.kind, write=True)
    with refusals(session):
        model = registry.create_registered(session, principal.organization_id, body.name, body.kind, body.description)
    session.commit()
    return model_answer(session, model)


@router.get("", response_model=RegisteredModelList)
def list_registered_models(
    session: SessionDep, principal: Reader, page: PageDep, kind: Annotated[ModelKind | None, Query()] = None
) -> RegisteredModelList:
    """The organization's registered models of the kinds this key may read, by name."""
    kinds = [k for k in (kind,) if k] or list(READ_SCOPES)
    readable = [k for k in kinds if principal.allows(READ_SCOPES[k])]
    query = select(RegisteredModel).where(
        RegisteredModel.organization_id == principal.organization_id, RegisteredModel.kind.in_(readable)
    )
    rows, total = fetch_window(session, query, (RegisteredModel.name,), page.offset, page.page_size)
    return RegisteredModelList(
        items=[model_answer(session, m) for m in rows], total=total, page=page.page, page_size=page.page_size
    )


@router.get("/{name}", response_model=RegisteredModelPublic, responses=v1_errors(404))
def get_registered_model(name: NamePath, session: SessionDep, principal: Reader) -> RegisteredModelPublic:
    return model_answer(session, _owned(session, principal, name))


@router.patch("/{name}", response_model=RegisteredModelPublic, responses=v1_errors(404))
def update_registered_model(
    name: NamePath, body: RegisteredModelUpdate, session: SessionDep, principal: Writer
) -> RegisteredModelPublic:
    model = _owned(session, principal, name, write=True)
    if "description" in body.model_fields_set:
        model.description = body.description
    session.commit()
    return model_answer(session, model)


@router.get("/{name}/versions", response_model=ModelVersionList, responses=v1_errors(404))
def list_versions(name: NamePath, session: SessionDep, principal: Reader, page: PageDep) -> ModelVersionList:
    """Every version, newest first."""
    model = _owned(session, principal, name)
    query = select(ModelVersion).where(ModelVersion.registered_model_id == model.id)
    rows, total = fetch_window(session, query, (ModelVersion.version.desc(),), page.offset, page.page_size)
    return ModelVersionList(items=[version_answer(model, v) for v in rows], total=total, page=page.page, page_size=page.page_size)


@router.get("/{name}/versions/{version}", response_model=ModelVersionPublic, responses=v1_errors(404))
def get_version(
    name: NamePath, version: Annotated[int, Path(ge=1, le=MAX_VERSION)], session: SessionDep, principal: Reader
) -> ModelVersionPublic:
    model = _owned(session, principal, name)
    with refusals(session):
        return version_answer(model, registry.get_version(session, model, version))


@router.put("/{name}/aliases/{alias}", response_model=AliasPublic, responses=v1_errors(404, 409))
def set_alias(name: NamePath, alias: AliasPath, body: AliasSet, session: SessionDep, principal: Writer) -> AliasPublic:
    """Point an alias at a version; with ``expected_version`` only if it still names that version.

    An alias with a promotion gate moves only to a version evaluated on the gate's data that
    does not regress the gate's metric beyond its bound against the current version (409 with
    both figures otherwise), unless ``force`` is true and a reason is given.

    Serving follows at the next request: v3 transcription resolves the alias per request, v1
    inference jobs when they are created.
    """
    model = _owned(session, principal, name, write=True)
    with refusals(session):
        event = registry.set_alias(
            session, model, alias, body.version, reason=body.reason, set_by=principal.key_id,
            expected_version=body.expected_version, check_expected="expected_version" in body.model_fields_set, force=body.force,
        )
    session.commit()
    return AliasPublic(name=model.name, alias=alias, version=event.version, set_at=event.set_at)


@router.delete("/{name}/aliases/{alias}", status_code=204, responses=v1_errors(404))
def delete_alias(
    name: NamePath,
    alias: AliasPath,
    session: SessionDep,
    principal: Writer,
    reason: Annotated[Text, Query(max_length=2000)] = "",
) -> Response:
    model = _owned(session, principal, name, write=True)
    with refusals(session):
        registry.delete_alias(session, model, alias, reason=reason, set_by=principal.key_id)
    session.commit()
    return Response(status_code=204)


@router.get("/{name}/aliases/{alias}", response_model=AliasPublic, responses=v1_errors(404))
def get_alias(
    name: NamePath,
    alias: AliasPath,
    session: SessionDep,
    principal: Reader,
    at: Annotated[datetime | None, Query(description="ISO 8601: which version the alias named at that moment.")] = None,
) -> AliasPublic:
    model = _owned(session, principal, name)
    if at is not None:
        event = registry.alias_at(session, model, alias, _utc(at))
        return AliasPublic(name=model.name, alias=alias, version=event.version if event else None, set_at=event.set_at if event else None)
    current = registry.aliases(session, model).get(alias)
    if current is None:
        raise ApiError(404, f"alias {alias!r} not found")
    history = registry.alias_history(session, model, alias)
    return AliasPublic(name=model.name, alias=alias, version=current, set_at=history[-1].set_at if history else None)


@router.get("/{name}/aliases/{alias}/history", response_model=AliasHistory, responses=v1_errors(404))
def alias_history(name: NamePath, alias: AliasPath, session: SessionDep, principal: Reader) -> AliasHistory:
    """Every move of the alias, oldest first (a removal has ``version`` null)."""
    model = _owned(session, principal, name)
    events = registry.alias_history(session, model, alias)
    if not events:
        raise ApiError(404, f"alias {alias!r} not found")
    return AliasHistory(name=model.name, alias=alias, events=[AliasEventPublic.model_validate(e) for e in events])


@router.post("/{name}/aliases/{alias}/rollback", response_model=AliasPublic, responses=v1_errors(404, 409))
def rollback_alias(
    name: NamePath, alias: AliasPath, body: AliasRollback, session: SessionDep, principal: Writer
) -> AliasPublic:
    """Move the alias back to ``to_version``, by default to the version it named before."""
    model = _owned(session, principal, name, write=True)
    with refusals(session):
        event = registry.rollback_alias(session, model, alias, to_version=body.to_version, reason=body.reason, set_by=principal.key_id)
    session.commit()
    return AliasPublic(name=model.name, alias=alias, version=event.version, set_at=event.set_at)


def _utc(at: datetime) -> datetime:
    """A moment without an offset is UTC."""
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def gate_answer(model: RegisteredModel, gate) -> AliasGatePublic:
    return AliasGatePublic(
        name=model.name, alias=gate.alias, evaluation_data=gate.evaluation_data, metric=gate.metric,
        max_regression=gate.max_regression, updated_at=gate.updated_at,
    )


@router.put("/{name}/aliases/{alias}/gate", response_model=AliasGatePublic, responses=v1_errors(400, 404))
def set_gate(name: NamePath, alias: AliasPath, body: AliasGateSet, session: SessionDep, principal: Writer) -> AliasGatePublic:
    """Give the alias a promotion gate (or replace it): the data moves are evaluated on, the metric and the largest regression allowed."""
    model = _owned(session, principal, name, write=True)
    if body.evaluation_data.kind != model.kind:
        raise ApiError(400, f"a {model.kind} model is gated on {model.kind} evaluation data", details={"kind": model.kind})
    check_data_owned(session, principal, body.evaluation_data)
    with refusals(session):
        gate = registry.set_gate(
            session, model, alias, evaluation_data=body.evaluation_data.canonical(), metric=body.metric, max_regression=body.max_regression
        )
    session.commit()
    return gate_answer(model, gate)


@router.get("/{name}/aliases/{alias}/gate", response_model=AliasGatePublic, responses=v1_errors(404))
def get_gate(name: NamePath, alias: AliasPath, session: SessionDep, principal: Reader) -> AliasGatePublic:
    model = _owned(session, principal, name)
    gate = registry.get_gate(session, model, alias)
    if gate is None:
        raise ApiError(404, f"alias {alias!r} has no promotion gate")
    return gate_answer(model, gate)


@router.delete("/{name}/aliases/{alias}/gate", status_code=204, responses=v1_errors(404))
def delete_gate(name: NamePath, alias: AliasPath, session: SessionDep, principal: Writer) -> Response:
    model = _owned(session, principal, name, write=True)
    with refusals(session):
        registry.delete_gate(session, model, alias)
    session.commit()
    return Response(status_code=204)
