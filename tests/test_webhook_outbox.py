"""Events and webhook deliveries on the real database: each cause writes its event and deliveries in
its own transaction, and the delivery state machine keeps its promises (one claim wins, a lost
claim writes nothing, retries follow the schedule, endpoints failing for days are disabled)."""

from __future__ import annotations

import ipaddress
import random
from datetime import timedelta

import pytest
from sqlalchemy import delete, select, update

from cluster import custom_models, inference, training, webhook_urls, webhooks
from cluster.accounts import create_organization
from cluster.db import init_schema, open_session, session_scope
from cluster.evaluation_tables import OutboxEvent
from cluster.outbox import record_event
from cluster.stt_tables import CustomModel
from cluster.tables import AnnotationSet, Dataset, TrainingJob, utcnow
from cluster.webhook_tables import WebhookAttempt, WebhookEndpoint, WebhookMessage
from schemas.settings import Settings
from tests.factories import inference_rows, race

SCHEDULE = [0.0, 10.0, 20.0]


@pytest.fixture
def org(private_database_url, tmp_path) -> tuple[str, str, Settings]:
    url = private_database_url
    init_schema(url)
    settings = Settings(data_dir=tmp_path, database_url=url, webhook_retry_schedule_s=SCHEDULE, webhook_retry_jitter=0.1)
    with session_scope(url) as s:
        s.execute(delete(WebhookMessage))  # claims take every organization's deliveries: start each test with none
        org_id = create_organization(s, "outbox").id
    return url, org_id, settings


def endpoint(url: str, org_id: str, types: list[str] | None = None, enabled: bool = True) -> str:
    with session_scope(url) as s:
        row = WebhookEndpoint(organization_id=org_id, url="https://hooks.example.com/x", event_types=types or [], enabled=enabled, secret=webhooks.new_secret())
        s.add(row)
        s.flush()
        return row.id


def messages(url: str, endpoint_id: str) -> list[WebhookMessage]:
    with open_session(url) as s:
        return list(s.scalars(select(WebhookMessage).where(WebhookMessage.endpoint_id == endpoint_id).order_by(WebhookMessage.created_at)))


def events(url: str, org_id: str) -> list[dict]:
    with open_session(url) as s:
        return list(s.scalars(select(OutboxEvent.payload).where(OutboxEvent.organization_id == org_id).order_by(OutboxEvent.id)))


def test_an_event_reaches_the_enabled_subscribed_endpoints_of_its_organization(org):
    url, org_id, _ = org
    every = endpoint(url, org_id)
    alias_only = endpoint(url, org_id, ["model.alias_changed"])
    disabled = endpoint(url, org_id, enabled=False)
    with session_scope(url) as s:
        other_org = create_organization(s, "other").id
    other = endpoint(url, other_org)
    with session_scope(url) as s:
        record_event(s, org_id, "evaluation.completed", "e1", ids={"evaluation_id": "e1"}, status="completed")
    assert [m.event_type for m in messages(url, every)] == ["evaluation.completed"]
    assert messages(url, alias_only) == messages(url, disabled) == messages(url, other) == []
    [event] = events(url, org_id)
    assert event["type"] == "evaluation.completed" and event["data"]["ids"] == {"evaluation_id": "e1"}


def test_an_event_rolls_back_with_its_cause(org):
    url, org_id, _ = org
    target = endpoint(url, org_id)
    with pytest.raises(RuntimeError):
        with session_scope(url) as s:
            record_event(s, org_id, "evaluation.failed", "e2", ids={}, status="failed", error="boom")
            raise RuntimeError("the cause's transaction fails")
    assert events(url, org_id) == [] and messages(url, target) == []


def test_inference_jobs_announce_completion_failure_and_cancellation(org):
    url, org_id, _ = org
    job_id, files = inference_rows(url, org_id, [{}, {}])
    inference.finish_file(url, files[0], detections=[{"artifact_type": "glitch"}], duration_ms=1000)
    assert events(url, org_id) == []  # one file still processing
    inference.finish_file(url, files[1], error="could not decode")
    [done] = events(url, org_id)
    assert done["type"] == "inference_job.completed" and done["data"]["ids"]["inference_job_id"] == job_id
    assert done["data"]["summary"] == {"total_files": 2, "processed_files": 2, "failed_files": 1, "total_detections": 1}

    failing, _ = inference_rows(url, org_id, [{}])
    assert inference.record_job_failure(url, failing, "Model is archived")
    assert not inference.record_job_failure(url, failing, "again")  # ended once, announced once
    cancelled, _ = inference_rows(url, org_id, [{}])
    with session_scope(url) as s:
        assert inference.cancel_job(s, cancelled)
    types = [(e["type"], e["data"]["ids"]["inference_job_id"], e["data"]["error"]) for e in events(url, org_id)[1:]]
    assert types == [("inference_job.failed", failing, "Model is archived"), ("inference_job.cancelled", cancelled, None)]


