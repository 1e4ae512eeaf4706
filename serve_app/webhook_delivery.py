"""Sends claimed webhook deliveries (run by the Dispatcher; the state machine is ``cluster.webhooks``).

Each attempt re-reads the endpoint (URL, secrets), resolves its host and checks every address
(``cluster.webhook_urls``), then connects to the checked address itself (the Host header and
TLS server name stay the URL's), so DNS cannot swap in a private address after the check.
Bodies are signed with ``standardwebhooks``: one ``v1,`` signature per live secret.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import random
import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit, urlunsplit

import httpx
from standardwebhooks.webhooks import Webhook

from cluster import webhook_urls, webhooks
from cluster.webhooks import Outcome, Plan
from schemas.settings import Settings
from serve_app import metrics

log = logging.getLogger("fathom.webhooks")

USER_AGENT = "Fathom-Webhooks/1"
CLAIM_BATCH = 32
MAX_IN_FLIGHT = 64  # attempts awaiting an answer; a slow receiver holds one for up to webhook_timeout_s


def body_bytes(plan: Plan, public_url: str) -> str:
    """The event with its links made absolute: the same text on every attempt of a delivery."""
    body = copy.deepcopy(plan.body)
    data = body.get("data") or {}
    data["links"] = {k: f"{public_url}{v}" if v.startswith("/") else v for k, v in (data.get("links") or {}).items()}
    return json.dumps(body, separators=(",", ":"), sort_keys=True)


def signature_header(plan: Plan, timestamp: datetime, body: str) -> str:
    return " ".join(Webhook(secret).sign(plan.message_id, timestamp, body) for secret in plan.secrets)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        try:
            return max((parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds(), 0.0)
        except (TypeError, ValueError):
            return None


class WebhookSender:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.client = httpx.AsyncClient(timeout=settings.webhook_timeout_s, follow_redirects=False, trust_env=False)
        self.in_flight: set[str] = set()
        self.rng = random.Random()

    async def run_due(self) -> int:
        """Claim what is due and send it in the background; returns how many were claimed."""
        s = self.settings
        free = min(CLAIM_BATCH, MAX_IN_FLIGHT - len(self.in_flight))
        if free <= 0:
            return 0
        claimed = await asyncio.to_thread(webhooks.claim, s.database_url, limit=free, lease_s=s.webhook_lease_s)
        for message_id, attempt in claimed:
            self.in_flight.add(message_id)
            asyncio.get_running_loop().create_task(self._deliver(message_id, attempt))
        return len(claimed)

    async def _deliver(self, message_id: str, attempt: int) -> None:
        url = self.settings.database_url
        try:
            plan = await asyncio.to_thread(webhooks.plan, url, message_id, attempt)
            if plan is None:
                return
            outcome = await self.send(plan)
            status = await asyncio.to_thread(webhooks.record_attempt, url, self.settings, message_id, attempt, outcome, self.rng)
            if status is not None:
                metrics.webhook_attempt({"pending": "retrying"}.get(status, status))
            log.info("webhook %s to %s: %s -> %s", message_id, plan.endpoint_id, outcome.status_code or outcome.error, status)
        except Exception:  # the lease runs out and the delivery is claimed again
            log.exception("webhook delivery %s failed before its attempt was recorded", message_id)
        finally:
            self.in_flight.discard(message_id)

    async def send(self, plan: Plan) -> Outcome:
        try:
            scheme, host, port = webhook_urls.parse(plan.url, self.settings)
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=0, proto=6)
            address = webhook_urls.check_addresses(host, list(dict.fromkeys(i[4][0] for i in infos)), self.settings)
        except webhook_urls.UnsafeWebhookUrl as e:
            return Outcome(error=f"refused: {e}")
        except OSError as e:
            return Outcome(error=f"could not resolve {plan.url}: {e}")
        parts = urlsplit(plan.url)
        ip = f"[{address}]" if address.version == 6 else str(address)
        pinned = urlunsplit((scheme, f"{ip}:{port}", parts.path or "/", parts.query, ""))
        body = body_bytes(plan, self.settings.public_url)
        now = datetime.now(timezone.utc)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "host": parts.netloc,
            "webhook-id": plan.message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature_header(plan, now, body),
        }
        started = time.perf_counter()
        try:
            response = await self.client.post(pinned, content=body.encode(), headers=headers, extensions={"sni_hostname": host})
        except httpx.TimeoutException:
            return Outcome(error=f"no answer within {self.settings.webhook_timeout_s:g} s", latency_ms=_ms(started))
        except httpx.HTTPError as e:
            return Outcome(error=f"{type(e).__name__}: {e}"[:1000], latency_ms=_ms(started))
        snippet = response.content[: webhooks.SNIPPET_BYTES].decode("utf-8", errors="replace")
        error = None if response.is_success else f"answered {response.status_code}"
        return Outcome(
            status_code=response.status_code, latency_ms=_ms(started), response_snippet=snippet, error=error,
            retry_after_s=_retry_after(response) if response.status_code in (429, 503) else None,
        )


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
