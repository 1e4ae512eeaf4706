"""``make run``: a local Ray head, the Fathom Serve app, and a dev organization with an API key.

With ``FATHOM_RAY_ADDRESS`` (or ``RAY_ADDRESS``) set it deploys onto that cluster instead of
starting one. SIGINT (Ctrl-C), SIGTERM or SIGHUP, whenever it arrives, stops what it started:
Serve (bounded), then the head's whole process tree, and returns once the head's ports are free.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from cluster.head import enable_token_auth, launch_head, stop_head, wait_for_head
from schemas.settings import Settings

DEV_KEY_FILE = "dev_api_key"
SERVE_STOP_TIMEOUT_S = 5.0  # in-flight requests get this long; queued work waits in the database
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
T = TypeVar("T")
# Logical CPUs the local head advertises at least. Ray's CPU counts are scheduling tokens: the
# Detector and Transcriber replicas (1 each, more when autoscaled), 2 Ray Train workers and the
# Data tasks of preprocessing must all be placeable at once, or on a 2-core laptop the two
# replicas hold both tokens and preprocessing and training wait forever. They share the real
# cores; each pins its torch threads to its token.
MIN_LOCAL_CPUS = 8


def local_num_cpus(settings: Settings) -> int:
    return settings.ray_head_num_cpus or max(os.cpu_count() or 1, MIN_LOCAL_CPUS)


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


class StopRequested(BaseException):
    """Raised in the main thread by the first stop signal, wherever it is (``serve.run``, the head
    start loop). A BaseException, so that no ``except Exception`` on the way swallows it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP all become one orderly stop.

    The first signal raises :class:`StopRequested`; later ones (an impatient second Ctrl-C)
    only say that the stop is under way, so they can never cut the cleanup short. Inside
    :meth:`deferred` the first signal waits until the block is done (a started process must
    be recorded before the stop path looks for it).
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self.stopping = False
        self._deferring = 0

    def install(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        # ray.init puts abseil's failure handler on SIGTERM; it passes the signal on to this
        # one, but first arms a 3 s alarm that aborts the process, stop path or not.
        signal.alarm(0)
        if self.stopping:
            say(f"{signal.Signals(signum).name}: already stopping")
            return
        self.received = self.received or signum
        if not self._deferring:
            self.stopping = True
            raise StopRequested(self.received)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
        if self.received is not None and not self._deferring and not self.stopping:
            self.stopping = True
            raise StopRequested(self.received)

    def wait(self) -> None:
        while True:  # a handler raises out of this
            time.sleep(1)


def off_main_thread(fn: Callable[[], T]) -> T:
    """``fn()`` in a helper thread, waited for: the main thread stays interruptible, and ``fn``
    cannot replace its Python signal handlers (``ray.init`` on the main thread installs a SIGTERM
    handler of its own, a bare ``sys.exit`` that bypasses this stop path)."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as e:  # noqa: BLE001 - re-raised on the main thread
            error.append(e)

    thread = threading.Thread(target=target, name="fathom-start", daemon=True)
    thread.start()
    thread.join()  # a stop signal raises out of the join
    if error:
        raise error[0]
    return result[0]


class _NoSigtermNotice(logging.Filter):
    """Ray notes that it did not set its SIGTERM handler off the main thread: on purpose here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()


def say(message: str) -> None:
    """Print that never fails: after SIGHUP the terminal may be gone, and the stop must go on."""
    with contextlib.suppress(OSError, ValueError, RuntimeError):  # RuntimeError: print re-entered by a handler
        print(message, flush=True)


def shutdown_serve(timeout_s: float = SERVE_STOP_TIMEOUT_S) -> None:
    """``serve.shutdown`` bounded: replicas get ``timeout_s`` to finish, then the head stops anyway.

    A file claimed but not finished stays ``processing`` with its lease, and the next start's
    dispatcher claims it again once the lease expires (cluster/queue.py).
    """
    from ray import serve

    async def bounded() -> None:
        await asyncio.wait_for(serve.shutdown_async(), timeout_s)

    try:
        asyncio.run(bounded())
    except TimeoutError:
        say(f"  Serve did not stop within {timeout_s:.0f}s; stopping the Ray head anyway")


def stop_all(signals: StopSignals, head: subprocess.Popen | None, settings: Settings | None) -> None:
    """The one stop path: Serve, this driver's Ray connection, then the head and its processes."""
    import ray

    signals.stopping = True
    started = time.monotonic()
    say("\nstopping Fathom ...")
    try:
        if ray.is_initialized():
            try:
                shutdown_serve()
            except Exception as e:  # noqa: BLE001 - the head must stop whatever Serve does
                say(f"  Serve shutdown failed: {e!r}")
            ray.shutdown()
            say(f"  Serve and driver stopped ({time.monotonic() - started:.1f}s)")
    finally:
        if head is not None:
            stop_head(head, settings)
        if settings is not None:
            from cluster.db import get_engine

            get_engine(settings.database_url).dispose()
        say(f"Fathom stopped ({time.monotonic() - started:.1f}s)")


# make run serves one machine: webhooks may reach receivers on it (a deployment allows neither).
LOCAL_DEFAULTS = {"FATHOM_WEBHOOK_ALLOW_HTTP": "true", "FATHOM_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128"}


def main() -> int:
    signals = StopSignals()
    head = None
    settings = None
    try:
        signals.install()  # before anything starts: every later moment has an orderly stop
        for name, value in LOCAL_DEFAULTS.items():
            os.environ.setdefault(name, value)
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
        if address is None:
            with signals.deferred():
                head = launch_head(settings, [f"--num-cpus={local_num_cpus(settings)}"])
            say(f"starting Ray head on port {settings.ray_head_port} (pid {head.pid})")
            wait_for_head(head, settings)
            address = f"127.0.0.1:{settings.ray_head_port}"
        logging.getLogger("ray._private.worker").addFilter(_NoSigtermNotice())
        off_main_thread(lambda: ray.init(address=address, log_to_driver=False))
        signals.install()  # in place of the failure handler ray.init put on SIGTERM
        say("deploying Fathom")
        serve.start(http_options={"host": settings.http_host, "port": settings.http_port})
        serve.run(build_app(AppArgs()), name=APP_NAME, route_prefix="/")
        key = ensure_dev_key(settings)
        print("\nFathom is running")
        print(f"  API        {settings.public_url}   (docs: {settings.public_url}/docs)")
        print(f"  pages      {settings.public_url}/ui/   (sign in with the API key below)")
        print(f"  dashboard  {settings.dashboard_url}")
        print(f"  database   {settings.database_url}")
        if key:
            print(f"  API key    {key}   (saved in {settings.data_dir / DEV_KEY_FILE})")
        else:
            print("  API key    (organizations exist; create keys with python -m cluster.admin)")
        print("Ctrl-C stops it.", flush=True)
        signals.wait()
    except StopRequested as stop:
        say(f"\n{stop} received")
    finally:
        stop_all(signals, head, settings)
    return 0


def exit_now(code: int) -> None:
    """Exit without the interpreter's teardown of torch and Ray's native modules, which takes
    seconds on a busy machine and releases nothing the OS does not: by now everything this
    process started is stopped and its database connections are closed."""
    logging.shutdown()
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
