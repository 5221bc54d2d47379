"""Which Redis a command talks to: the config, a local `sendgate run`, or ``REDIS_URL``.

Why: a new user runs ``sendgate run -c config/sendgate.example.toml`` and then
``sendgate send --to … --text …`` in another terminal, without ``-c``. The
send must reach the engine they just started, whatever Redis that engine uses
(the config's, ``REDIS_URL``'s or an embedded one), with the same key prefix.
So every ``sendgate run`` announces itself in a user-private file
(``$TMPDIR/sendgate-<uid>/run-<pid>.json``, mode 0600 in a 0700 directory): its
pid, the config file it read, the Redis URL it uses and its prefix. The file
is removed when the engine stops; a file whose process is gone is ignored
(and removed by whoever finds it).

`resolve()` is the one rule every command that talks to Redis follows:

1. ``-c FILE``;
2. ``SENDGATE_CONFIG``;
3. ``REDIS_URL`` with the default settings (an explicit choice in the
   command's own environment wins over discovery: a test, a script or a
   shell pointed at another Redis is never redirected to a local engine);
4. the announcement of a running local ``sendgate run`` (the newest, when
   there are several): its config file, and the Redis it really uses.

A config that names no Redis (1, 2) takes the announced one of an engine that
read the same file, else of any local engine (an embedded Redis). The command
prints ``using Redis at URL (from …)`` on stderr, the password masked.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec
import orjson

from engine.config import Settings, load_settings
from engine.embedded_redis import announce_dir, announced_url

__all__ = [
    "Announcement",
    "NoRedis",
    "Resolved",
    "announce_run",
    "local_runs",
    "mask_url",
    "resolve",
    "resolve_for_cli",
    "withdraw_run",
]


class NoRedis(Exception):
    """No Redis could be found for a command; the message says what was tried."""


@dataclass(frozen=True)
class Announcement:
    """What a local `sendgate run` published about itself."""

    pid: int
    config: str  # absolute path of the config file it read ("" for none)
    redis_url: str
    prefix: str
    started_at: float
    path: Path
    cluster: bool = False  # its Redis is a Redis Cluster ([redis] cluster = true)


@dataclass(frozen=True)
class Resolved:
    """The settings a command uses (``redis.url`` filled in) and where its Redis came from."""

    settings: Settings
    url: str
    source: str

    def describe(self) -> str:
        return f"using Redis at {mask_url(self.url)} (from {self.source})"


def mask_url(url: str) -> str:
    """``redis://user:secret@host:6379/0`` → ``redis://user:***@host:6379/0``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None and "@" not in parts.netloc:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0] if ":" in userinfo else ""
    masked = f"{user}:***@{hostport}" if user else f"***@{hostport}"
    return urlunsplit((parts.scheme, masked, parts.path, parts.query, parts.fragment))


def _run_file(pid: int) -> Path:
    return announce_dir() / f"run-{pid}.json"


def announce_run(config_path: str | None, redis_url: str, prefix: str, *, cluster: bool = False) -> Path:
    """Publish this process as a local `sendgate run` (user-private file); returns its path."""
    directory = announce_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = _run_file(os.getpid())
    body = {
        "pid": os.getpid(),
        "config": str(Path(config_path).resolve()) if config_path else "",
        "redis_url": redis_url,
        "prefix": prefix,
        "started_at": time.time(),
        "cluster": cluster,
    }
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(orjson.dumps(body))
    os.replace(tmp, path)
    return path


def withdraw_run(path: Path) -> None:
    """Remove this process's announcement (at stop)."""
    with contextlib.suppress(OSError):
        path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process reuses the pid
        return False
    return True


def _answers(url: str) -> bool:
    try:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return Path(parts.path).exists()
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=0.3):
            return True
    except (OSError, ValueError):
        return False


