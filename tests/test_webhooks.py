"""Webhooks over real HTTP: endpoints on the deployed app, deliveries sent by its Dispatcher to a
real receiver in this process that verifies every signature with ``standardwebhooks``.

The test platform retries on a schedule of seconds (``WEBHOOK_TEST_SCHEDULE_S``) instead of
Standard Webhooks' minutes and hours; everything else is as deployed.
"""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.conftest import WEBHOOK_TEST_SCHEDULE_S
from tests.factories import Client, kill_replicas, replica_names, wait_for
from tests.webhook_receiver import Receiver

JITTER = 0.1  # the platform's default webhook_retry_jitter


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


def subscribe(client, receiver: Receiver, name: str = "current", **fields) -> dict:
    r = client.post("/api/v1/webhook-endpoints", json={"url": receiver.url, **fields})
    assert r.status_code == 201, r.text
    endpoint = r.json()
    receiver.secrets[name] = endpoint["secret"]
    return endpoint


def deliveries(client, endpoint_id: str, **params) -> list[dict]:
    r = client.get(f"/api/v1/webhook-endpoints/{endpoint_id}/deliveries", params=params)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def settled(client, endpoint_id: str, delivery_id: str) -> dict:
    def done():
        rows = [d for d in deliveries(client, endpoint_id, page_size=100) if d["id"] == delivery_id]
        return rows[0] if rows and rows[0]["status"] != "pending" else None

    return wait_for(done, timeout=60, interval=0.3, what=f"delivery {delivery_id} settled")


def test_endpoints_are_managed_and_the_secret_is_shown_once(org):
    receiver = Receiver().start()
    try:
        created = subscribe(org, receiver, event_types=["training_job.succeeded", "model.alias_changed"], description="ops")
        assert created["secret"].startswith("whsec_") and len(base64.b64decode(created["secret"][6:])) == 24
        assert created["event_types"] == ["model.alias_changed", "training_job.succeeded"] and created["enabled"]
        one = org.get(f"/api/v1/webhook-endpoints/{created['id']}").json()
        assert "secret" not in one and one["url"] == receiver.url and one["description"] == "ops"
        listed = org.get("/api/v1/webhook-endpoints").json()
        assert [e["id"] for e in listed["items"]] == [created["id"]] and "secret" not in listed["items"][0]

        r = org.patch(f"/api/v1/webhook-endpoints/{created['id']}", json={"event_types": [], "enabled": False})
        assert r.status_code == 200 and r.json()["event_types"] == [] and not r.json()["enabled"]
        assert r.json()["disabled_reason"] == "disabled by its owner"
        r = org.post(f"/api/v1/webhook-endpoints/{created['id']}/test")
        assert r.status_code == 409 and "disabled" in r.json()["detail"]

        r = org.post("/api/v1/webhook-endpoints", json={"url": receiver.url, "event_types": ["training_job.done"]})
        assert r.status_code == 422 and "training_job.done" in r.text

        assert org.delete(f"/api/v1/webhook-endpoints/{created['id']}").status_code == 204
        assert org.get(f"/api/v1/webhook-endpoints/{created['id']}").status_code == 404
    finally:
        receiver.stop()


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/hook", "http://[::1]:8080/", "http://100.64.0.1/"])
def test_private_and_metadata_addresses_are_refused_at_creation(org, url):
    """Loopback IPv4 is allowed on the test platform (webhook_allowed_networks); nothing else private is."""
    r = org.post("/api/v1/webhook-endpoints", json={"url": url})
    assert r.status_code == 400, r.text
    assert "not allowed" in r.json()["detail"]
    assert org.get("/api/v1/webhook-endpoints").json()["total"] == 0


