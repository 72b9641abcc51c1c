"""Destination safety (fanin/embed/netguard.py): metadata and link-local always refused, on the
address actually connected to; private ranges only when BLOCK_PRIVATE_NETWORKS is on."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from yarl import URL

from fanin.embed.bridge import get_bridge
from fanin.errors import FailureKind
from fanin.merge import FanIn, make_session
from fanin.embed.netguard import AddressGuard, DestinationRefused, block_private_from_env
from fanin.server.app import ServerThread
from fanin.stream import Request, StreamConfig
from loopback_apps import serve
from tools.common import ToolFailure
from tools.sse_core import plan_sse_request, run_sse_request

ALWAYS = ["169.254.169.254", "169.254.0.1", "fe80::1", "fd00:ec2::254", "100.100.100.200",
          "::ffff:169.254.169.254", "fe80::1%1"]
PRIVATE = ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "::1", "fd12::1", "100.64.0.1", "0.0.0.0",
           "::ffff:127.0.0.1"]
PUBLIC = ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "100.128.0.1", "172.32.0.1"]


@pytest.mark.parametrize("address", ALWAYS)
def test_metadata_and_link_local_are_always_refused(address):
    for guard in (AddressGuard(), AddressGuard(block_private=True)):
        with pytest.raises(DestinationRefused, match="link-local or cloud-metadata"):
            guard.check_ip(address)


@pytest.mark.parametrize("address", PRIVATE)
def test_private_and_loopback_allowed_by_default_refused_when_blocked(address):
    AddressGuard().check_ip(address)
    with pytest.raises(DestinationRefused, match="BLOCK_PRIVATE_NETWORKS"):
        AddressGuard(block_private=True).check_ip(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address):
    AddressGuard(block_private=True).check_ip(address)


def test_ip_literal_urls_are_refused_before_sending():
    guard = AddressGuard()
    with pytest.raises(DestinationRefused):
        guard.check_url("http://169.254.169.254/latest/meta-data/")
    with pytest.raises(DestinationRefused):
        guard.check_url("http://[fd00:ec2::254]/latest")
    guard.check_url("http://example.invalid/x")  # names are judged at connect time


def test_setting_from_environment_or_dotenv(tmp_path: Path):
    assert block_private_from_env({}, tmp_path / ".env") is False
    assert block_private_from_env({"BLOCK_PRIVATE_NETWORKS": "true"}, tmp_path / ".env") is True
    assert block_private_from_env({"block_private_networks": "0"}, tmp_path / ".env") is False
    (tmp_path / ".env").write_text("# settings\nexport BLOCK_PRIVATE_NETWORKS='yes'\n")
    assert block_private_from_env({}, tmp_path / ".env") is True


def test_connect_time_check_sees_the_resolved_name():
    """`localhost` is a name: only the connect-time guard can see it is loopback."""
    with ServerThread() as server:
        url = server.url("/stream?count=3").replace("127.0.0.1", "localhost")
        guard = AddressGuard(block_private=True)
        guard.check_url(url)  # nothing to refuse before resolution
        fan = FanIn([Request(url=url)], StreamConfig(retries=0),
                    connector_factory=lambda: make_session(socket_factory=guard.socket_factory))
        items = list(get_bridge().iterate(fan.stream))
        assert fan.summary.status == "failed"
        assert "BLOCK_PRIVATE_NETWORKS" in fan.summary.sources[0].error
        assert server.stats.snapshot()["total_requests"] == 0
        assert all(type(i).__name__ == "SourceError" for i in items)
        # and the same run is allowed by default
        open_guard = AddressGuard()
        fan = FanIn([Request(url=url)], connector_factory=lambda: make_session(socket_factory=open_guard.socket_factory))
        assert sum(1 for _ in get_bridge().iterate(fan.stream)) == 3


class _RecordingGuard(AddressGuard):
    def __init__(self, refuse_port: int) -> None:
        super().__init__()
        self.refuse_port = refuse_port
        self.judged: list[tuple[str, int]] = []

    def socket_factory(self, addr_info):
        host, port = addr_info[4][:2]
        self.judged.append((host, port))
        if port == self.refuse_port:  # stands in for a metadata address (tests stay on loopback)
            raise DestinationRefused(f"destination {host} is a link-local or cloud-metadata address; refused")
        return super().socket_factory(addr_info)


def test_every_redirect_hop_is_judged_at_connect_time():
    with ServerThread() as server:
        target = server.url("/stream?count=3").replace("127.0.0.1", "localhost")

        async def hop(request: web.Request) -> web.Response:
            raise web.HTTPFound(target)

        app = web.Application()
        app.router.add_get("/hop", hop)
        with serve(app) as port:
            guard = _RecordingGuard(refuse_port=server.port)
            fan = FanIn([Request(url=f"http://127.0.0.1:{port}/hop")], StreamConfig(retries=0),
                        connector_factory=lambda: make_session(socket_factory=guard.socket_factory))
            items = list(get_bridge().iterate(fan.stream))
            assert [type(i).__name__ for i in items] == ["SourceError"]
            assert ("127.0.0.1", port) in guard.judged
            assert any(p == server.port for _, p in guard.judged)  # the hop was judged, then refused
            assert fan.summary.sources[0].kind == FailureKind.REFUSED_DESTINATION
            assert server.stats.snapshot()["total_requests"] == 0


def test_tool_refuses_metadata_url_with_one_clear_line():
    plan = plan_sse_request({"url": "http://169.254.169.254/latest/meta-data/iam", "auth_type": "bearer",
                             "auth_token": "sekrit-token-123"})
    with pytest.raises(ToolFailure) as info:
        list(run_sse_request(plan))
    message = str(info.value)
    assert "link-local or cloud-metadata" in message and "\n" not in message
    assert "sekrit-token-123" not in message


def test_through_a_proxy_the_target_name_is_resolved_and_judged_first(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    guard = AddressGuard(block_private=True)
    with pytest.raises(DestinationRefused, match="BLOCK_PRIVATE_NETWORKS"):
        get_bridge().run(lambda: guard.check_hop(URL("http://localhost:8080/stream")))
    monkeypatch.setenv("NO_PROXY", "localhost")
    get_bridge().run(lambda: guard.check_hop(URL("http://localhost:8080/stream")))  # direct: judged at connect time
