"""The PostgreSQL server stops for a few seconds under the running platform.

Collected only in the PostgreSQL pass (``make test-postgres``): it stops and restarts the
server that FATHOM_TEST_POSTGRES_URL names, through Debian's ``pg_ctlcluster``.
"""

from __future__ import annotations

import os
import subprocess
import time
from urllib.parse import urlparse

import pytest
import requests

from data_pipelines.audio import encode_audio
from data_pipelines.synth import make_clip
from tests.factories import Client, register_detector, upload_inference_file, wait_for

pytestmark = pytest.mark.slow

OUTAGE_S = 4.0


def _cluster() -> tuple[str, str]:
    """(version, name) of the local cluster serving the test server's port."""
    port = urlparse(os.environ.get("FATHOM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")).port or 5432
    out = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        version, name, cluster_port, *_ = line.split()
        if int(cluster_port) == port:
            return version, name
    raise AssertionError(f"no local PostgreSQL cluster on port {port}: {out!r}")


def _pg_ctl(action: str) -> None:
    version, name = _cluster()
    subprocess.run(["pg_ctlcluster", version, name, action, *(["-m", "fast"] if action == "stop" else [])], check=True)


def test_requests_answer_503_while_the_database_is_down_and_recover(platform, org):
    assert platform.settings.database_url.startswith("postgresql"), "run with FATHOM_TEST_DATABASE=postgres"
    v3 = Client(platform.base_url, org.key, header="Authorization")
    model_id = register_detector(platform.settings, org.org_id, ["glitch"])
    assert org.get("/api/v1/datasets").status_code == 200 and v3.get("/api/v3/custom_models").status_code == 200

    _pg_ctl("stop")
    try:
        t0 = time.monotonic()
        v1_down = org.get("/api/v1/datasets", timeout=30)
        v3_down = v3.get("/api/v3/custom_models", timeout=30)
        post_down = org.post("/api/v1/inference-jobs", json={"model_id": model_id}, timeout=30)
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - t0)))
    finally:
        _pg_ctl("start")

    for r in (v1_down, post_down):
        assert r.status_code == 503 and set(r.json()) == {"detail"} and int(r.headers["Retry-After"]) > 0, r.text
    assert v3_down.status_code == 503, v3_down.text
    body = v3_down.json()
    assert body["error_code"] == "SERVICE_UNAVAILABLE" and set(body) == {"error", "message", "error_code", "details"}

    # Recovery needs nobody: the next requests succeed, and the dispatcher processes new work.
    wait_for(lambda: org.get("/api/v1/datasets").status_code == 200, timeout=60, interval=1, what="v1 after the outage")
    assert v3.get("/api/v3/custom_models").status_code == 200
    job_id = org.post("/api/v1/inference-jobs", json={"model_id": model_id}).json()["id"]
    data = encode_audio(make_clip(4000, duration_s=4.0).waveform, 16_000, "wav")
    file_id = upload_inference_file(org, job_id, data, "after.wav")
    done = wait_for(
        lambda: (f := org.get(f"/api/v1/inference-jobs/{job_id}/files/{file_id}").json())["status"] in ("completed", "failed") and f,
        timeout=120,
        what="inference after the outage",
    )
    assert done["status"] == "completed", done
    assert requests.get(f"{platform.base_url}/healthz", timeout=10).status_code == 200
