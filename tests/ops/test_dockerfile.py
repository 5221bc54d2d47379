"""Dockerfile and .dockerignore: multi-stage wheel build, non-root runtime, a
health check that works (run here against a real admin server), and a build
context that holds every package the wheel needs and nothing else.

Docker does not run on the test machine (client only), so the image is not built.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import socket
import sys
import tomllib
from fnmatch import fnmatch
from typing import Any

from engine.admin import AdminServer
from engine.metrics import Metrics
from tests.ops.helpers import DOCKERFILE, DOCKERIGNORE, ROOT

Instruction = tuple[str, str]  # (KEYWORD, arguments)


def _instructions() -> list[Instruction]:
    """Dockerfile instructions with line continuations joined and comments dropped."""
    out: list[Instruction] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def _stages() -> list[list[Instruction]]:
    stages: list[list[Instruction]] = []
    for ins in _instructions():
        if ins[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def _args(stage: list[Instruction], keyword: str) -> list[str]:
    return [a for k, a in stage if k == keyword]


def _image(from_args: str) -> str:
    """The base image of `FROM x AS y`, with `${ARG}` defaults substituted."""
    defaults = dict(a.split("=", 1) for k, a in _instructions() if k == "ARG" and "=" in a)
    image = from_args.split()[0]
    return re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], image)


def _exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_multi_stage_wheel_build_on_python_311_slim() -> None:
    builder, runtime = _stages()[0], _stages()[-1]
    assert len(_stages()) >= 2
    assert _args(builder, "FROM")[0].split()[-2:] == ["AS", "builder"]
    assert any("pip wheel" in run for run in _args(builder, "RUN"))
    assert _image(_args(runtime, "FROM")[0]) == "python:3.11-slim"
    install = " ".join(_args(runtime, "RUN"))
    assert "--no-index" in install and "from=builder" in install  # only the built wheels
    assert not any("build-essential" in run for run in _args(runtime, "RUN"))


def test_runtime_runs_as_a_non_root_user() -> None:
    users = _args(_stages()[-1], "USER")
    assert users, "the runtime stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    # the last USER comes after every RUN of the runtime stage
    keywords = [k for k, _ in _stages()[-1]]
    assert max(i for i, k in enumerate(keywords) if k == "RUN") < max(i for i, k in enumerate(keywords) if k == "USER")


def test_entrypoint_cmd_and_port() -> None:
    runtime = _stages()[-1]
    assert _exec_form(_args(runtime, "ENTRYPOINT")[-1]) == ["sendgate"]
    assert _exec_form(_args(runtime, "CMD")[-1]) == ["run", "-c", "/etc/sendgate/sendgate.toml"]
    assert "9108" in _args(runtime, "EXPOSE")[-1].split()
    assert _pyproject()["project"]["scripts"]["sendgate"] == "engine.cli:main"


def _healthcheck_command() -> list[str]:
    args = _args(_stages()[-1], "HEALTHCHECK")[-1]
    _, _, command = args.partition("CMD ")
    return _exec_form(command.strip())


def test_healthcheck_probes_healthz_with_python_only() -> None:
    command = _healthcheck_command()
    assert command[:2] == ["python", "-c"]
    assert "urllib" in command[2] and "/healthz" in command[2]
    text = " ".join(a for _, a in _instructions())
    assert "curl" not in text and "wget" not in text


def _env_default(name: str) -> str:
    for keyword, args in _instructions():
        if keyword == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                if key == name:
                    return value
    raise AssertionError(f"ENV {name} not set")


async def _run_healthcheck(url: str) -> int:
    command = _healthcheck_command()
    env = {**os.environ, "SENDGATE_HEALTHZ_URL": url}
    proc = await asyncio.create_subprocess_exec(sys.executable, *command[1:], env=env)
    return await asyncio.wait_for(proc.wait(), timeout=30)


async def test_healthcheck_passes_against_a_live_admin_server_and_fails_without_one() -> None:
    assert _env_default("SENDGATE_HEALTHZ_URL") == "http://127.0.0.1:9108/healthz"

    async def ready() -> tuple[bool, dict[str, Any]]:
        return True, {}

    admin = AdminServer("127.0.0.1:0", Metrics().registry, ready, dict)
    await admin.start()
    url = f"http://127.0.0.1:{admin.port}/healthz"
    try:
        assert await _run_healthcheck(url) == 0
    finally:
        await admin.close()
    # nothing listens there any more: unhealthy
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", admin.port)) != 0
    assert await _run_healthcheck(url) != 0


def _ignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _ignored(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in _ignore_patterns():
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").rstrip("/")
        pats = [pat, pat.removeprefix("**/")] if pat.startswith("**/") else [pat]
        for candidate in candidates:
            name_match = any(fnmatch(candidate, p) for p in pats)
            deep_match = pat.startswith("**/") and any(fnmatch(c, pats[1]) for c in candidate.split("/"))
            if name_match or deep_match:
                ignored = not negate
                break
    return ignored


def _copy_sources() -> list[str]:
    sources: list[str] = []
    for stage in _stages():
        for args in _args(stage, "COPY"):
            if "--from=" in args:
                continue
            sources += [a for a in args.split()[:-1] if not a.startswith("--")]
    return sources


def test_every_package_of_the_wheel_is_copied_into_the_builder() -> None:
    packages = set(_pyproject()["tool"]["setuptools"]["packages"])
    copied = {s.rstrip("/") for s in _copy_sources()}
    # a subpackage (engine.text, engine.history) travels with the folder of a package that is copied
    folders = {p.replace(".", "/") for p in packages}
    missing = {f for f in folders if not any(f == c or f.startswith(c + "/") for c in copied)}
    assert not missing, missing
    assert {p for p in packages if "." not in p} <= copied
    assert {"pyproject.toml", "README.md"} <= copied  # setuptools reads the readme


def test_build_context_keeps_what_copy_needs_and_drops_the_rest() -> None:
    for source in _copy_sources():
        assert (ROOT / source).exists(), source
        assert not _ignored(source.rstrip("/")), source
    assert not _ignored("engine/record.lua")  # package data of the wheel
    assert not _ignored("bench/e2e.py")  # `sendgate bench` runs in the image
    for path in [".git", ".venv", "tests/conftest.py", "bench/micro/test_codec.py", "config/compose.toml",
                 "engine/__pycache__/app.cpython-311.pyc", ".pytest_cache"]:
        assert _ignored(path), path
