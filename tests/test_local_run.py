"""``make run`` (``python -m cluster.local``) stops everything it started, whenever it is stopped.

Each start uses the same free ports and data dir as the one before, and begins the moment
the previous process has exited: a head process or port left behind makes it fail.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests

from cluster.head import SERVE_CONTROL_LOOP_S, head_processes, port_free
from cluster.local import STOP_SIGNALS, StopRequested, StopSignals, off_main_thread
from tests.factories import free_port

ROOT = Path(__file__).resolve().parents[1]
STOP_TIMEOUT_S = 60  # far above the expected stop: a hang fails the test rather than the suite
UP_TIMEOUT_S = 300  # a full deploy on a loaded 2-core machine


class LocalRun:
    """One ``python -m cluster.local`` process and the lines it prints."""

    def __init__(self, env: dict[str, str]):
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "cluster.local"], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.head_pid: int | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            if m := re.search(r"starting Ray head on port \d+ \(pid (\d+)\)", line):
                self.head_pid = int(m.group(1))
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = UP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if text in self.lines.get(timeout=max(0.0, deadline - time.monotonic())):
                    return
            except queue.Empty:
                break
            if self.proc.poll() is not None and self.lines.empty():
                break
        raise AssertionError(f"no {text!r} line within {timeout}s (exit {self.proc.poll()}):\n{self.tail()}")

    def stop(self, *signums: int) -> float:
        """Send the signals (a repeated one like an impatient Ctrl-C); seconds until the process exited."""
        sent = time.monotonic()
        for signum in signums:
            self.proc.send_signal(signum)
            time.sleep(0.2)
        try:
            rc = self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {STOP_TIMEOUT_S}s after {signums}:\n{self.tail()}") from None
        took = time.monotonic() - sent
        time.sleep(0.2)  # the reader thread takes the last lines
        assert rc == 0, self.tail()
        assert "Fathom stopped" in "".join(self.output), self.tail()
        return took

    def kill(self) -> None:
        """After a failure: this process and its head's processes only (never another Ray)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.head_pid is not None:
            for p in head_processes(self.head_pid):
                with contextlib.suppress(psutil.Error):
                    p.kill()

    def phases(self) -> str:
        """The stop's own account of its phases, e.g. 'Serve and driver 5.3s, all 8.8s'."""
        out = "".join(self.output)
        found = [re.search(pattern, out) for pattern in (r"Serve and driver stopped \(([\d.]+)s\)", r"Fathom stopped \(([\d.]+)s\)")]
        return ", ".join(f"{name} {m.group(1)}s" for name, m in zip(("Serve and driver", "all"), found) if m)

    def tail(self) -> str:
        return "".join(self.output[-40:])