def test_a_test_event_is_signed_thin_and_logged(org, receiver):
    endpoint = subscribe(org, receiver, event_types=["evaluation.completed"])  # webhook.test reaches it anyway
    r = org.post(f"/api/v1/webhook-endpoints/{endpoint['id']}/test")
    assert r.status_code == 202, r.text
    delivery_id = r.json()["delivery_id"]
    row = settled(org, endpoint["id"], delivery_id)

    [arrival] = receiver.all()
    assert arrival.id == delivery_id and arrival.verified_by == ["current"]
    assert arrival.headers["content-type"] == "application/json" and arrival.headers["host"].startswith("127.0.0.1:")
    assert abs(int(arrival.headers["webhook-timestamp"]) - time.time()) < 60
    event = arrival.event
    assert event["type"] == "webhook.test" and event["timestamp"].endswith("Z")
    assert set(event["data"]) == {"ids", "status", "error", "summary", "links"}
    assert event["data"]["ids"] == {"webhook_endpoint_id": endpoint["id"]}
    assert event["data"]["links"]["webhook_endpoint"].startswith("http")  # absolute, from the public URL
    assert len(arrival.body.encode()) < 20_000

    assert row["status"] == "succeeded" and row["event_type"] == "webhook.test" and row["payload"]["type"] == "webhook.test"
    [attempt] = row["attempts"]
    assert attempt["status_code"] == 200 and attempt["error"] is None
    assert attempt["response_snippet"] == "receiver answered 200" and attempt["latency_ms"] >= 0
    assert deliveries(org, endpoint["id"], status="failed") == []
    assert [d["id"] for d in deliveries(org, endpoint["id"], event_type="webhook.test")] == [delivery_id]
    assert org.get(f"/api/v1/webhook-endpoints/{endpoint['id']}/deliveries", params={"event_type": "nope"}).status_code == 422


def test_server_errors_are_retried_on_schedule_with_the_same_id(org, receiver):
    receiver.script = [500, 503]
    endpoint = subscribe(org, receiver)
    delivery_id = org.post(f"/api/v1/webhook-endpoints/{endpoint['id']}/test").json()["delivery_id"]
    row = settled(org, endpoint["id"], delivery_id)

    arrivals = receiver.all()
    assert [a.answered for a in arrivals] == [500, 503, 200]
    assert {a.id for a in arrivals} == {delivery_id}
    assert all(a.verified_by == ["current"] for a in arrivals)
    assert len({a.body for a in arrivals}) == 1  # the same event every time
    for n, (before, after) in enumerate(zip(arrivals, arrivals[1:]), start=1):
        assert after.at - before.at >= WEBHOOK_TEST_SCHEDULE_S[n] * (1 - JITTER) - 0.05, (n, after.at - before.at)
    assert row["status"] == "succeeded"
    assert [(a["status_code"], a["error"]) for a in row["attempts"]] == [(500, "answered 500"), (503, "answered 503"), (200, None)]
    assert org.get(f"/api/v1/webhook-endpoints/{endpoint['id']}").json()["failing_since"] is None  # cleared by the success


def test_retries_end_when_the_schedule_does(org, receiver):
    receiver.script = [500] * 10
    endpoint = subscribe(org, receiver)
    delivery_id = org.post(f"/api/v1/webhook-endpoints/{endpoint['id']}/test").json()["delivery_id"]
    row = settled(org, endpoint["id"], delivery_id)
    assert row["status"] == "failed" and len(row["attempts"]) == len(WEBHOOK_TEST_SCHEDULE_S)
    assert len(receiver.all()) == len(WEBHOOK_TEST_SCHEDULE_S)
    assert org.get(f"/api/v1/webhook-endpoints/{endpoint['id']}").json()["failing_since"] is not None

    receiver.script = []  # the receiver is fixed: redeliver, same id, fresh timestamp and signature
    r = org.post(f"/api/v1/webhook-messages/{delivery_id}/redeliver")
    assert r.status_code == 202 and r.json()["status"] == "pending"
    row = settled(org, endpoint["id"], delivery_id)
    assert row["status"] == "succeeded" and row["attempts"][-1]["status_code"] == 200
    last = receiver.all()[-1]
    assert last.id == delivery_id and last.answered == 200 and last.verified_by == ["current"]
    assert int(last.headers["webhook-timestamp"]) >= int(receiver.all()[0].headers["webhook-timestamp"])


def test_a_client_error_is_not_retried(org, receiver):
    receiver.script = [400]
    endpoint = subscribe(org, receiver)
    delivery_id = org.post(f"/api/v1/webhook-endpoints/{endpoint['id']}/test").json()["delivery_id"]
    row = settled(org, endpoint["id"], delivery_id)
    assert row["status"] == "failed" and [a["status_code"] for a in row["attempts"]] == [400]
    assert org.get(f"/api/v1/webhook-endpoints/{endpoint['id']}").json()["enabled"]


