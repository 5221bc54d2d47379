"""``sendgate segments``: JSON, JSONL, plain output, carrier options from the config."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from engine.text.cli import carrier_options, main, run_jsonl
from engine.text.segmenter import SegmentOptions

CONFIG = """
[redis]
url = ""

[[carriers]]
name = "acme"
host = "127.0.0.1"
port = 2775
[carriers.encoding]
concat = "udh16"
packed = true
shift_tables = ["turkish"]
smart_replace = true
max_parts = 3
gsm_data_coding = 1

[[carriers]]
name = "plain"
host = "127.0.0.1"
port = 2776
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "sendgate.toml"
    path.write_text(CONFIG)
    return path


def test_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--json", "hello {x}"]) == 0
    out = orjson.loads(capsys.readouterr().out)
    assert out == {"encoding": "gsm7", "segments": 1, "units": 11, "parts": ["hello {x}"]}


def test_json_ucs2_multipart(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--json", "Ж" * 71]) == 0
    out = orjson.loads(capsys.readouterr().out)
    assert out == {"encoding": "ucs2", "segments": 2, "units": 71, "parts": ["Ж" * 67, "Ж" * 4]}


def test_json_error_object(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--json", "--max-parts", "1", "a" * 200]) == 1
    out = orjson.loads(capsys.readouterr().out)
    assert out["error"] == "too_many_parts"
    assert main(["--json", "--encoding", "gsm7", "Жук"]) == 1
    assert orjson.loads(capsys.readouterr().out)["error"] == "bad_encoding"


def test_plain_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["x" * 161]) == 0
    out = capsys.readouterr().out
    assert "encoding: gsm7" in out
    assert "segments: 2" in out
    assert "161 septets" in out
    assert "part 2/2" in out


def test_carrier_options(config: Path) -> None:
    opts = carrier_options(str(config), "acme")
    assert opts == SegmentOptions(
        concat="udh16",
        packed=True,
        shift_tables=("turkish",),
        smart_replace=True,
        max_parts=3,
        gsm_data_coding=1,
    )
    assert carrier_options(str(config), "plain") == SegmentOptions()


def test_carrier_flag_applies_options(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--json", "-c", str(config), "--carrier", "acme", "“Şeker”"]) == 0
    out = orjson.loads(capsys.readouterr().out)
    assert out["encoding"] == "gsm7"  # smart replace + Turkish table from the carrier
    assert main(["--json", "-c", str(config), "--carrier", "acme", "x" * 500]) == 1
    assert orjson.loads(capsys.readouterr().out)["error"] == "too_many_parts"  # max_parts = 3


def test_carrier_errors(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--json", "-c", str(config), "--carrier", "nope", "x"]) == 2
    assert "no carrier named 'nope'" in capsys.readouterr().err
    assert main(["--json", "--carrier", "acme", "x", "-c", str(tmp_path / "missing.toml")]) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('[[carriers]]\nname = "b"\n[carriers.encoding]\nconcat = "udh99"\n')
    assert main(["--json", "-c", str(bad), "--carrier", "b", "x"]) == 2
    assert "carriers[b].encoding" in capsys.readouterr().err


def test_carrier_needs_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENDGATE_CONFIG", raising=False)
    assert main(["--carrier", "acme", "x"]) == 2


def test_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--json", "--jsonl", "--config", "--carrier", "--encoding", "--concat",
                 "--packed", "--shift-tables", "--smart-replace", "--max-parts"):  # fmt: skip
        assert flag in out


def test_run_jsonl_one_object_per_line() -> None:
    lines = [b'"hello"\n', b'"\\u0416"\n', b"not json\n", b'""\n', b"42\n", b'"x{"']
    out = io.BytesIO()
    assert run_jsonl(lines, out, SegmentOptions()) == 6
    objs = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert len(objs) == 6
    assert objs[0] == {"encoding": "gsm7", "segments": 1, "units": 5, "parts": ["hello"]}
    assert objs[1]["encoding"] == "ucs2"
    assert objs[2] == {"error": "invalid", "reason": "line 3: not a JSON string"}
    assert objs[3]["error"] == "empty_text"
    assert objs[4]["error"] == "invalid"
    assert objs[5]["units"] == 3


def test_jsonl_process_end_to_end() -> None:
    texts = ["x" * n for n in range(1, 400)] + ["Ж" * n for n in range(1, 200)]
    stdin = b"".join(orjson.dumps(t) + b"\n" for t in texts)
    proc = subprocess.run(
        [sys.executable, "-m", "engine.text.cli", "--jsonl", "--max-parts", "255"],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    objs = [orjson.loads(line) for line in proc.stdout.splitlines()]
    assert len(objs) == len(texts)
    assert objs[159]["segments"] == 1 and objs[160]["segments"] == 2
    assert objs[399 + 69]["segments"] == 1 and objs[399 + 70]["segments"] == 2
