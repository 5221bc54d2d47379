"""The ``sendgate`` command line.

Each sub-command imports what it needs when it runs, so ``sendgate --help``
and ``sendgate segments`` start fast.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

__all__ = ["main", "run_loop"]

_DESCRIPTION = """\
sendgate: a high-throughput SMPP dispatch engine.

Upstream apps XADD send jobs to the Redis stream <prefix>:jobs; the engine
routes, segments and submits them over SMPP binds, and publishes status
events to <prefix>:events. See README.md for the job and event formats.
"""

_EPILOG = """\
environment:
  SENDGATE_CONFIG   config file when -c is not given
  REDIS_URL         Redis to use (overrides [redis] url); unset and no url in
                    the config: run and demo start an embedded Redis
  SENDGATE_LOOP     "asyncio" to use the stock event loop instead of uvloop

Commands that talk to Redis (send, history, erase, export, purge, archive,
close-client, reopen-client, suppress) take, in
this order: -c FILE, SENDGATE_CONFIG, a `sendgate run` running on this machine
(it announces its config and Redis), REDIS_URL; they say which on stderr.
"""


def run_loop(coro: Coroutine[Any, Any, int]) -> int:
    """Run ``coro`` to its exit code on uvloop (stock asyncio when ``SENDGATE_LOOP=asyncio``)."""
    if os.environ.get("SENDGATE_LOOP", "uvloop") != "asyncio":
        try:
            import uvloop

            return uvloop.run(coro)
        except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
            pass
    return asyncio.run(coro)


def _resolve(command: str, args: argparse.Namespace, *, required: bool = True) -> Any:
    """Settings and Redis of a command that talks to Redis (engine/discovery.py); says which."""
    from engine.discovery import resolve_for_cli

    return resolve_for_cli(command, getattr(args, "config", None), required=required)


def _load(args: argparse.Namespace) -> Any:
    from engine.config import ConfigError, load_settings

    try:
        return load_settings(getattr(args, "config", None))
    except ConfigError as err:
        print(f"sendgate: config error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


# ---------------------------------------------------------------------- run
def _cmd_run(args: argparse.Namespace) -> int:
    settings = _load(args)
    from engine.app import Engine, log_event, redis_url_for
    from engine.hook_chain import chain_for
    from privacy_hooks import configure_logging

    configure_logging(
        settings.logging.level, settings.logging.format, settings.logging.file or None,
        retention_days=settings.privacy.retention_days.activity_log, rotate=settings.logging.rotate,
        log_filter=chain_for(settings).log_filter(),
    )
    if not settings.carriers:
        print("sendgate: config error: carriers: at least one [[carriers]] table is required", file=sys.stderr)
        return 2
    from engine.discovery import announce_run, mask_url, withdraw_run

    config_path = getattr(args, "config", None) or os.environ.get("SENDGATE_CONFIG") or ""
    url, embedded = redis_url_for(settings)
    log_event(
        "config loaded", "config_loaded", config=config_path or "(defaults)", redis=mask_url(url),
        prefix=settings.redis.prefix, carriers=[c.name for c in settings.carriers],
    )
    # So `sendgate send` (and every command that talks to Redis) on this machine finds us.
    announcement = announce_run(config_path or None, url, settings.redis.prefix, cluster=settings.redis.cluster)

    source = config_path or "(defaults and environment)"

    async def main() -> int:
        engine = Engine(settings, url, config_source=source)
        await engine.run()
        return 0

    try:
        return run_loop(main())
    finally:
        withdraw_run(announcement)
        if embedded is not None:
            embedded.stop()


# --------------------------------------------------------------------- send
def _cmd_send(args: argparse.Namespace) -> int:
    import time
    import uuid

    from engine.job import JobError
    from engine.producer import Producer, SendJob

    found = _resolve("send", args)
    settings, url = found.settings, found.url
    job = SendJob(
        id=args.id or uuid.uuid4().hex,
        to=args.to,
        text=args.text,
        sender=args.sender or "",
        carrier=args.carrier or "",
        dlr=not args.no_dlr,
        encoding=args.encoding,
        ref=args.ref or "",
        client=args.client or "",
        priority=args.priority or "normal",
        callback=args.callback or "",
        send_at=int(time.time() + args.delay_s) if args.delay_s else 0,
    )

    async def main() -> int:
        from engine.redis_client import redis_from_settings

        producer = Producer(redis_from_settings(settings, url), settings.redis.prefix, shards=settings.redis.shards)
        try:
            entry = await producer.send(job)
            print(f"queued job {job.id} as entry {entry} on {producer.lane(job)}")
            if args.wait:
                deadline = asyncio.get_running_loop().time() + args.wait
                async for event in producer.events(last_id="0", block_ms=500):
                    if event.get("id") == job.id:
                        print(f"{event['event']}: parts={event.get('parts')} error={event.get('error') or '-'}")
                        if event["event"] not in ("submitted", "enroute", "accepted"):
                            return 0
                    if asyncio.get_running_loop().time() > deadline:
                        print("no final event yet", file=sys.stderr)
                        return 1
            return 0
        except JobError as err:
            print(f"sendgate send: rejected ({err.code}): {err.reason}", file=sys.stderr)
            return 2
        finally:
            await producer.aclose()

    return run_loop(main())


# ------------------------------------------------------------------- others
def _cmd_segments(argv: list[str]) -> int:
    from engine.text.cli import main as segments_main

    return segments_main(argv)


def _cmd_simulate(argv: list[str]) -> int:
    from connectors.simulator import main as simulator_main

    return simulator_main(argv)


def _cmd_demo(argv: list[str]) -> int:
    from engine.demo import main as demo_main

    return demo_main(argv)


# ------------------------------------------------------------------- cancel
def _cmd_cancel(args: argparse.Namespace) -> int:
    from engine.producer import Producer, cancel_outcome

    found = _resolve("cancel", args)
    settings, url = found.settings, found.url

    async def main() -> int:
        from engine.redis_client import redis_from_settings

        producer = Producer(
            redis_from_settings(settings, url), settings.redis.prefix, group=settings.engine.group,
            shards=settings.redis.shards,
        )
        try:
            code, mark = await cancel_outcome(
                producer, args.id, max(1, int(settings.engine.idempotency_hours * 3600))
            )
        finally:
            await producer.aclose()
        if code == 2:
            print(f"cancelled job {args.id} (it was held for its send_at; event `cancelled` published)")
            return 0
        if code == 1:
            print(f"cancelled job {args.id}: it will not be sent (event `cancelled` when an engine meets it)")
            return 0
        if mark == "c":
            print(f"sendgate cancel: job {args.id} was cancelled already", file=sys.stderr)
        else:
            print(f"sendgate cancel: job {args.id} is not cancellable: already submitted", file=sys.stderr)
        return 1

    return run_loop(main())


def _cmd_bench(argv: list[str]) -> int:
    # By module path, not an import statement: bench sits above engine
    # (it drives the engine), and only this entry point may reach up to it.
    # import-linter's "layers" contract sees no engine -> bench edge this way.
    e2e = importlib.import_module("bench.e2e")
    result: int = e2e.main(argv)
    return result


def _cmd_erase(args: argparse.Namespace) -> int:
    from engine.erase import erase_main

    return run_loop(erase_main(_resolve("erase", args).settings, to=args.to, client=args.client, now=args.now,
                               dry_run=args.dry_run, include_suppression=args.include_suppression))


def _cmd_export(args: argparse.Namespace) -> int:
    from engine.subject_access import export_main

    return run_loop(export_main(_resolve("export", args).settings, to=args.to, client=args.client))


def _cmd_close_client(args: argparse.Namespace) -> int:
    from engine.closure import close_main

    return run_loop(close_main(_resolve(args.command, args).settings, args.client_id,
                               reopen=args.command == "reopen-client"))


def _cmd_purge(args: argparse.Namespace) -> int:
    from engine.erase import purge_main

    return run_loop(purge_main(_resolve("purge", args).settings))


def _cmd_archive(args: argparse.Namespace) -> int:
    from engine.history.cli import archive_main

    settings = _resolve("archive", args).settings
    from engine.hook_chain import chain_for
    from privacy_hooks import configure_logging

    configure_logging(
        settings.logging.level, settings.logging.format, settings.logging.file or None,
        retention_days=settings.privacy.retention_days.activity_log, rotate=settings.logging.rotate,
        log_filter=chain_for(settings).log_filter(),
    )
    return run_loop(archive_main(settings, once=args.once))


def _cmd_history(args: argparse.Namespace) -> int:
    from engine.history.cli import history_main

    return run_loop(history_main(
        _resolve("history", args, required=False).settings,
        job_id=args.id, ref=args.ref, to=args.to, client=args.client, as_json=args.json, limit=args.limit,
        show_text=args.show_text,
    ))


def _cmd_suppress(args: argparse.Namespace) -> int:
    from engine.suppression import suppress_main

    return run_loop(suppress_main(_resolve("suppress", args).settings, args.action, getattr(args, "numbers", []), args.client or ""))


# Sub-commands that own their whole argument list (their --help is their own).
_PASSTHROUGH = {
    "segments": (_cmd_segments, "how a text splits into SMS segments (--json, --jsonl)"),
    "simulate": (_cmd_simulate, "run the SMSC simulator alone"),
    "demo": (_cmd_demo, "embedded Redis + simulator + engine + a batch of messages, with a summary"),
    "bench": (_cmd_bench, "end-to-end load run (JSON result with --json FILE)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sendgate", description=_DESCRIPTION, epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="run the engine (production)", description="Run the engine until SIGTERM/SIGINT.")
    p.add_argument("-c", "--config", help="TOML config file (default: $SENDGATE_CONFIG)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "send", help="push one job",
        description=(
            "Validate and push one job to the jobs stream. The Redis: -c FILE, SENDGATE_CONFIG, "
            "a `sendgate run` on this machine, or REDIS_URL (printed on stderr)."
        ),
    )
    p.add_argument("-c", "--config", help="TOML config file (default: $SENDGATE_CONFIG)")
    p.add_argument("--to", required=True, help="recipient, E.164 (+4500112233 or 4500112233)")
    p.add_argument("--text", required=True, help="message text (UTF-8)")
    p.add_argument("--from", dest="sender", help="sender: alphanumeric (<= 11) or a number")
    p.add_argument("--id", help="job id (idempotency key); default: a random one")
    p.add_argument("--carrier", help="force a carrier by name")
    p.add_argument("--encoding", default="auto", choices=["auto", "gsm7", "ucs2"])
    p.add_argument("--no-dlr", action="store_true", help="do not ask for a delivery receipt")
    p.add_argument("--ref", help="opaque client reference echoed in events")
    p.add_argument("--client", help="tenant / account id")
    p.add_argument("--priority", choices=["high", "normal", "bulk"])
    p.add_argument("--callback", help="URL that receives this job's events")
    p.add_argument("--delay-s", type=float, default=0, help="hold the job this many seconds (send_at)")
    p.add_argument("--wait", type=float, default=0, metavar="SECONDS", help="wait for the job's events and print them")
    p.set_defaults(func=_cmd_send)

    p = sub.add_parser(
        "cancel", help="cancel a waiting job",
        description=(
            "Cancel a job that is still waiting (in a lane, parked, or held for its send_at): it is never sent "
            "and gets event `cancelled`. A job already handed to a bind is not cancellable (exit code 1). "
            "Cancelling an id never pushed blocks that id for the idempotency window."
        ),
    )
    p.add_argument("-c", "--config", help="TOML config file (default: $SENDGATE_CONFIG)")
    p.add_argument("id", help="the job id")
    p.set_defaults(func=_cmd_cancel)

    p = sub.add_parser("erase", help="erase a data subject's records", description="Erase every record of a number or a client.")
    p.add_argument("-c", "--config", help="TOML config file (default: $SENDGATE_CONFIG)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--to", help="the subject's phone number")
    g.add_argument("--client", help="a client (tenant) id")
    p.add_argument("--now", action="store_true", help="delete at once instead of hiding and re-stamping (policy default)")
    p.add_argument("--dry-run", action="store_true", help="print what would be erased, per kind; change nothing")
    p.add_argument("--include-suppression", action="store_true",
                   help="with --now: take the number off suppression lists too (default: an opt-out is kept)")
    p.set_defaults(func=_cmd_erase)

    p = sub.add_parser(
        "export", help="print every record held about a data subject (JSON lines)",
        description=(
            "Right of access: every record held about a number or a client, one JSON object per line on stdout, "
            "each with its `kind` (history_row, job_record, event, waiting_job, scheduled_job, dead_letter, "
            "inbound, suppression). Numbers appear in clear: it is the subject's own data. An audit entry "
            "records the request (the subject as its keyed hash, counts per kind)."
        ),
    )
    p.add_argument("-c", "--config", help="TOML config file (default: $SENDGATE_CONFIG)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--to", help="the subject's phone number")
    g.add_argument("--client", help="a client (tenant) id")
    p.set_defaults(func=_cmd_export)

    for name, text in (
        ("close-client", "close a client account: stop sending for it, re-stamp its records"),
        ("reopen-client", "reopen a closed client account: restore what is not gone yet"),
    ):
        p = sub.add_parser(name, help=text, description=text + " (audited).")
        p.add_argument("-c", "--config", help="TOML config file (default: $SENDGATE_CONFIG)")
        p.add_argument("client_id", metavar="ID", help="the client (tenant) id")
        p.set_defaults(func=_cmd_close_client)

    p = sub.add_parser("purge", help="apply retention now", description="Trim streams past their retention now.")
    p.add_argument("-c", "--config", help="TOML config file (default: $SENDGATE_CONFIG)")
    p.set_defaults(func=_cmd_purge)

    p = sub.add_parser(
        "archive", help="run the history archiver alone",
        description="Archive the events stream into the history store ([history] url) until SIGTERM/SIGINT.",
    )
    p.add_argument("-c", "--config", help="TOML config file (default: $SENDGATE_CONFIG)")
    p.add_argument("--once", action="store_true", help="archive what the stream holds now, then exit")
    p.set_defaults(func=_cmd_archive)

    p = sub.add_parser(
        "history", help="look up jobs in the history store and Redis",
        description="What the history store and Redis know of a job, newest first; numbers masked.",
    )
    p.add_argument("-c", "--config", help="TOML config file (default: $SENDGATE_CONFIG)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--id", help="a job id")
    g.add_argument("--ref", help="a client reference")
    g.add_argument("--to", help="a phone number (looked up by its keyed hash, shown masked)")
    g.add_argument("--client", help="a client (tenant) id")
    p.add_argument("--json", action="store_true", help="JSON instead of text")
    p.add_argument("--limit", type=int, default=100, help="at most this many jobs (default 100)")
    p.add_argument("--show-text", action="store_true",
                   help="also the message text kept by [history] keep_text (needs the key; audited)")
    p.set_defaults(func=_cmd_history)

    p = sub.add_parser(
        "suppress", help="manage suppression lists (marketing opt-outs)",
        description=(
            "Add, remove or check numbers on a client's suppression list (no --client: the default list, "
            "shared by jobs and inbound messages without a client). Lists hold keyed hashes: `list` prints "
            "hashes, `check` exits 1 unless every number is suppressed. Changes go to the audit stream."
        ),
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, text in (("add", "put numbers on the list"), ("remove", "take numbers off the list"),
                         ("check", "which numbers are on the list (exit 1 unless all)"),
                         ("list", "the list's keyed hashes")):
        a = actions.add_parser(action, help=text, description=text)
        a.add_argument("-c", "--config", help="TOML config file (default: $SENDGATE_CONFIG)")
        if action != "list":
            a.add_argument("numbers", nargs="+", metavar="NUMBER", help="E.164 numbers")
        a.add_argument("--client", help="a client (tenant) id; default: the default list")
        a.set_defaults(func=_cmd_suppress)

    for name, (_fn, help_text) in _PASSTHROUGH.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in _PASSTHROUGH:
        return _PASSTHROUGH[args_list[0]][0](args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