def local_runs() -> list[Announcement]:
    """The announcements of running local engines whose Redis answers, newest first."""
    found: list[Announcement] = []
    try:
        files = sorted(announce_dir().glob("run-*.json"))
    except OSError:
        return []
    for path in files:
        try:
            data: Any = orjson.loads(path.read_bytes())
            ann = Announcement(
                pid=int(data["pid"]), config=str(data.get("config") or ""), redis_url=str(data["redis_url"]),
                prefix=str(data.get("prefix") or ""), started_at=float(data.get("started_at") or 0), path=path,
                cluster=bool(data.get("cluster")),
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not _alive(ann.pid):
            withdraw_run(path)
            continue
        if _answers(ann.redis_url):
            found.append(ann)
    return sorted(found, key=lambda a: a.started_at, reverse=True)


def _no_config(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != "SENDGATE_CONFIG"}


def _with_url(settings: Settings, url: str, ann: Announcement | None = None) -> Settings:
    """``settings`` with ``url``; of an announced run, its cluster mode too."""
    cluster = settings.redis.cluster or (ann is not None and ann.cluster)
    return msgspec.structs.replace(settings, redis=msgspec.structs.replace(settings.redis, url=url, cluster=cluster))


def _from_config(path: str, how: str, env: Mapping[str, str]) -> Resolved:
    settings = load_settings(path, env=env)
    if settings.redis.url:
        where = "REDIS_URL" if env.get("REDIS_URL") else f"[redis] url of {how}"
        return Resolved(settings, settings.redis.url, where)
    # The config names no Redis: the engine that read it runs on an embedded one.
    wanted = str(Path(path).resolve())
    runs = local_runs()
    for ann in runs:
        if ann.config == wanted:
            return Resolved(_with_url(settings, ann.redis_url, ann), ann.redis_url, f"the `sendgate run` pid {ann.pid} of {how}")
    if runs:
        ann = runs[0]
        return Resolved(_with_url(settings, ann.redis_url, ann), ann.redis_url, f"the local `sendgate run` pid {ann.pid}")
    legacy = announced_url()
    if legacy:
        return Resolved(_with_url(settings, legacy), legacy, "the embedded Redis of a local `sendgate run`")
    raise NoRedis(
        f"no Redis configured: {how} names none ([redis] url), REDIS_URL is not set, "
        "and no `sendgate run` is running on this machine"
    )


def resolve(config: str | None = None, env: Mapping[str, str] | None = None) -> Resolved:
    """The settings and Redis a command uses (module docstring: the order tried).

    Raises `engine.config.ConfigError` for a bad config and `NoRedis` when
    nothing names a Redis.
    """
    env = os.environ if env is None else env
    if config:
        return _from_config(config, f"-c {config}", env)
    if env.get("SENDGATE_CONFIG"):
        return _from_config(env["SENDGATE_CONFIG"], f"SENDGATE_CONFIG={env['SENDGATE_CONFIG']}", env)
    if env.get("REDIS_URL"):
        # an explicit choice in this command's own environment wins over discovery
        settings = load_settings(None, env=env)
        return Resolved(settings, settings.redis.url, "REDIS_URL")
    for ann in local_runs():
        settings = load_settings(ann.config if ann.config and Path(ann.config).exists() else None, env=_no_config(env))
        if ann.prefix and settings.redis.prefix != ann.prefix:
            settings = msgspec.structs.replace(settings, redis=msgspec.structs.replace(settings.redis, prefix=ann.prefix))
        what = f"config {ann.config}" if ann.config else "no config file"
        return Resolved(_with_url(settings, ann.redis_url, ann), ann.redis_url, f"the local `sendgate run` pid {ann.pid}, {what}")
    legacy = announced_url()
    if legacy:
        return Resolved(_with_url(load_settings(None, env=env), legacy), legacy, "the embedded Redis of a local `sendgate run`")
    raise NoRedis(
        "no Redis configured: give -c FILE or set SENDGATE_CONFIG or REDIS_URL; "
        "no `sendgate run` is running on this machine"
    )


def resolve_for_cli(command: str, config: str | None, *, required: bool = True) -> Resolved:
    """`resolve` for a sub-command: prints where its Redis came from, exits 2 when none
    (``required=False``: goes on without one, e.g. `history` reading its store only)."""
    from engine.config import ConfigError

    try:
        found = resolve(config)
    except ConfigError as err:
        print(f"sendgate: config error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except NoRedis as err:
        if not required:
            print(f"sendgate {command}: {err}; going on without Redis", file=sys.stderr)
            try:
                return Resolved(load_settings(config), "", "nowhere")
            except ConfigError as cerr:
                print(f"sendgate: config error: {cerr}", file=sys.stderr)
                raise SystemExit(2) from None
        print(f"sendgate {command}: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(found.describe(), file=sys.stderr)
    return found
