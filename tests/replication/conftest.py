"""The real-cluster tests' processes: a group stopped after each test, and one
cluster a test module's write-only tests share (disjoint keys)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.procs import Server, ServerGroup, server_group
from tests.replication.real_cluster import start_cluster


@pytest.fixture
def group() -> Iterator[ServerGroup]:
    with server_group() as g:
        yield g


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Server]]:
    """One cluster for the tests that only write (disjoint keys): fewer process starts."""
    with server_group() as g:
        yield start_cluster(g, tmp_path_factory.mktemp("shared"))
