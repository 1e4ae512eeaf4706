"""``make run``: a local Ray head, the Fathom Serve app, and a dev organization with an API key.

With ``FATHOM_RAY_ADDRESS`` (or ``RAY_ADDRESS``) set it deploys onto that cluster instead of
starting one. Ctrl-C stops what it started.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from schemas.settings import Settings

DEV_KEY_FILE = "dev_api_key"
HEAD_START_TIMEOUT_S = 60
# Logical CPUs the local head advertises at least. Ray's CPU counts are scheduling tokens: the
# Detector and Transcriber replicas (1 each, more when autoscaled), 2 Ray Train workers and the
# Data tasks of preprocessing must all be placeable at once, or on a 2-core laptop the two
# replicas hold both tokens and preprocessing and training wait forever. They share the real
# cores; each pins its torch threads to its token.
MIN_LOCAL_CPUS = 8


def local_num_cpus(settings: Settings) -> int:
    return settings.ray_head_num_cpus or max(os.cpu_count() or 1, MIN_LOCAL_CPUS)


def ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


def enable_token_auth() -> None:
    """Ray token authentication for the head and every client this process starts.

    The token lives in ~/.ray/auth_token (made here when missing); shells that run
    ``ray job submit`` against this cluster need ``RAY_AUTH_MODE=token`` as well.
    """
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    if os.environ["RAY_AUTH_MODE"] == "token" and not (Path.home() / ".ray" / "auth_token").exists():
        subprocess.run([ray_cli(), "get-auth-token", "--generate"], check=True, capture_output=True)


def start_head(settings: Settings, extra_args: Sequence[str] = ()) -> subprocess.Popen:
    """``ray start --head --block`` on the configured ports, in its own process group.

    Stopping that group stops exactly this head (``ray stop`` would stop every Ray
    on the machine). Ray processes inherit the FATHOM_* environment. Every fixed port
    is a setting, so several heads (``make run`` beside ``make test``) can share a machine.
    """
    cmd = [
        ray_cli(),
        "start",
        "--head",
        "--block",
        f"--port={settings.ray_head_port}",
        f"--dashboard-host={settings.dashboard_host}",
        f"--dashboard-port={settings.dashboard_port}",
        f"--dashboard-agent-listen-port={settings.ray_dashboard_agent_port}",
        f"--ray-client-server-port={settings.ray_client_server_port}",
        "--disable-usage-stats",
        *extra_args,
    ]
    head = subprocess.Popen(cmd, env=os.environ.copy(), start_new_session=True)
    gcs = f"127.0.0.1:{settings.ray_head_port}"
    for _ in range(HEAD_START_TIMEOUT_S):
        if head.poll() is not None:
            raise RuntimeError(f"ray start --head exited with {head.returncode}; is port {settings.ray_head_port} free?")
        probe = subprocess.run([ray_cli(), "status", f"--address={gcs}"], capture_output=True)
        if probe.returncode == 0:
            return head
        time.sleep(1)
    stop_head(head)
    raise RuntimeError(f"the Ray head did not come up on {gcs} within {HEAD_START_TIMEOUT_S}s")


def stop_head(head: subprocess.Popen) -> None:
    try:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)


def ensure_dev_key(settings: Settings) -> str | None:
    """On first start: one organization and one API key, saved to data_dir for local use only."""
    from sqlalchemy import func, select

    from cluster.accounts import create_api_key, create_organization
    from cluster.db import session_scope
    from cluster.tables import Organization

    key_file = settings.data_dir / DEV_KEY_FILE
    with session_scope(settings.database_url) as s:
        if s.scalar(select(func.count()).select_from(Organization)):
            return key_file.read_text().strip() if key_file.exists() else None
        org = create_organization(s, "dev")
        _, key = create_api_key(s, org.id, "dev")
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    return key


def main() -> int:
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    os.environ.update(settings.to_env())
    enable_token_auth()  # before Ray reads its config
    # Ray processes (and `ray job submit -- python ...` entrypoints) use this environment's Python.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"

    import ray
    from ray import serve

    from cluster.db import init_schema
    from serve_app.app import APP_NAME, AppArgs, build_app

    init_schema(settings.database_url)
    address = settings.ray_address or os.environ.get("RAY_ADDRESS")
    head = None
    if address is None:
        head = start_head(settings, [f"--num-cpus={local_num_cpus(settings)}"])
        address = f"127.0.0.1:{settings.ray_head_port}"
    ray.init(address=address, log_to_driver=False)
    try:
        serve.start(http_options={"host": settings.http_host, "port": settings.http_port})
        serve.run(build_app(AppArgs()), name=APP_NAME, route_prefix="/")
        key = ensure_dev_key(settings)
        print("\nFathom is running")
        print(f"  API        {settings.public_url}   (docs: {settings.public_url}/docs)")
        print(f"  dashboard  {settings.dashboard_url}")
        print(f"  database   {settings.database_url}")
        if key:
            print(f"  API key    {key}   (saved in {settings.data_dir / DEV_KEY_FILE})")
        else:
            print("  API key    (organizations exist; create keys with python -m cluster.admin)")
        print("Ctrl-C stops it.", flush=True)
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        while not stop:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        print("\nstopping Fathom ...", flush=True)
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            if head is not None:
                stop_head(head)
    return 0


if __name__ == "__main__":
    sys.exit(main())
