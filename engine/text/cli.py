"""``sendgate segments``: show how a text splits into SMS segments.

Why a command of its own: support staff and upstream developers need to see
what a text will cost (GSM-7 or UCS-2, how many parts, where the cuts fall)
with exactly the engine's rules and a carrier's options, without sending
anything. ``--jsonl`` turns it into a filter for bulk checks (one JSON string
per input line, one JSON object per output line).

Printing the text here is fine: it is the user's own input echoed on their
own terminal, not a log line.
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from collections.abc import Iterable
from typing import Any, BinaryIO

import msgspec
import orjson

from engine.text.segmenter import (
    CONCAT_MODES,
    ENCODINGS,
    SegmentError,
    SegmentOptions,
    describe,
    segment,
)

__all__ = ["build_parser", "carrier_options", "main"]

_OPTION_KEYS = ("concat", "packed", "gsm_data_coding", "shift_tables", "smart_replace", "max_parts")
_FLUSH_EVERY = 512  # output lines per write in --jsonl mode


class ConfigError(Exception):
    """A config file problem, reported with the key path."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed so the main CLI can embed it as a subcommand)."""
    parser = argparse.ArgumentParser(
        prog="sendgate segments",
        description=(
            "Show how a text is encoded (GSM-7 or UCS-2) and split into SMS segments, "
            "using the same rules as the engine."
        ),
        epilog=(
            'JSON output: {"encoding": "gsm7"|"ucs2", "segments": N, "units": N, '
            '"parts": [...]}; units are septets for GSM-7 (extension characters count 2) '
            'and UTF-16 code units for UCS-2. On error: {"error": CODE, "reason": ...}. '
            "Exit status: 0 ok, 1 the text cannot be sent (single text), 2 usage or config error."
        ),
    )
    parser.add_argument(
        "text",
        nargs="?",
        metavar="TEXT",
        help="the message text; omitted or '-': read the whole of standard input",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--json", action="store_true", help="print one JSON object")
    mode.add_argument(
        "--jsonl",
        action="store_true",
        help="read one JSON string per line on stdin, write one JSON object per line",
    )
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        default=os.environ.get("SENDGATE_CONFIG"),
        help="config file for --carrier (default: $SENDGATE_CONFIG)",
    )
    parser.add_argument(
        "--carrier",
        metavar="NAME",
        help="apply the [carriers.encoding] options of this carrier from the config",
    )
    parser.add_argument(
        "--encoding",
        choices=ENCODINGS,
        default="auto",
        help="as the job field: auto (default), gsm7 or ucs2",
    )
    parser.add_argument("--concat", choices=CONCAT_MODES, help="override concatenation mode")
    parser.add_argument(
        "--packed",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="override: pack GSM-7 septets in short_message",
    )
    parser.add_argument(
        "--shift-tables",
        metavar="LANGS",
        help="override: comma-separated national shift tables, e.g. turkish,spanish ('' = none)",
    )
    parser.add_argument(
        "--smart-replace",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="override: replace typographic quotes, dashes, odd spaces with GSM equivalents",
    )
    parser.add_argument("--max-parts", type=int, metavar="N", help="override max_parts")
    return parser


