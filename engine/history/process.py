"""The archiver in a process of its own, started and watched by `sendgate run`.

``[history] archiver``: ``"inline"`` runs the archiver as a task on the engine's
event loop (the SQLite default: one file, the demo); ``"process"`` runs it as a
child process at a lower CPU priority (``nice`` + ``[history] nice``), so its
fold and store writes (~8 µs of CPU per event) never hold up the engine's loop;
``"auto"`` (the default) means ``"process"`` for PostgreSQL and ``"inline"``
otherwise.

Trade-off: the child is one more process (~40 MB resident, its own Redis and
database connections); at a lower priority it yields the CPU to the engine when
the machine is full, so at peaks the archive runs further behind (events wait
in the stream: ``sendgate_archive_lag`` says how far) and catches up after.
The engine keeps reporting the lag (metric and ``/readyz``) from the group's
position; the child's own counters (``sendgate_archived_events``,
``sendgate_archive_write_failures``) are not in the engine's ``/metrics``: its
log says when the store fails and comes back. The child dies with the engine
(``PR_SET_PDEATHSIG``) and is restarted by it when it exits on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import sys
from multiprocessing.process import BaseProcess
from typing import Any

from engine.config import Settings

__all__ = ["ArchiverProcess", "runs_apart"]

log = logging.getLogger("sendgate.history")


def runs_apart(settings: Settings) -> bool:
    """Whether `sendgate run` archives in a child process (see the module docstring)."""
    mode = settings.history.archiver
    if mode == "auto":
        return settings.history.url.startswith(("postgresql://", "postgres://"))
    return mode == "process"


def _die_with_parent() -> None:
    """Linux: SIGTERM when the engine goes, however it goes (kill -9 too)."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _child(settings: Settings, redis_url: str, niceness: int, started: Any) -> None:  # pragma: no cover - in the child
    _die_with_parent()
    with contextlib.suppress(OSError):
        os.nice(niceness)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the engine, which stops us
    from engine.cli import run_loop
    from engine.history.cli import archive_main
    from privacy_hooks import configure_logging

    configure_logging(
        settings.logging.level, settings.logging.format, settings.logging.file or None,
        retention_days=settings.privacy.retention_days.activity_log, rotate="external",
    )
    # set once imported, the group there and the store migrated: the engine starts sending then
    raise SystemExit(run_loop(archive_main(settings, redis_url=redis_url, started=started.set)))


class ArchiverProcess:
    """One archiver child of this engine: start, restart when it exits, stop."""

    def __init__(self, settings: Settings, redis_url: str, *, restart_s: float = 2.0) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.niceness = settings.history.nice
        self.restart_s = restart_s
        self.process: BaseProcess | None = None
        self.starts = 0
        self._stopping = False
        self._started: Any = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def start(self) -> None:
        ctx: Any = multiprocessing.get_context("spawn")  # no forked copy of the engine's loop and sockets
        self._started = ctx.Event()
        proc = ctx.Process(
            target=_child, args=(self.settings, self.redis_url, self.niceness, self._started),
            name="sendgate-archiver", daemon=True,
        )
        proc.start()
        self.process = proc
        self.starts += 1
        log.info("archiver: started as process %s (nice +%d)", proc.pid, self.niceness)

    async def wait_started(self, timeout_s: float = 10.0) -> bool:
        """Wait until the child has imported what it runs and connected (~0.5 s of CPU),
        so that its start-up does not compete with the engine's first batches; False on timeout."""
        event = self._started
        if event is None:
            return False
        return bool(await asyncio.to_thread(event.wait, timeout_s))

    async def watch(self) -> None:
        """Restart the child when it exits on its own (a crash, an OOM kill), until `stop()`."""
        while not self._stopping:
            await asyncio.sleep(0.5)
            if self._stopping or self.alive():
                continue
            code = self.process.exitcode if self.process is not None else None
            log.warning("archiver: process exited (code %s); restarting in %.0f s", code, self.restart_s)
            await asyncio.sleep(self.restart_s)
            if not self._stopping:
                self.start()

    async def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (the child finishes and acks the batch in hand), then SIGKILL after ``timeout_s``:
        entries it had read and not acked stay pending and are archived on the next start."""
        self._stopping = True
        proc = self.process
        if proc is None or not proc.is_alive():
            return
        proc.terminate()
        await asyncio.to_thread(proc.join, timeout_s)
        if proc.is_alive():
            log.warning("archiver: process %s did not stop within %.0f s; killed", proc.pid, timeout_s)
            proc.kill()
            await asyncio.to_thread(proc.join, 5.0)
