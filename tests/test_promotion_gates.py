"""Promotion gates on the real database: which evaluation figures a gated alias move is judged by."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from cluster import registry
from cluster.accounts import create_organization
from cluster.db import init_schema, session_scope
from cluster.evaluation_tables import Evaluation, OutboxEvent
from cluster.registry import RegistryError
from cluster.tables import utcnow

DATA = {"dataset_id": "d", "annotation_set_id": "s"}


def _evaluation(s, org_id: str, data: dict, f1: dict[str, float], status: str = "completed") -> str:
    """A finished evaluation as the runner leaves it: labels name@N, one summary per model."""
    labels = list(f1)
    row = Evaluation(
        organization_id=org_id, kind="detector", status=status, data=data, items=[], config={}, finished_at=utcnow(),
        models=[{"reference": label, "label": label, "model_id": None, "target": label} for label in labels],
        results={"metric": "f1_score", "comparisons": [],
                 "models": [{"reference": label, "label": label, "failed_files": 0, "summary": {"f1_score": f1[label]}} for label in labels]},
    )
    s.add(row)
    s.flush()
    return row.id


@pytest.fixture
def gated(private_database_url):
    """A detector registered model with versions 1-3, production -> 1, gated on f1 (0.02) over DATA."""
    url = private_database_url
    init_schema(url)
    with session_scope(url) as s:
        org_id = create_organization(s, "gates").id
    model_id = registry.ensure_registered(url, org_id, "m", "detector")
    with session_scope(url) as s:
        for _ in range(3):
            registry.add_version(s, model_id, detector_model_id=None)
        model = registry.get_registered(s, org_id, "m")
        registry.set_alias(s, model, "production", 1, reason="first", set_by=None)
        registry.set_gate(s, model, "production", evaluation_data=DATA, metric="f1", max_regression=0.02)
    return url, org_id


def _move(url: str, org_id: str, version: int, **kw):
    with session_scope(url) as s:
        model = registry.get_registered(s, org_id, "m")
        return registry.set_alias(s, model, "production", version, reason=kw.pop("reason", "promote"), set_by=None, **kw).version


def test_a_move_is_judged_by_the_newest_evaluation_on_the_gate_data(gated):
    url, org_id = gated
    with pytest.raises(RegistryError, match="version 2 has not been evaluated"):
        _move(url, org_id, 2)
    with session_scope(url) as s:
        _evaluation(s, org_id, {**DATA, "audio_ids": ["a"]}, {"m@1": 0.80, "m@2": 0.95})  # other data: ignored
        _evaluation(s, org_id, DATA, {"m@2": 0.95})  # the current version never scored on it
    with pytest.raises(RegistryError, match="current version 1 has not been evaluated"):
        _move(url, org_id, 2)
    with session_scope(url) as s:
        _evaluation(s, org_id, DATA, {"m@1": 0.80, "m@2": 0.70})
    with pytest.raises(RegistryError, match=r"regresses f1 by 0\.1 .*\(0\.7 vs 0\.8\)") as refused:
        _move(url, org_id, 2)
    assert refused.value.status_code == 409
    with session_scope(url) as s:
        _evaluation(s, org_id, DATA, {"m@1": 0.80, "m@2": 0.79})  # newer, within the bound
    assert _move(url, org_id, 2) == 2
    with pytest.raises(RegistryError, match="has not been evaluated"):
        _move(url, org_id, 3)


def test_a_forced_move_needs_a_reason_and_is_marked(gated):
    url, org_id = gated
    with pytest.raises(RegistryError, match="needs a reason"):
        _move(url, org_id, 3, force=True, reason=" ")
    assert _move(url, org_id, 3, force=True, reason="hotfix for a crash") == 3
    with session_scope(url) as s:
        model = registry.get_registered(s, org_id, "m")
        last = registry.alias_history(s, model, "production")[-1]
        assert (last.version, last.forced, last.reason) == (3, True, "hotfix for a crash")
        events = s.scalars(select(OutboxEvent.payload).where(OutboxEvent.type == "model.alias_changed", OutboxEvent.organization_id == org_id)).all()
        assert [(e["data"]["ids"]["version"], e["data"]["summary"]["forced"]) for e in events] == [(1, False), (3, True)]
        registry.rollback_alias(s, model, "production", to_version=None, reason="back", set_by=None)  # not gated
        assert registry.aliases(s, model)["production"] == 1
