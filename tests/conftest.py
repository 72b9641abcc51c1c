"""Shared fixtures: the built-in SSE server on 127.0.0.1, in a thread of the test process."""

from __future__ import annotations

import os
import socket

import pytest

from fanin.server.app import ServerThread

# Tests talk to loopback only; a proxy from the environment must never see their traffic.
os.environ["NO_PROXY"] = "*"
os.environ.pop("HTTP_PROXY", None)
os.environ.pop("http_proxy", None)


@pytest.fixture(scope="session")
def sse_server():
    with ServerThread() as server:
        yield server


@pytest.fixture
def fresh_server():
    """A server of the test's own, for tests that read its /stats counters."""
    with ServerThread() as server:
        yield server


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
