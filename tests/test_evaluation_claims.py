"""The evaluation state machine on the real database: one claim wins, a lost lease writes nothing, ends are final."""

from __future__ import annotations


import pytest
from sqlalchemy import select, update

from cluster import evaluations
from cluster.accounts import create_organization
from cluster.db import init_schema, open_session, session_scope
from cluster.evaluation_tables import Evaluation, EvaluationFile, OutboxEvent
from cluster.tables import utcnow
from tests.factories import race

ITEMS = [{"id": f"f{i}", "filename": f"f{i}.wav"} for i in range(3)]
MODELS = [{"reference": "a", "label": "a"}, {"reference": "b", "label": "b"}]


@pytest.fixture
def queued(private_database_url) -> tuple[str, str]:
    url = private_database_url
    init_schema(url)
    with session_scope(url) as s:
        org = create_organization(s, "claims")
        row = Evaluation(organization_id=org.id, kind="stt", models=MODELS, items=ITEMS, data={"pair_ids": [1]}, config={})
        s.add(row)
        s.flush()
        return url, row.id


def _row(url: str, evaluation_id: str) -> Evaluation:
    with open_session(url) as s:
        return s.get(Evaluation, evaluation_id)


def _events(url: str, evaluation_id: str) -> list[str]:
    with open_session(url) as s:
        return list(s.scalars(select(OutboxEvent.type).where(OutboxEvent.subject_id == evaluation_id)))


def test_racing_claims_have_one_winner(queued):
    url, evaluation_id = queued
    won = race(lambda: evaluations.claim(url, lease_s=60, max_attempts=3))
    assert [c for c in won if c] == [(evaluation_id, 1)]
    assert _row(url, evaluation_id).status == "running"


def test_a_claim_that_lost_its_lease_writes_nothing_and_the_next_goes_on_from_the_rows(queued):
    url, evaluation_id = queued
    assert evaluations.claim(url, lease_s=60, max_attempts=3) == (evaluation_id, 1)
    assert evaluations.record_file(url, evaluation_id, 1, lease_s=60, total=6, model_index=0, item=ITEMS[0], row={"x": 1}, score=10.0)
    assert _row(url, evaluation_id).progress == pytest.approx(100 / 6, abs=0.1)
    with session_scope(url) as s:  # the replica died: its lease runs out
        s.execute(update(Evaluation).where(Evaluation.id == evaluation_id).values(lease_until=utcnow()))
    assert evaluations.claim(url, lease_s=60, max_attempts=3) == (evaluation_id, 2)
    assert not evaluations.record_file(url, evaluation_id, 1, lease_s=60, total=6, model_index=1, item=ITEMS[0], row={})
    assert not evaluations.finish(url, evaluation_id, 1, {"metric": "word_error_rate", "models": [], "comparisons": []})
    assert evaluations.written(url, evaluation_id) == {(0, "f0")}
    # the same row written again by the new claim is already counted, not doubled
    assert evaluations.record_file(url, evaluation_id, 2, lease_s=60, total=6, model_index=0, item=ITEMS[0], row={"x": 2})
    with open_session(url) as s:
        assert s.scalar(select(EvaluationFile.row).where(EvaluationFile.evaluation_id == evaluation_id)) == {"x": 1}
    assert _row(url, evaluation_id).progress == pytest.approx(100 / 6, abs=0.1)  # nor counted twice
    assert evaluations.finish(url, evaluation_id, 2, {"metric": "word_error_rate", "models": [], "comparisons": []})
    done = _row(url, evaluation_id)
    assert (done.status, done.progress, done.lease_until) == ("completed", 100.0, None)
    assert _events(url, evaluation_id) == ["evaluation.completed"]
    assert not evaluations.fail(url, evaluation_id, None, "too late")  # an end is final
    assert _row(url, evaluation_id).status == "completed" and _events(url, evaluation_id) == ["evaluation.completed"]


def test_an_evaluation_claimed_too_often_fails_with_its_reason(queued):
    url, evaluation_id = queued
    for attempt in (1, 2):
        assert evaluations.claim(url, lease_s=60, max_attempts=2) == (evaluation_id, attempt)
        evaluations.release(url, evaluation_id, attempt)
    assert evaluations.claim(url, lease_s=60, max_attempts=2) is None
    row = _row(url, evaluation_id)
    assert row.status == "failed" and "after 2 attempts" in row.error_message
    assert _events(url, evaluation_id) == ["evaluation.failed"]
