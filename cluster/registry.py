"""The model registry: versions written with the training run that made them, aliases moved by compare-and-set.

Every successful training run (a v1 detector job, a v3 custom model's ``/run``) adds an
immutable version in the same transaction that completes the run. An alias names one
version; each move writes a ``ModelAliasEvent`` in the same transaction, so the history
(and ``?at=``) never disagrees with the alias. References name a version everywhere a model
is named: ``name@3``, ``name@production``, or a bare name.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cluster.db import session_scope
from cluster.evaluations import latest_scores
from cluster.outbox import record_event
from cluster.stt_tables import CustomModel
from cluster.registry_tables import AliasGate, ModelAlias, ModelAliasEvent, ModelVersion, RegisteredModel
from cluster.tables import utcnow
from schemas.registry import ALIAS_PATTERN, NAME_PATTERN, is_alias
from schemas.stt import MODEL_KEY_PREFIX

KINDS = ("detector", "stt")
PRODUCTION = "production"
_NAME = re.compile(NAME_PATTERN)


class RegistryError(Exception):
    """A refused registry operation; ``status_code`` is the v1 answer, ``details`` goes in the error body."""

    def __init__(self, status_code: int, message: str, **details: Any):
        super().__init__(message)
        self.status_code = status_code
        self.details = details


class NameTaken(RegistryError):
    """The organization already has a registered model of that name (perhaps made a moment ago)."""

    def __init__(self, name: str):
        super().__init__(409, f"registered model {name!r} already exists", name=name)


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise RegistryError(400, f"registered model name {name!r} must match {NAME_PATTERN}", field="name")
    return name


def check_alias(alias: str) -> str:
    if not is_alias(alias):
        raise RegistryError(400, f"alias {alias!r} must match {ALIAS_PATTERN} and not be all digits", field="alias")
    return alias


def default_detector_name(dataset_id: str) -> str:
    """A v1 training job without ``registered_model`` adds to one registered model per dataset."""
    return f"dataset-{dataset_id}"


def stt_name(custom_model_id: int) -> str:
    """A v3 custom model is the registered model of kind ``stt`` named by its key."""
    return f"custom_model_{custom_model_id}"


# --- registered models and versions ------------------------------------------------------------


def find(session: Session, organization_id: str, name: str) -> RegisteredModel | None:
    return session.scalar(
        select(RegisteredModel).where(RegisteredModel.organization_id == organization_id, RegisteredModel.name == name)
    )


def get_registered(session: Session, organization_id: str, name: str) -> RegisteredModel:
    model = find(session, organization_id, name)
    if model is None:
        raise RegistryError(404, "Registered model not found", name=name)
    return model


def check_kind(session: Session, organization_id: str, name: str, kind: str) -> None:
    """Refuse (409) a name that already holds the other kind; a missing name is fine."""
    check_name(name)
    model = find(session, organization_id, name)
    if model is not None and model.kind != kind:
        raise RegistryError(409, f"registered model {name!r} holds {model.kind} models, not {kind}", name=name, kind=model.kind)


def create_registered(session: Session, organization_id: str, name: str, kind: str, description: str | None = None) -> RegisteredModel:
    """Add a registered model (flushed); 409 when the name is taken, also by a concurrent creator."""
    check_name(name)
    if kind not in KINDS:
        raise RegistryError(400, f"kind must be one of {list(KINDS)}", field="kind")
    if find(session, organization_id, name) is not None:
        raise NameTaken(name)
    model = RegisteredModel(organization_id=organization_id, name=name, kind=kind, description=description, latest_version=0)
    session.add(model)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise NameTaken(name) from None
    return model


def ensure_registered(url: str, organization_id: str, name: str, kind: str) -> str:
    """The id of the organization's registered model ``name``, created (and committed) when missing.

    Run before the transaction that completes a training run: an empty registered model is
    harmless, and a concurrent creator of the same name is found on the retry.
    """
    for _ in range(2):
        try:
            with session_scope(url) as s:
                check_kind(s, organization_id, name, kind)
                model = find(s, organization_id, name) or create_registered(s, organization_id, name, kind)
                return model.id
        except NameTaken:
            continue  # a concurrent creator won: the next try finds its row
    raise RuntimeError(f"registered model {name!r} could not be created")


def add_version(session: Session, registered_model_id: str, **fields: Any) -> ModelVersion:
    """Append the next version inside the transaction that completes the training run.

    The increment of ``latest_version`` is a write that locks the registered model's row
    (PostgreSQL) or the database (SQLite) until commit, so concurrent runs get distinct
    numbers, and a run is completed exactly when its version exists.
    """
    session.execute(
        update(RegisteredModel)
        .where(RegisteredModel.id == registered_model_id)
        .values(latest_version=RegisteredModel.latest_version + 1, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    registered = session.get(RegisteredModel, registered_model_id, populate_existing=True)
    version = ModelVersion(
        registered_model_id=registered.id,
        organization_id=registered.organization_id,
        version=registered.latest_version,
        kind=registered.kind,
        **fields,
    )
    session.add(version)
    session.flush()
    return version


def get_version(session: Session, registered: RegisteredModel, version: int) -> ModelVersion:
    row = session.scalar(
        select(ModelVersion).where(ModelVersion.registered_model_id == registered.id, ModelVersion.version == version)
    )
    if row is None:
        raise RegistryError(404, f"Version {version} of {registered.name} not found", name=registered.name, version=version)
    return row


def aliases(session: Session, registered: RegisteredModel) -> dict[str, int]:
    rows = session.execute(
        select(ModelAlias.alias, ModelAlias.version).where(ModelAlias.registered_model_id == registered.id).order_by(ModelAlias.alias)
    ).all()
    return {a: v for a, v in rows}


def archive_versions_of_detector(session: Session, detector_model_id: str) -> None:
    """Archiving a v1 model archives its version (the models page's rules apply per version)."""
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.detector_model_id == detector_model_id, ModelVersion.archived_at.is_(None))
        .values(archived_at=utcnow())
        .execution_options(synchronize_session=False)
    )