def carrier_options(config_path: str, carrier: str) -> SegmentOptions:
    """``SegmentOptions`` from ``[[carriers]]`` ``name = carrier`` → ``[carriers.encoding]``."""
    try:
        with open(config_path, "rb") as fh:
            config = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config {config_path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {config_path} is not valid TOML: {exc}") from None
    carriers = config.get("carriers", [])
    if not isinstance(carriers, list):
        raise ConfigError("carriers: must be an array of tables ([[carriers]])")
    for entry in carriers:
        if isinstance(entry, dict) and entry.get("name") == carrier:
            encoding = entry.get("encoding", {})
            if not isinstance(encoding, dict):
                raise ConfigError(f"carriers[{carrier}].encoding: must be a table")
            picked = {k: v for k, v in encoding.items() if k in _OPTION_KEYS}
            try:
                return msgspec.convert(picked, SegmentOptions)
            except (msgspec.ValidationError, ValueError) as exc:
                raise ConfigError(f"carriers[{carrier}].encoding: {exc}") from None
    raise ConfigError(f"carriers: no carrier named {carrier!r} in {config_path}")


def _options(args: argparse.Namespace) -> SegmentOptions:
    options = SegmentOptions()
    if args.carrier:
        if not args.config:
            raise ConfigError("--carrier needs a config: -c FILE or SENDGATE_CONFIG")
        options = carrier_options(args.config, args.carrier)
    changes: dict[str, Any] = {}
    if args.concat is not None:
        changes["concat"] = args.concat
    if args.packed is not None:
        changes["packed"] = args.packed
    if args.smart_replace is not None:
        changes["smart_replace"] = args.smart_replace
    if args.max_parts is not None:
        changes["max_parts"] = args.max_parts
    if args.shift_tables is not None:
        changes["shift_tables"] = tuple(
            s.strip() for s in args.shift_tables.split(",") if s.strip()
        )
    if changes:
        try:
            options = msgspec.structs.replace(options, **changes)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return options


def _error_object(exc: SegmentError) -> dict[str, str]:
    return {"error": exc.code, "reason": exc.reason}


def run_jsonl(
    lines: Iterable[bytes], out: BinaryIO, options: SegmentOptions, encoding: str = "auto"
) -> int:
    """Describe each JSON-string line; one JSON object per line. Returns lines handled."""
    loads = orjson.loads
    dumps = orjson.dumps
    buf: list[bytes] = []
    count = 0
    for count, line in enumerate(lines, 1):
        try:
            text = loads(line)
        except orjson.JSONDecodeError:
            text = None
        if not isinstance(text, str):
            buf.append(dumps({"error": "invalid", "reason": f"line {count}: not a JSON string"}))
            buf.append(b"\n")
            continue
        try:
            buf.append(dumps(describe(text, options, encoding)))
        except SegmentError as exc:
            buf.append(dumps(_error_object(exc)))
        buf.append(b"\n")
        if len(buf) >= _FLUSH_EVERY:
            out.write(b"".join(buf))
            buf.clear()
    if buf:
        out.write(b"".join(buf))
    out.flush()
    return count


def _summary(text: str, options: SegmentOptions, encoding: str) -> str:
    result = segment(text, options, encoding)
    unit = "septets" if result.encoding == "gsm7" else "UTF-16 units"
    lines = [
        f"encoding: {result.encoding}",
        f"segments: {result.segments}",
        f"units:    {result.units} {unit}",
    ]
    if result.replaced:
        lines.append(
            "replaced: "
            + ", ".join(f"U+{ord(ch):04X} x{n}" for ch, n in sorted(result.replaced.items()))
        )
    shown = describe(text, options, encoding)["parts"]
    for n, part_text in enumerate(shown, 1):
        lines.append(f"--- part {n}/{len(shown)} ---")
        lines.append(part_text)
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """Entry point of ``sendgate segments``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        options = _options(args)
    except ConfigError as exc:
        print(f"sendgate segments: {exc}", file=sys.stderr)
        return 2
    if args.jsonl:
        if args.text is not None:
            parser.error("--jsonl reads standard input; give no TEXT")
        run_jsonl(sys.stdin.buffer, sys.stdout.buffer, options, args.encoding)
        return 0
    text = args.text
    if text is None or text == "-":
        text = sys.stdin.read()
        if text.endswith("\n"):
            text = text[:-1]
    try:
        if args.json:
            sys.stdout.buffer.write(orjson.dumps(describe(text, options, args.encoding)) + b"\n")
        else:
            sys.stdout.write(_summary(text, options, args.encoding))
    except SegmentError as exc:
        if args.json:
            sys.stdout.buffer.write(orjson.dumps(_error_object(exc)) + b"\n")
        else:
            print(f"cannot send: {exc.code}: {exc.reason}", file=sys.stderr)
        return 1
    sys.stdout.flush()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))