@pytest.fixture
def run_env(tmp_path, private_database_url) -> dict[str, str]:
    """``make run``'s settings on free ports, its own data dir and the pass's database kind."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FATHOM_") and k != "RAY_ADDRESS"}
    env.update(
        FATHOM_DATA_DIR=str(tmp_path / "data"),
        FATHOM_DATABASE_URL=private_database_url,
        FATHOM_HTTP_PORT=str(free_port()),
        FATHOM_RAY_HEAD_PORT=str(free_port()),
        FATHOM_DASHBOARD_PORT=str(free_port()),
        FATHOM_RAY_DASHBOARD_AGENT_PORT=str(free_port()),
        FATHOM_RAY_CLIENT_SERVER_PORT=str(free_port()),
        FATHOM_RAY_METRICS_EXPORT_PORT=str(free_port()),
        FATHOM_USE_GPU="false",
        RAY_AUTH_MODE="token",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    return env


def assert_all_gone(run: LocalRun, env: dict[str, str]) -> None:
    assert run.head_pid is not None, run.tail()
    left = [p for p in head_processes(run.head_pid) if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, [(p.pid, p.name()) for p in left]
    ports = {name: int(env[name]) for name in env if name.endswith("_PORT") and name.startswith("FATHOM_")}
    assert all(port_free(port) for port in ports.values()), {n: p for n, p in ports.items() if not port_free(p)}


def test_signal_at_any_moment_stops_everything_and_the_next_start_succeeds(run_env, capsys):
    base_url = f"http://127.0.0.1:{run_env['FATHOM_HTTP_PORT']}"
    runs: list[LocalRun] = []
    try:
        # Head starting: the signal comes right after `ray start --head` was launched.
        runs.append(first := LocalRun(run_env))
        first.wait_for("starting Ray head")
        first.stop(signal.SIGTERM)
        assert_all_gone(first, run_env)

        # App deploying.
        runs.append(deploying := LocalRun(run_env))
        deploying.wait_for("deploying Fathom")
        deploying.stop(signal.SIGTERM)
        assert_all_gone(deploying, run_env)

        # Running, serving requests.
        runs.append(running := LocalRun(run_env))
        running.wait_for("Fathom is running")
        assert requests.get(f"{base_url}/healthz", timeout=30).status_code == 200
        # The Serve controller reconciles at the head's slower period (its default 10 Hz loop was an idle laptop's largest cost).
        controller = [p for p in head_processes(running.head_pid) if "ServeController" in " ".join(p.cmdline())]
        assert len(controller) == 1, [p.cmdline()[:1] for p in head_processes(running.head_pid)]
        assert controller[0].environ().get("RAY_SERVE_CONTROL_LOOP_INTERVAL_S") == SERVE_CONTROL_LOOP_S
        took = running.stop(signal.SIGTERM)
        assert_all_gone(running, run_env)

        # The start after a stop while running; Ctrl-C twice stops it just as completely.
        runs.append(last := LocalRun(run_env))
        last.wait_for("Fathom is running")
        assert requests.get(f"{base_url}/healthz", timeout=30).status_code == 200
        took_ctrl_c = last.stop(signal.SIGINT, signal.SIGINT)
        assert "already stopping" in "".join(last.output), last.tail()
        assert_all_gone(last, run_env)
        with capsys.disabled():
            print(f"\nmake run stop time (signal -> exit): SIGTERM {took:.1f}s ({running.phases()}), "
                  f"Ctrl-C twice {took_ctrl_c:.1f}s ({last.phases()}), load average {os.getloadavg()[0]:.1f}")
    finally:
        for run in runs:
            run.kill()


def test_second_signal_never_interrupts_the_stop():
    signals = StopSignals()
    alarms = []
    saved = signal.signal(signal.SIGALRM, lambda *_: alarms.append(1))
    try:
        signal.alarm(1)  # as abseil's failure handler arms it before passing SIGTERM on
        with pytest.raises(StopRequested, match="SIGTERM"):
            signals._handle(signal.SIGTERM, None)
        time.sleep(1.3)
        assert not alarms  # the abort alarm is cancelled: the stop path may take longer
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, saved)
    signals._handle(signal.SIGINT, None)  # the stop path runs on undisturbed
    signals._handle(signal.SIGHUP, None)
    assert signals.stopping


def test_signal_while_deferred_stops_once_the_block_is_done():
    signals = StopSignals()
    done = []
    with pytest.raises(StopRequested, match="SIGHUP"):
        with signals.deferred():
            signals._handle(signal.SIGHUP, None)
            done.append("block finished")  # e.g. the head's Popen recorded
    assert done == ["block finished"]
    assert signals.stopping


def test_a_start_step_off_the_main_thread_keeps_the_handlers_and_stays_interruptible():
    """How ``ray.init`` runs: off the main thread it installs no SIGTERM handler of its own, and a
    SIGTERM meanwhile still reaches the stop path at once."""
    saved = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    signals = StopSignals()
    try:
        signals.install()
        assert off_main_thread(lambda: threading.current_thread() is threading.main_thread()) is False
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
        started = time.monotonic()
        with pytest.raises(StopRequested, match="SIGTERM"):
            off_main_thread(lambda: time.sleep(5))
        assert time.monotonic() - started < 3
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
