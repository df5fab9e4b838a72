"""A real `redis-server` per test (the Debian package; scripts/lib.sh installs it).

Import the fixture into a test module: `from tests.redis_server import redis_server`.
The server can be killed, paused (SIGSTOP: connections hang) and started again on the
same port, as the failure tests need.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from extproc.devstack import free_port
from extproc.shared_state.local_redis import LocalRedis


@pytest.fixture
def redis_server() -> Iterator[LocalRedis]:
    server = LocalRedis(free_port()).start()
    try:
        yield server
    finally:
        server.close()