def test_training_runs_announce_their_end_once(org):
    url, org_id, _ = org
    with session_scope(url) as s:
        ds = Dataset(organization_id=org_id, name="d")
        s.add(ds)
        s.flush()
        aset = AnnotationSet(organization_id=org_id, dataset_id=ds.id, version=1)
        s.add(aset)
        s.flush()
        jobs = [TrainingJob(organization_id=org_id, dataset_id=ds.id, annotation_set_id=aset.id, status="running") for _ in range(2)]
        s.add_all(jobs)
        stt = CustomModel(organization_id=org_id, name="m", language="en", base_model="general", status_message="Training", training_status=3)
        s.add(stt)
        s.flush()
        job_ids, stt_id = [j.id for j in jobs], stt.id
    training.fail_job(url, job_ids[0], "worker died")
    training.fail_job(url, job_ids[0], "again")  # a no-op: the job already ended
    with session_scope(url) as s:
        assert training.end_job(s, job_ids[1], "cancelled", "cancelled by user")
    assert custom_models.fail(url, stt_id, "out of memory")
    got = [(e["type"], e["data"]["status"], e["data"]["error"]) for e in events(url, org_id)]
    assert got == [
        ("training_job.failed", "failed", "worker died"),
        ("training_job.cancelled", "cancelled", "cancelled by user"),
        ("custom_model.training_failed", "failed", "out of memory"),
    ]
    assert events(url, org_id)[2]["data"]["links"]["custom_model"] == f"/api/v3/custom_models/{stt_id}"


# --- the delivery state machine -----------------------------------------------------------------


def _one_message(url: str, org_id: str) -> tuple[str, str]:
    target = endpoint(url, org_id)
    with session_scope(url) as s:
        record_event(s, org_id, "evaluation.completed", "e", ids={}, status="completed")
    return target, messages(url, target)[0].id


def test_racing_claims_have_one_winner_and_a_lost_claim_writes_nothing(org):
    url, org_id, settings = org
    _, message_id = _one_message(url, org_id)
    won = [c for claims in race(lambda: webhooks.claim(url, limit=10, lease_s=0.2)) for c in claims]
    assert won == [(message_id, 1)]
    assert webhooks.claim(url, limit=10, lease_s=60) == []  # leased
    with session_scope(url) as s:  # the lease runs out: claimed again, as attempt 2
        s.execute(update(WebhookMessage).values(lease_until=utcnow() - timedelta(seconds=1)))
    assert webhooks.claim(url, limit=10, lease_s=60) == [(message_id, 2)]
    assert webhooks.plan(url, message_id, 1) is None
    assert webhooks.record_attempt(url, settings, message_id, 1, webhooks.Outcome(status_code=200)) is None
    plan = webhooks.plan(url, message_id, 2)
    assert plan.body["type"] == "evaluation.completed" and len(plan.secrets) == 1
    assert webhooks.record_attempt(url, settings, message_id, 2, webhooks.Outcome(status_code=200)) == "succeeded"
    with open_session(url) as s:
        assert s.scalar(select(WebhookAttempt.status_code).where(WebhookAttempt.message_id == message_id)) == 200


def test_retry_delays_follow_the_schedule_with_bounded_jitter():
    settings = Settings(webhook_retry_schedule_s=[0, 5, 300], webhook_retry_jitter=0.1)
    rng = random.Random(7)
    down = webhooks.Outcome(error="connection refused")
    delays = [webhooks.retry_delay(settings, 1, down, rng) for _ in range(200)]
    assert 4.5 <= min(delays) < 4.7 and 5.3 < max(delays) <= 5.5
    assert 270 <= webhooks.retry_delay(settings, 2, webhooks.Outcome(status_code=503), rng) <= 330
    assert webhooks.retry_delay(settings, 3, down, rng) is None  # three attempts in all
    assert webhooks.retry_delay(settings, 1, webhooks.Outcome(status_code=404), rng) is None
    assert webhooks.retry_delay(settings, 1, webhooks.Outcome(status_code=408), rng) is not None
    limited = webhooks.Outcome(status_code=429, retry_after_s=120)
    assert webhooks.retry_delay(settings, 1, limited, rng) == 120  # a longer Retry-After wins
    assert webhooks.retry_delay(settings, 1, webhooks.Outcome(status_code=429, retry_after_s=1), rng) < 6


