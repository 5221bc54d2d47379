"""A private PostgreSQL: ``initdb`` + ``pg_ctl`` on a free loopback port (tests and benches).

Found on PATH or under /usr/lib/postgresql/*/bin. As root the server runs as
the ``postgres`` user (PostgreSQL refuses root), in a temporary directory
given to that user. A watchdog process stops the server and removes the
directory when the test process goes away without its finalizer (killed,
crashed), so no stray postmaster outlives a run.

The tests' server (``start_private_server()``, the default settings) is
fast and not durable: ``fsync``, ``synchronous_commit`` and
``full_page_writes`` off. A bench that measures PostgreSQL's own cost starts
one with ``settings=TUNED`` (durable, the operator's guide's settings,
docs/postgres.md) or ``settings=STOCK`` (durable, PostgreSQL's defaults as
the dev machine's server has them) instead.

When no private server can be made, the tests use the machine's server on
127.0.0.1:5432 (a database of their own, dropped after); tests that stop the
server then skip.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

__all__ = ["FAST", "STOCK", "TUNED", "PgServer", "find_pg_bin", "start_private_server", "unique_database"]

#: The tests' settings: fast, not durable (a crash loses the data: fine for a test).
FAST: dict[str, str] = {
    "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "max_connections": "50",
}
#: Durable, PostgreSQL 15's defaults where the history cares (the dev machine's server:
#: 128 MB of shared buffers, a checkpoint per 1 GB of WAL or 5 minutes, no WAL compression).
STOCK: dict[str, str] = {
    "max_connections": "50", "shared_buffers": "128MB", "max_wal_size": "1GB", "checkpoint_timeout": "5min",
    "wal_compression": "off",
}
#: Durable, the history's recommended settings (docs/postgres.md, measured in bench/RESULTS.md "pgcost"):
#: checkpoints far apart (fewer full-page images in the WAL), full-page images compressed, the
#: indexes' working set in shared buffers. synchronous_commit stays on: the archiver acks
#: the events once the commit returns.
TUNED: dict[str, str] = {
    "max_connections": "50", "shared_buffers": "1GB", "max_wal_size": "16GB", "min_wal_size": "1GB",
    "checkpoint_timeout": "30min", "checkpoint_completion_target": "0.9", "wal_compression": "lz4",
}

_WATCHDOG = """
import os, shutil, subprocess, sys, time
parent, cmd, folder = int(sys.argv[1]), sys.argv[2:-1], sys.argv[-1]
while True:
    try:
        os.kill(parent, 0)
    except ProcessLookupError:
        break
    if not os.path.isdir(folder):
        sys.exit(0)  # stopped and removed by the finalizer
    time.sleep(1.0)
subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
shutil.rmtree(folder, ignore_errors=True)
"""


def find_pg_bin() -> Path | None:
    """The folder holding initdb and pg_ctl, or None."""
    found = shutil.which("initdb")
    if found and Path(found).parent.joinpath("pg_ctl").exists():
        return Path(found).parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(candidate, "initdb")):
            return Path(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """A PostgreSQL the tests may use; ``private`` ones can be stopped and started."""

    def __init__(self, host: str, port: int, *, folder: Path | None = None, bin_dir: Path | None = None,
                 run_as: str | None = None, settings: dict[str, str] | None = None) -> None:
        self.host, self.port = host, port
        self.folder, self.bin_dir, self.run_as = folder, bin_dir, run_as
        self.settings = dict(FAST if settings is None else settings)
        self.watchdog: subprocess.Popen[bytes] | None = None

    @property
    def private(self) -> bool:
        return self.folder is not None

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    # -- private server control -------------------------------------------
    def _cmd(self, *args: str) -> list[str]:
        assert self.bin_dir is not None
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        return ["runuser", "-u", self.run_as, "--", *cmd] if self.run_as else cmd

    def _pg_ctl(self, *args: str) -> list[str]:
        assert self.folder is not None
        return self._cmd("pg_ctl", "-D", str(self.folder / "data"), *args)

    def start(self) -> None:
        assert self.folder is not None
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} " + " ".join(
            f"-c {name}={value}" for name, value in self.settings.items()
        )
        subprocess.run(
            self._pg_ctl("-o", opts, "-l", str(self.folder / "server.log"), "-w", "-t", "60", "start"),
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=90,
        )

    def stop(self) -> None:
        subprocess.run(self._pg_ctl("-m", "fast", "-w", "-t", "60", "stop"), check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=90)

    def destroy(self) -> None:
        if self.folder is None:
            return
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.watchdog is not None:
            try:
                self.watchdog.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.watchdog.kill()


def start_private_server(settings: dict[str, str] | None = None) -> tuple[PgServer | None, str]:
    """(server, "") or (None, why not). ``settings``: the server's ``-c`` options (default
    `FAST`, the tests'); listen address, port and socket folder are the function's."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        return None, "initdb/pg_ctl not found"
    run_as: str | None = None
    folder = Path(tempfile.mkdtemp(prefix="sendgate-pg-"))
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(folder, ignore_errors=True)
            return None, "running as root and there is no postgres user to run initdb as"
        if not shutil.which("runuser"):
            shutil.rmtree(folder, ignore_errors=True)
            return None, "running as root without runuser"
        os.chown(folder, user.pw_uid, user.pw_gid)
        run_as = "postgres"
    server = PgServer("127.0.0.1", _free_port(), folder=folder, bin_dir=bin_dir, run_as=run_as, settings=settings)
    try:
        subprocess.run(
            server._cmd("initdb", "-D", str(folder / "data"), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                        "--no-sync", "--no-instructions"),
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120,
        )
        server.start()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as err:
        detail = getattr(err, "stderr", b"") or b""
        shutil.rmtree(folder, ignore_errors=True)
        return None, f"initdb/pg_ctl failed: {err} {detail.decode(errors='replace')[-300:]}"
    server.watchdog = subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), *server._pg_ctl("-m", "immediate", "stop"), str(folder)],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return server, ""


def unique_database() -> str:
    """A database name of the tests' own (``sgtest_`` + 12 hex digits)."""
    return f"sgtest_{uuid.uuid4().hex[:12]}"
