"""A real `redis-server` on a free loopback port, which a test may kill and restart."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from orchestrator.daemon.fleet import redis_client
from orchestrator.testing.redis import RedisServer


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A client configured as the workers' is (short timeouts, one quick retry)."""
    async with redis_client(redis_server.url) as client:
        yield client
