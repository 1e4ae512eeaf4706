"""A local Ray head owned by one process: started on the configured ports, stopped completely.

``make run`` and the test suite each start one. Stopping must leave nothing behind: the head's
processes (gcs_server, raylet, dashboard, the workers they spawned) outlive ``ray start --block``
for a while, and the next start fails while any of them holds a port. So stopping waits for the
whole process tree, bounded, then kills what is left, and checks the head's ports are free.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

from schemas.settings import Settings

log = logging.getLogger("fathom.head")

HEAD_START_TIMEOUT_S = 60
HEAD_STOP_TIMEOUT_S = 5.0  # SIGTERM to the head's processes, then SIGKILL to whatever is left
KILL_REAP_TIMEOUT_S = 5.0  # a SIGKILLed process is gone within this unless stuck in the kernel
PORT_FREE_TIMEOUT_S = 5.0  # after the processes: sockets closing in the kernel
POLL_S = 0.2  # seconds between scans of the process table
SERVE_CONTROL_LOOP_S = "0.5"  # s, the Serve controller's reconcile period on a head started here


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


def head_ports(settings: Settings) -> list[int]:
    """The fixed ports of a local head: each is a setting, so several heads can share a machine."""
    return [
        settings.ray_head_port, settings.dashboard_port, settings.ray_dashboard_agent_port, settings.ray_client_server_port,
        settings.ray_metrics_export_port,
    ]


def launch_head(settings: Settings, extra_args: Sequence[str] = ()) -> subprocess.Popen:
    """``ray start --head --block`` on the configured ports, in its own session; returns at once.

    Its own session keeps a terminal's Ctrl-C away from it (the owner stops it in order) and
    names exactly this head's processes (``ray stop`` would stop every Ray on the machine).
    Ray processes inherit the FATHOM_* environment.
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
        f"--metrics-export-port={settings.ray_metrics_export_port}",
        "--disable-usage-stats",
        *extra_args,
    ]
    # On SIGTERM a head first drains its node (up to 30 s) so other nodes' proxies can stop
    # routing to it; a local head has no other node, so it stops at once. Serve's controller
    # reconciles every 0.1 s by default: on an idle laptop that loop and the GCS calls it makes
    # were the largest idle cost (6.9 % of a core of 22.6 %, bench/idle.py); every 0.5 s they take
    # 2.5 %, and replicas still start and scale within a second. A value already set wins.
    env = {
        "RAY_SERVE_CONTROL_LOOP_INTERVAL_S": SERVE_CONTROL_LOOP_S,
        **os.environ,
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
    }
    return subprocess.Popen(cmd, env=env, start_new_session=True)


def wait_for_head(head: subprocess.Popen, settings: Settings) -> None:
    """Block until the head answers ``ray status``; raises when it exits or does not come up."""
    gcs = f"127.0.0.1:{settings.ray_head_port}"
    deadline = time.monotonic() + HEAD_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if head.poll() is not None:
            busy = [p for p in head_ports(settings) if not port_free(p)]
            raise RuntimeError(f"ray start --head exited with {head.returncode}; ports in use: {busy or 'none'}")
        if subprocess.run([ray_cli(), "status", f"--address={gcs}"], capture_output=True).returncode == 0:
            return
        time.sleep(1)
    raise RuntimeError(f"the Ray head did not come up on {gcs} within {HEAD_START_TIMEOUT_S}s")


def start_head(settings: Settings, extra_args: Sequence[str] = ()) -> subprocess.Popen:
    """Launch a head and wait for it; stops it again when it does not come up."""
    head = launch_head(settings, extra_args)
    try:
        wait_for_head(head, settings)
    except BaseException:
        stop_head(head, settings)
        raise
    return head


def stop_head(head: subprocess.Popen, settings: Settings, timeout_s: float = HEAD_STOP_TIMEOUT_S) -> None:
    """Stop every process of this head and wait until its ports are free (bounded throughout).

    SIGTERM goes to the whole tree at once (``ray start`` stops its own children too), and to
    any process that joins it meanwhile (a head still starting spawns more); what is alive
    after ``timeout_s`` gets SIGKILL.
    """
    deadline = time.monotonic() + timeout_s
    signalled: dict[int, psutil.Process] = {}
    while True:
        head.poll()  # reap ray start itself
        for p in head_processes(head.pid):
            if p.pid not in signalled:
                signalled[p.pid] = p
                with contextlib.suppress(psutil.Error):
                    p.terminate()
        left = [p for p in signalled.values() if _alive(p)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(POLL_S)
    if left:
        log.warning("Ray head: %d processes still running after %.0fs; killing them", len(left), timeout_s)
        for p in left:
            with contextlib.suppress(psutil.Error):
                p.kill()
        stuck = _wait_gone(head, left, KILL_REAP_TIMEOUT_S)
        if stuck:
            log.warning("Ray head: processes %s did not exit after SIGKILL", sorted(p.pid for p in stuck))
    with contextlib.suppress(subprocess.TimeoutExpired):
        head.wait(timeout=KILL_REAP_TIMEOUT_S)
    wait_ports_free(head_ports(settings), PORT_FREE_TIMEOUT_S)


def head_processes(head_pid: int) -> list[psutil.Process]:
    """The head's process tree: its descendants and every process of its session.

    Ray workers may leave the head's process group, and a process whose parent died is
    re-parented to init, so neither the group nor the tree alone finds them all; the session
    (``start_new_session``: its id is the head's pid) keeps them.
    """
    found: dict[int, psutil.Process] = {}
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(head_pid)
        found.update({p.pid: p for p in [root, *root.children(recursive=True)]})
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if p.pid not in found and os.getsid(p.pid) == head_pid:
                found[p.pid] = p
    return list(found.values())


def _wait_gone(head: subprocess.Popen, procs: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """The processes still alive after ``timeout_s`` (zombies count as gone: they hold no ports)."""
    deadline = time.monotonic() + timeout_s
    while True:
        head.poll()
        left = [p for p in procs if _alive(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(POLL_S)


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def port_free(port: int) -> bool:
    """True when a server could listen on ``port`` now (SO_REUSEADDR, as Ray's servers bind)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", port))
        except OSError:
            return False
    return True


def wait_ports_free(ports: Sequence[int], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    busy = [p for p in ports if not port_free(p)]
    while busy and time.monotonic() < deadline:
        time.sleep(POLL_S)
        busy = [p for p in busy if not port_free(p)]
    if busy:
        log.warning("ports %s are still in use after the Ray head stopped (another process holds them)", busy)
