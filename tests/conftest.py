"""One real local Ray cluster and one deployed Fathom app per test session.

``FATHOM_TEST_DATABASE`` picks the metadata database: ``sqlite`` (default) or
``postgres`` (a fresh database on the local server, dropped afterwards; the server's
URL comes from ``FATHOM_TEST_POSTGRES_URL``, default postgresql://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# Ray token authentication, as `make run` uses it; set before Ray is first imported, which
# reads the mode once. The head, this driver and `ray job submit` children share ~/.ray/auth_token.
os.environ.setdefault("RAY_AUTH_MODE", "token")
# Every process reports its metrics every 2 s instead of 10 s: test_metrics waits for them.
os.environ.setdefault("RAY_metrics_report_interval_ms", "2000")

from tests.factories import DASHBOARD_ORIGIN, Client, free_port, new_org  # noqa: E402

# tests/postgres/ stops and starts the PostgreSQL server: collected only in the PostgreSQL pass.
collect_ignore = [] if os.environ.get("FATHOM_TEST_DATABASE") == "postgres" else ["postgres"]

WEBHOOK_TEST_SCHEDULE_S = [0.0, 1.0, 2.0, 2.0]
RAY_TEST_CPUS = 8  # logical CPUs: two apps' Serve replicas, 2 Train workers and Data tasks share 2 cores


@dataclass
class Platform:
    base_url: str
    settings: object
    dashboard_url: str

    def org(self, name: str = "org", **kw) -> Client:
        return new_org(self.settings.database_url, self.base_url, name, **kw)


def _postgres_database() -> Iterator[str]:
    import psycopg

    server = os.environ.get("FATHOM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    name = f"fathom_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = server.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        from cluster.db import get_engine

        get_engine.cache_clear()
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _fresh_database(tmp_path_factory) -> Iterator[str]:
    kind = os.environ.get("FATHOM_TEST_DATABASE", "sqlite")
    if kind == "postgres":
        yield from _postgres_database()
    elif kind == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'fathom.db'}"
    else:
        raise ValueError(f"FATHOM_TEST_DATABASE={kind!r}; valid values are 'sqlite' and 'postgres'")


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> Iterator[str]:
    """The deployed app's database."""
    yield from _fresh_database(tmp_path_factory)


@pytest.fixture(scope="module")
def private_database_url(tmp_path_factory) -> Iterator[str]:
    """A database no running dispatcher polls, for tests that drive the queue by hand."""
    yield from _fresh_database(tmp_path_factory)


@pytest.fixture(scope="session")
def settings_overrides(database_url, tmp_path_factory) -> dict:
    """Settings of the deployed app; exported as FATHOM_* before Ray starts so Ray Jobs inherit them."""
    dashboard_port = free_port()
    return {
        "data_dir": str(tmp_path_factory.mktemp("fathom-data")),
        "database_url": database_url,
        "http_port": free_port(),
        "dashboard_port": dashboard_port,
        "dashboard_url": f"http://127.0.0.1:{dashboard_port}",
        "min_training_audio_s": 120.0,
        "stt_min_training_hours": 0.001,  # 3.6 s: a couple of short synthetic utterances
        "stt_rate_data_uploads": "100/hour",  # test_stt_flow uploads 88 pairs into one model; the rest as documented
        "use_gpu": False,
        "cors_allowed_origins": [DASHBOARD_ORIGIN],  # a customer's dashboard on another origin
        # Webhook receivers run in the tests, on loopback; retries seconds apart instead of minutes.
        "webhook_allow_http": True,
        "webhook_allowed_networks": ["127.0.0.0/8"],
        "webhook_retry_schedule_s": WEBHOOK_TEST_SCHEDULE_S,
        "webhook_timeout_s": 4.0,
        "webhook_lease_s": 8.0,
        "ui_test_hooks": True,  # the pages expose their state to the browser tests
    }


@pytest.fixture(scope="session")
def ray_cluster(settings_overrides):
    import ray

    from cluster.head import enable_token_auth, start_head, stop_head
    from schemas.settings import Settings

    # Ray processes (raylet, job drivers) inherit the environment at start-up: FATHOM_* so a
    # `ray job submit` entrypoint finds this deployment, PATH so `python` is this interpreter.
    saved = dict(os.environ)
    os.environ.update(Settings(**settings_overrides).to_env())
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    enable_token_auth()
    settings = Settings(
        **settings_overrides, ray_head_port=free_port(), ray_dashboard_agent_port=free_port(), ray_client_server_port=free_port(),
        ray_metrics_export_port=free_port(),
    )
    try:
        head = start_head(
            settings,
            [f"--num-cpus={RAY_TEST_CPUS}", "--num-gpus=0", "--include-dashboard=true", f"--object-store-memory={1 << 30}"],
        )
    finally:
        for name in [n for n in os.environ if n.startswith("FATHOM_")]:
            del os.environ[name]
        os.environ["PATH"] = saved["PATH"]
        os.environ.update({k: v for k, v in saved.items() if k.startswith("FATHOM_")})
    try:
        ctx = ray.init(address=f"127.0.0.1:{settings.ray_head_port}", log_to_driver=False)
        ctx.head_session_id = head.pid  # every process of this cluster runs in the head's session
        ctx.metrics_url = f"http://127.0.0.1:{settings.ray_metrics_export_port}/metrics"  # Ray's Prometheus endpoint
        yield ctx
        from ray import serve

        serve.shutdown()
        ray.shutdown()
    finally:
        stop_head(head, settings)


@pytest.fixture(scope="session")
def platform(ray_cluster, settings_overrides) -> Platform:
    from ray import serve

    from serve_app.app import APP_NAME, AppArgs, build_app

    port = settings_overrides["http_port"]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    args = AppArgs(settings=settings_overrides)
    serve.run(build_app(args), name=APP_NAME, route_prefix="/")
    return Platform(
        base_url=f"http://127.0.0.1:{port}", settings=args.build_settings(), dashboard_url=settings_overrides["dashboard_url"]
    )


@pytest.fixture
def org(platform) -> Client:
    return platform.org(f"org-{uuid.uuid4().hex[:6]}")


@pytest.fixture
def other_org(platform) -> Client:
    return platform.org(f"other-{uuid.uuid4().hex[:6]}")


@pytest.fixture
def browser():
    """Debian's Chromium, headless, driven by Playwright (no browser download). Per test: while
    Playwright's sync API runs, its event loop counts as running in this thread, which Serve
    handles' blocking ``.result()`` refuses."""
    from tests.browser import chromium

    with chromium() as b:
        yield b