def test_failures_reschedule_then_fail_and_redelivery_starts_the_schedule_over(org):
    url, org_id, settings = org
    target, message_id = _one_message(url, org_id)
    for attempt in (1, 2):
        with session_scope(url) as s:
            s.execute(update(WebhookMessage).values(next_attempt_at=utcnow()))
        assert webhooks.claim(url, limit=1, lease_s=60) == [(message_id, attempt)]
        before = utcnow()
        assert webhooks.record_attempt(url, settings, message_id, attempt, webhooks.Outcome(status_code=500)) == "pending"
        wait = (messages(url, target)[0].next_attempt_at - before).total_seconds()
        assert SCHEDULE[attempt] * 0.9 - 1 <= wait <= SCHEDULE[attempt] * 1.1 + 1
    with session_scope(url) as s:
        s.execute(update(WebhookMessage).values(next_attempt_at=utcnow()))
    assert webhooks.claim(url, limit=1, lease_s=60) == [(message_id, 3)]
    assert webhooks.record_attempt(url, settings, message_id, 3, webhooks.Outcome(error="timeout")) == "failed"
    with session_scope(url) as s:
        webhooks.redeliver(s, s.get(WebhookMessage, message_id))
    assert webhooks.claim(url, limit=1, lease_s=60) == [(message_id, 4)]
    assert webhooks.record_attempt(url, settings, message_id, 4, webhooks.Outcome(status_code=502)) == "pending"  # attempt 1 of 3 again


def test_an_endpoint_failing_for_days_is_disabled_and_that_is_an_event(org):
    url, org_id, settings = org
    target, message_id = _one_message(url, org_id)
    watcher = endpoint(url, org_id, ["webhook_endpoint.disabled"])
    with session_scope(url) as s:
        s.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == target).values(failing_since=utcnow() - timedelta(days=5, minutes=1)))
    [(claimed, attempt)] = webhooks.claim(url, limit=1, lease_s=60)
    assert webhooks.record_attempt(url, settings, claimed, attempt, webhooks.Outcome(status_code=500)) == "failed"
    with open_session(url) as s:
        row = s.get(WebhookEndpoint, target)
        assert not row.enabled and row.disabled_reason == "every delivery failed for 5 days"
    [told] = messages(url, watcher)
    assert told.event_type == "webhook_endpoint.disabled"
    with session_scope(url) as s:  # a disabled endpoint's deliveries are not claimed
        record_event(s, org_id, "evaluation.completed", "e", ids={}, status="completed")
    assert [m for m, _ in webhooks.claim(url, limit=10, lease_s=60)] == [told.id]


def test_rotation_keeps_the_previous_secret_for_its_grace_only():
    row = WebhookEndpoint(secret=webhooks.new_secret())
    first = row.secret
    webhooks.rotate_secret(row, 60)
    assert webhooks.signing_secrets(row, utcnow()) == [row.secret, first]
    assert webhooks.signing_secrets(row, utcnow() + timedelta(seconds=61)) == [row.secret]
    webhooks.rotate_secret(row, 0)
    assert row.previous_secret is None and webhooks.signing_secrets(row, utcnow()) == [row.secret]


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://hooks.example.com/x", True),
        ("http://hooks.example.com/x", False),  # http needs webhook_allow_http
        ("https://user:pw@hooks.example.com/x", False),
        ("ftp://hooks.example.com/x", False),
        ("https:///x", False),
        ("https://hooks.example.com:99999/x", False),
    ],
)
def test_url_shape(url, allowed):
    settings = Settings()
    if allowed:
        assert webhook_urls.parse(url, settings)[1] == "hooks.example.com"
    else:
        with pytest.raises(webhook_urls.UnsafeWebhookUrl):
            webhook_urls.parse(url, settings)


def test_addresses_must_all_be_public_unless_allowed():
    public, loopback = Settings(), Settings(webhook_allowed_networks="127.0.0.0/8")
    for address in ("10.0.0.1", "169.254.169.254", "127.0.0.1", "::1", "fe80::1", "::ffff:10.0.0.1", "100.64.0.1", "0.0.0.0", "224.0.0.1"):
        assert not webhook_urls.address_allowed(ipaddress.ip_address(address), public), address
    assert webhook_urls.address_allowed(ipaddress.ip_address("93.184.215.14"), public)
    assert webhook_urls.address_allowed(ipaddress.ip_address("127.0.0.1"), loopback)
    assert not webhook_urls.address_allowed(ipaddress.ip_address("10.0.0.1"), loopback)
    with pytest.raises(webhook_urls.UnsafeWebhookUrl, match="10.0.0.1"):  # one private address is enough to refuse
        webhook_urls.check_addresses("mixed.example.com", ["93.184.215.14", "10.0.0.1"], public)
    with pytest.raises(webhook_urls.UnsafeWebhookUrl, match="does not resolve"):
        webhook_urls.check_addresses("gone.example.com", [], public)