def test_410_gone_disables_the_endpoint_and_says_so(org, receiver):
    watcher = Receiver().start()
    try:
        ops = subscribe(org, watcher, event_types=["webhook_endpoint.disabled"])
        receiver.script = [410]
        endpoint = subscribe(org, receiver)
        delivery_id = org.post(f"/api/v1/webhook-endpoints/{endpoint['id']}/test").json()["delivery_id"]
        row = settled(org, endpoint["id"], delivery_id)
        assert row["status"] == "failed" and [a["status_code"] for a in row["attempts"]] == [410]
        now = org.get(f"/api/v1/webhook-endpoints/{endpoint['id']}").json()
        assert not now["enabled"] and "410" in now["disabled_reason"]

        wait_for(lambda: watcher.of_type("webhook_endpoint.disabled"), timeout=30, what="disabled event")
        [told] = watcher.of_type("webhook_endpoint.disabled")
        assert told.verified_by == ["current"] and told.event["data"]["ids"] == {"webhook_endpoint_id": endpoint["id"]}
        assert "410" in told.event["data"]["error"]
        assert len(receiver.all()) == 1  # nothing more reaches a disabled endpoint
        assert org.post(f"/api/v1/webhook-messages/{delivery_id}/redeliver").status_code == 409
        assert ops["enabled"]
    finally:
        watcher.stop()


def test_rotation_signs_with_both_secrets_until_the_grace_ends(org, receiver):
    endpoint = subscribe(org, receiver, name="old")
    r = org.post(f"/api/v1/webhook-endpoints/{endpoint['id']}/rotate-secret", json={"grace_seconds": 3600})
    assert r.status_code == 200, r.text
    receiver.secrets["new"] = r.json()["secret"]
    assert r.json()["previous_secret_expires_at"] and r.json()["secret"] != endpoint["secret"]
    settled(org, endpoint["id"], org.post(f"/api/v1/webhook-endpoints/{endpoint['id']}/test").json()["delivery_id"])
    during = receiver.all()[-1]
    assert sorted(during.verified_by) == ["new", "old"] and len(during.headers["webhook-signature"].split(" ")) == 2

    r = org.post(f"/api/v1/webhook-endpoints/{endpoint['id']}/rotate-secret", json={"grace_seconds": 0})
    receiver.secrets["newest"] = r.json()["secret"]
    assert r.json()["previous_secret_expires_at"] is None
    settled(org, endpoint["id"], org.post(f"/api/v1/webhook-endpoints/{endpoint['id']}/test").json()["delivery_id"])
    after = receiver.all()[-1]
    assert after.verified_by == ["newest"]
    with pytest.raises(WebhookVerificationError):
        Webhook(receiver.secrets["new"]).verify(after.body, after.headers)
    assert org.post(f"/api/v1/webhook-endpoints/{endpoint['id']}/rotate-secret", json={"grace_seconds": 8 * 86400}).status_code == 422


def test_a_dispatcher_killed_mid_delivery_sends_it_again_with_the_same_id(org, receiver):
    """The receiver holds the first request; the Dispatcher dies before hearing the answer, so
    nothing is recorded; its lease runs out and the new replica sends the same webhook-id."""
    receiver.hold_s = 3.0
    endpoint = subscribe(org, receiver)
    delivery_id = org.post(f"/api/v1/webhook-endpoints/{endpoint['id']}/test").json()["delivery_id"]
    wait_for(receiver.all, timeout=30, interval=0.05, what="first arrival")
    killed = kill_replicas("Dispatcher")
    row = settled(org, endpoint["id"], delivery_id)
    arrivals = receiver.all()
    print(f"\nrestart: {len({a.id for a in arrivals})} event delivered of 1 expected, in {len(arrivals)} requests")
    assert {a.id for a in arrivals} == {delivery_id} and len(arrivals) >= 2  # deduplicated by id: one event
    assert all(a.verified_by == ["current"] for a in arrivals)
    assert row["status"] == "succeeded" and [a["status_code"] for a in row["attempts"]] == [200] * (len(arrivals) - 1)
    assert not set(replica_names("Dispatcher")) & set(killed)


def test_v3_style_keys_manage_endpoints_too(platform):
    """A key with only the custom_models scopes, sent as a Bearer token, sees the same endpoints."""
    client = platform.org("webhooks-v3", scopes=["custom_models:read", "custom_models:write"])
    bearer = Client(client.base_url, client.key, header="Authorization", org_id=client.org_id)
    r = bearer.post("/api/v1/webhook-endpoints", json={"url": "http://127.0.0.1:9/v3", "event_types": ["custom_model.training_succeeded"]})
    assert r.status_code == 201, r.text
    assert [e["id"] for e in client.get("/api/v1/webhook-endpoints").json()["items"]] == [r.json()["id"]]
    assert bearer.delete(f"/api/v1/webhook-endpoints/{r.json()['id']}").status_code == 204