# --- aliases ------------------------------------------------------------------------------------


def lock(session: Session, registered: RegisteredModel) -> None:
    """The first write of every alias move: serializes moves of one registered model.

    PostgreSQL locks the row until commit; SQLite takes its write lock (reads before it run
    outside the transaction), so every check after it sees settled aliases.
    """
    session.execute(
        update(RegisteredModel)
        .where(RegisteredModel.id == registered.id)
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def _current(session: Session, registered: RegisteredModel, alias: str) -> int | None:
    return session.scalar(
        select(ModelAlias.version).where(ModelAlias.registered_model_id == registered.id, ModelAlias.alias == alias)
    )


def _record(session: Session, registered: RegisteredModel, alias: str, action: str, version: int | None,
            previous: int | None, reason: str, set_by: str | None, forced: bool = False) -> ModelAliasEvent:
    event = ModelAliasEvent(
        registered_model_id=registered.id,
        organization_id=registered.organization_id,
        alias=alias,
        action=action,
        version=version,
        previous_version=previous,
        reason=reason,
        forced=forced,
        set_by=set_by,
        set_at=utcnow(),
    )
    session.add(event)
    session.flush()
    base = f"/api/v1/registry/models/{quote(registered.name, safe='')}"
    record_event(
        session, registered.organization_id, "model.alias_changed", f"{registered.name}@{alias}",
        ids={"registered_model": registered.name, "kind": registered.kind, "alias": alias, "version": version,
             "previous_version": previous, "alias_event_id": event.id},
        status=action, summary={"reason": reason, "forced": forced, "set_by": set_by},
        links={"alias": f"{base}/aliases/{alias}", "history": f"{base}/aliases/{alias}/history"},
    )
    return event


def _move(session: Session, registered: RegisteredModel, alias: str, version: int, expected: int | None, check_expected: bool) -> int | None:
    """Point ``alias`` at ``version`` if it still names ``expected`` (when checked); returns the previous version."""
    previous = _current(session, registered, alias)
    if check_expected and previous != expected:
        raise RegistryError(
            409, f"alias {alias!r} names version {previous}, not the expected {expected}",
            alias=alias, current_version=previous, expected_version=expected,
        )
    if previous is None:
        session.add(ModelAlias(registered_model_id=registered.id, alias=alias, version=version, updated_at=utcnow()))
    else:
        session.execute(
            update(ModelAlias)
            .where(ModelAlias.registered_model_id == registered.id, ModelAlias.alias == alias)
            .values(version=version, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    return previous


def set_alias(
    session: Session,
    registered: RegisteredModel,
    alias: str,
    version: int,
    *,
    reason: str,
    set_by: str | None,
    expected_version: int | None = None,
    check_expected: bool = False,
    action: str = "set",
    force: bool = False,
) -> ModelAliasEvent:
    """Move (or create) an alias; compare-and-set against ``expected_version`` when ``check_expected``.

    A move (not a rollback) must pass the alias's promotion gate unless ``force`` with a reason.
    """
    check_alias(alias)
    lock(session, registered)
    target = get_version(session, registered, version)
    if target.archived_at is not None:
        raise RegistryError(409, f"version {version} is archived; an alias cannot name it", version=version)
    gate = session.get(AliasGate, (registered.id, alias))
    forced = False
    if gate is not None and action == "set":
        if force:
            if not reason.strip():
                raise RegistryError(400, "a forced move past the promotion gate needs a reason", alias=alias)
            forced = True
        else:
            current = _current(session, registered, alias)
            if not (check_expected and current != expected_version):  # a stale compare-and-set answers as such
                check_gate(session, registered, gate, version, current)
    previous = _move(session, registered, alias, version, expected_version, check_expected)
    return _record(session, registered, alias, action, version, previous, reason, set_by, forced)


# --- promotion gates --------------------------------------------------------------------------------

GATE_METRICS = {"f1": ("f1_score", +1), "wer": ("word_error_rate", -1), "cer": ("character_error_rate", -1)}
KIND_METRICS = {"detector": ("f1",), "stt": ("wer", "cer")}


def get_gate(session: Session, registered: RegisteredModel, alias: str) -> AliasGate | None:
    return session.get(AliasGate, (registered.id, alias))


def set_gate(
    session: Session, registered: RegisteredModel, alias: str, *, evaluation_data: dict[str, Any], metric: str, max_regression: float
) -> AliasGate:
    """Create or replace an alias's gate; the metric must be one of the model's kind."""
    check_alias(alias)
    if metric not in KIND_METRICS[registered.kind]:
        raise RegistryError(400, f"a {registered.kind} model is gated on {' or '.join(KIND_METRICS[registered.kind])}", metric=metric)
    lock(session, registered)
    gate = session.get(AliasGate, (registered.id, alias))
    if gate is None:
        gate = AliasGate(registered_model_id=registered.id, alias=alias)
        session.add(gate)
    gate.evaluation_data, gate.metric, gate.max_regression, gate.updated_at = evaluation_data, metric, float(max_regression), utcnow()
    session.flush()
    return gate


def delete_gate(session: Session, registered: RegisteredModel, alias: str) -> None:
    lock(session, registered)
    gate = session.get(AliasGate, (registered.id, alias))
    if gate is None:
        raise RegistryError(404, f"alias {alias!r} has no promotion gate", alias=alias)
    session.delete(gate)


def check_gate(session: Session, registered: RegisteredModel, gate: AliasGate, version: int, current: int | None) -> None:
    """Refuse (409, with both figures) a move to a version not evaluated on the gate's data, or one that regresses too far.

    Figures come from the newest completed evaluation on exactly the gate's data that scored
    each version (``name@N``); the current version must have been evaluated too.
    """
    key, sign = GATE_METRICS[gate.metric]
    org = registered.organization_id
    details: dict[str, Any] = {"alias": gate.alias, "metric": gate.metric, "max_regression": gate.max_regression, "version": version}
    new = latest_scores(session, org, gate.evaluation_data, f"{registered.name}@{version}")
    if new is None:
        raise RegistryError(409, f"version {version} has not been evaluated on the gate's data", **details)
    details.update(value=new[1][key], evaluation_id=new[0])
    if current is None or current == version:
        return
    old = latest_scores(session, org, gate.evaluation_data, f"{registered.name}@{current}")
    details["current_version"] = current
    if old is None:
        raise RegistryError(409, f"the current version {current} has not been evaluated on the gate's data", **details)
    regression = sign * (old[1][key] - new[1][key])
    details.update(current_value=old[1][key], current_evaluation_id=old[0], regression=round(regression, 4))
    if regression > gate.max_regression:
        raise RegistryError(
            409,
            f"version {version} regresses {gate.metric} by {regression:.4g} against version {current} "
            f"({new[1][key]} vs {old[1][key]}); the gate allows {gate.max_regression:g}",
            **details,
        )


def delete_alias(session: Session, registered: RegisteredModel, alias: str, *, reason: str, set_by: str | None) -> ModelAliasEvent:
    lock(session, registered)
    previous = _current(session, registered, alias)
    if previous is None:
        raise RegistryError(404, f"alias {alias!r} not found", alias=alias)
    session.execute(
        delete(ModelAlias).where(ModelAlias.registered_model_id == registered.id, ModelAlias.alias == alias)
    )
    return _record(session, registered, alias, "delete", None, previous, reason, set_by)


def rollback_alias(
    session: Session, registered: RegisteredModel, alias: str, *, to_version: int | None, reason: str, set_by: str | None
) -> ModelAliasEvent:
    """Move the alias back: to ``to_version``, or to the version it named before its current one."""
    lock(session, registered)
    current = _current(session, registered, alias)
    if current is None:
        raise RegistryError(404, f"alias {alias!r} not found", alias=alias)
    if to_version is None:
        to_version = _previous_target(session, registered, alias, current)
        if to_version is None:
            raise RegistryError(409, f"alias {alias!r} has named no other version to roll back to", alias=alias)
    return set_alias(
        session, registered, alias, to_version, reason=reason, set_by=set_by,
        expected_version=current, check_expected=True, action="rollback",
    )


def _previous_target(session: Session, registered: RegisteredModel, alias: str, current: int) -> int | None:
    """The last version the alias named, other than ``current``, that is still not archived."""
    events = session.scalars(
        select(ModelAliasEvent)
        .where(ModelAliasEvent.registered_model_id == registered.id, ModelAliasEvent.alias == alias)
        .order_by(ModelAliasEvent.id.desc())
    ).all()
    archived = set(
        session.scalars(
            select(ModelVersion.version).where(ModelVersion.registered_model_id == registered.id, ModelVersion.archived_at.is_not(None))
        ).all()
    )
    for e in events:
        for v in (e.version, e.previous_version):
            if v is not None and v != current and v not in archived:
                return v
    return None


def alias_history(session: Session, registered: RegisteredModel, alias: str) -> list[ModelAliasEvent]:
    """Every move of the alias, oldest first."""
    return list(
        session.scalars(
            select(ModelAliasEvent)
            .where(ModelAliasEvent.registered_model_id == registered.id, ModelAliasEvent.alias == alias)
            .order_by(ModelAliasEvent.id)
        ).all()
    )


def alias_at(session: Session, registered: RegisteredModel, alias: str, at: datetime) -> ModelAliasEvent | None:
    """The move in force at ``at`` (None: the alias did not exist then, or had been removed)."""
    event = session.scalar(
        select(ModelAliasEvent)
        .where(ModelAliasEvent.registered_model_id == registered.id, ModelAliasEvent.alias == alias, ModelAliasEvent.set_at <= at)
        .order_by(ModelAliasEvent.set_at.desc(), ModelAliasEvent.id.desc())
        .limit(1)
    )
    return event if event is not None and event.version is not None else None


# --- references ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """``name``, ``name@3`` or ``name@alias``."""

    name: str
    version: int | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        name, sep, selector = text.partition("@")
        if not sep:
            return cls(name)
        if selector.isdigit():
            return cls(name, version=int(selector))
        return cls(name, alias=check_alias(selector))


def resolve(session: Session, organization_id: str, reference: str, kind: str, *, bare: str = "latest") -> ModelVersion | None:
    """The version a reference names; None when ``name`` is not a registered model (the caller's own ids apply).

    A bare name resolves to its ``production`` alias when ``bare`` is ``"production"`` and the
    alias exists, else to its latest version. Raises RegistryError (404) for a missing
    version or alias.
    """
    ref = Reference.parse(reference)
    registered = find(session, organization_id, ref.name)
    if registered is None or registered.kind != kind:
        if ref.version is not None or ref.alias is not None:
            raise RegistryError(404, f"registered {kind} model {ref.name!r} not found", name=ref.name)
        return None
    if ref.alias is not None:
        number = _current(session, registered, ref.alias)
        if number is None:
            raise RegistryError(404, f"alias {ref.alias!r} of {ref.name} not found", name=ref.name, alias=ref.alias)
        return get_version(session, registered, number)
    if ref.version is not None:
        return get_version(session, registered, ref.version)
    if bare == PRODUCTION and (number := _current(session, registered, PRODUCTION)) is not None:
        return get_version(session, registered, number)
    if registered.latest_version == 0:
        return None
    return get_version(session, registered, registered.latest_version)


def version_label(session: Session, version: ModelVersion) -> str:
    """``name@3``: how answers name a version."""
    name = session.scalar(select(RegisteredModel.name).where(RegisteredModel.id == version.registered_model_id))
    return f"{name}@{version.version}"


def resolve_detector(session: Session, organization_id: str, reference: str) -> tuple[str, str | None]:
    """(v1 model UUID, ``name@version`` or None) of a detector reference: a UUID, ``name@3``,
    ``name@alias``, or a bare registered name (its ``production`` alias, else its latest version)."""
    try:
        model_id = str(uuid.UUID(reference))
    except ValueError:
        version = resolve(session, organization_id, reference, "detector", bare=PRODUCTION)
        if version is None or version.detector_model_id is None:
            raise RegistryError(404, "Model not found", reference=reference) from None
        return version.detector_model_id, version_label(session, version)
    version = session.scalar(
        select(ModelVersion)
        .where(ModelVersion.organization_id == organization_id, ModelVersion.detector_model_id == model_id)
        .limit(1)
    )
    return model_id, version_label(session, version) if version is not None else None


def stt_checkpoint(session: Session, reference: str) -> str | None:
    """The checkpoint a ``custom_model_{id}``, ``custom_model_{id}@3`` or ``@alias`` reference names now.

    For callers without an organization (Ray handles from other apps): a custom model's id is
    unique across organizations. None when ``reference`` is not of that form; RegistryError
    (404) when it names nothing servable. The bare key follows ``production``, else the latest
    version, as ``POST /api/v3/stt`` does.
    """
    key, pinned, _ = reference.partition("@")
    digits = key.removeprefix(MODEL_KEY_PREFIX)
    if not key.startswith(MODEL_KEY_PREFIX) or not digits.isdigit() or len(digits) > 18:
        return None
    row = session.get(CustomModel, int(digits))
    if row is None:
        raise RegistryError(404, f"custom model {key} not found", model=reference)
    version = resolve(session, row.organization_id, reference, "stt", bare=PRODUCTION)
    if version is None:  # trained before the registry: its own checkpoint
        if pinned or not row.checkpoint_key:
            raise RegistryError(404, f"{reference} has no trained version", model=reference)
        return row.checkpoint_key
    if version.archived_at is not None or not version.checkpoint_key:
        raise RegistryError(404, f"{reference} is archived", model=reference)
    return version.checkpoint_key


def detector_target(session: Session, reference: str) -> str:
    """The v1 model UUID a detector reference names now, for callers without an organization (Ray handles).

    A UUID names itself; ``name@3``, ``name@alias`` or a bare name (``production``, else the
    latest version) resolve when exactly one organization holds the name. RegistryError (404)
    otherwise.
    """
    try:
        return str(uuid.UUID(reference))
    except ValueError:
        pass
    name = Reference.parse(reference).name
    owners = session.scalars(
        select(RegisteredModel.organization_id).where(RegisteredModel.name == name, RegisteredModel.kind == "detector").limit(2)
    ).all()
    if len(owners) != 1:
        why = "not found" if not owners else "held by several organizations; name the model by its UUID"
        raise RegistryError(404, f"registered detector {name!r} {why}", model=reference)
    return resolve_detector(session, owners[0], reference)[0]
