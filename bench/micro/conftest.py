"""Fixtures of the micro benchmarks: a real Redis (``REDIS_URL`` or an embedded server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine.embedded_redis import redis_url_from_env


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_url_from_env() as url:
        yield url
