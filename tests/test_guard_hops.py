"""The destination guard judges every hop, with or without a proxy (issue 8, class 1).

The scenarios run in tests/guard_scenarios.py inside a network namespace with only loopback,
where `metadata.test` resolves to 169.254.169.254: a loopback HTTP forward proxy (which never
contacts a non-loopback target: it answers for it with fake metadata) and a loopback server
that redirects wherever it is told. A refused hop must fail the Dify tool with one line before
the proxy is ever asked for it.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from yarl import URL

from fanin.embed.netguard import AddressGuard, DestinationRefused

HERE = Path(__file__).resolve().parent
HOSTS = "127.0.0.1 localhost\n::1 localhost\n169.254.169.254 metadata.test\n64:ff9b:1::a9fe:a9fe nat64local.test\n"


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict:
    assert shutil.which("unshare") and shutil.which("ip"), "these tests need util-linux unshare and iproute2 ip"
    hosts = tmp_path_factory.mktemp("netns") / "hosts"
    hosts.write_text(HOSTS)
    script = (f"mount --bind {hosts} /etc/hosts && ip link set lo up && "
              f"exec {sys.executable} {HERE / 'guard_scenarios.py'}")
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "http_proxy", "https_proxy")}
    result = subprocess.run(["unshare", "--map-root-user", "--net", "--mount", "sh", "-c", script],
                            capture_output=True, timeout=120, env=env, cwd=HERE.parent)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    return orjson.loads(result.stdout)


def assert_refused_before_the_proxy(outcome: dict, reason: str) -> None:
    assert outcome["failed"], outcome
    message = outcome["message"]
    assert reason in message and "\n" not in message and "guard-scenario-token" not in message
    assert all(URL(url).host == "127.0.0.1" for url in outcome["proxy_saw"]), outcome["proxy_saw"]


@pytest.mark.parametrize("scenario", ["proxy_redirect_literal", "proxy_redirect_name", "proxy_redirect_nat64",
                                      "proxy_redirect_6to4"])
def test_through_a_proxy_a_redirect_to_metadata_is_refused_before_it_is_requested(outcomes, scenario):
    outcome = outcomes[scenario]
    assert_refused_before_the_proxy(outcome, "link-local or cloud-metadata")
    assert "not followed" in outcome["message"]
    assert len(outcome["proxy_saw"]) == 1  # the first, allowed URL went through the proxy


def test_through_a_proxy_a_name_that_cannot_be_resolved_here_is_refused(outcomes):
    assert_refused_before_the_proxy(outcomes["proxy_redirect_unresolvable"], "cannot resolve nowhere.invalid")


def test_through_a_proxy_the_first_url_is_resolved_and_judged(outcomes):
    outcome = outcomes["proxy_first_url_name"]
    assert_refused_before_the_proxy(outcome, "link-local or cloud-metadata")
    assert outcome["proxy_saw"] == []


def test_through_a_proxy_allowed_hops_go_through(outcomes):
    """The control: the same proxy and redirect, to an allowed target, complete."""
    outcome = outcomes["proxy_allowed"]
    assert not outcome["failed"] and outcome["status"] == "completed"
    assert len(outcome["proxy_saw"]) == 2 and '"server":"A"' in outcome["answer"]


@pytest.mark.parametrize("scenario", ["direct_redirect_name", "direct_redirect_nat64", "direct_redirect_nat64_local",
                                      "direct_redirect_nat64_local_64", "proxy_redirect_nat64_local"])
def test_without_a_proxy_a_redirect_to_metadata_is_refused(outcomes, scenario):
    assert_refused_before_the_proxy(outcomes[scenario], "link-local or cloud-metadata")


@pytest.mark.parametrize("scenario", ["direct_first_url_nat64_local_name", "proxy_first_url_nat64_local_name"])
def test_a_name_resolving_to_local_use_nat64_metadata_is_refused(outcomes, scenario):
    """Direct: the socket check judges the address the name resolved to (before any connect;
    with only loopback up, a connect would fail with "unreachable" instead). Through the
    proxy: the name is resolved and judged before the proxy is asked."""
    outcome = outcomes[scenario]
    assert_refused_before_the_proxy(outcome, "64:ff9b:1::a9fe:a9fe (IPv4 169.254.169.254) is a link-local")
    assert outcome["proxy_saw"] == []


@pytest.mark.parametrize("address", ["64:ff9b::a9fe:a9fe", "64:ff9b::169.254.169.254", "2002:a9fe:a9fe::1",
                                     "2002:a9fe:a9fe:1234::5", "::169.254.169.254", "::ffff:169.254.169.254",
                                     "64:ff9b::6464:64c8", "64:ff9b:1::a9fe:a9fe", "64:ff9b:1:ab::169.254.169.254",
                                     "64:ff9b:1:0:a9:fea9:fe00:0", "64:ff9b:1:a9fe:a9:fe00::", "64:ff9b:1:9:a9:fea9:fe00::"])
def test_ipv4_inside_ipv6_is_judged_as_that_ipv4(address):
    for guard in (AddressGuard(), AddressGuard(block_private=True)):
        with pytest.raises(DestinationRefused, match="link-local or cloud-metadata"):
            guard.check_ip(address)


@pytest.mark.parametrize("address", ["64:ff9b::7f00:1", "2002:a00:1::1", "64:ff9b::c0a8:101", "::10.0.0.1",
                                     "64:ff9b:1::a00:1", "64:ff9b:1:fffe::7f00:1"])
def test_private_ipv4_inside_ipv6_is_refused_when_private_networks_are_blocked(address):
    AddressGuard().check_ip(address)
    with pytest.raises(DestinationRefused, match="BLOCK_PRIVATE_NETWORKS"):
        AddressGuard(block_private=True).check_ip(address)


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "2002:808:808::1", "2606:4700::1111", "64:ff9b:1::808:808",
                                     "64:ff9b:1:ab::808:808", "64:ff9b:1:0:8:808:800:0"])
def test_public_ipv4_inside_ipv6_passes(address):
    assert ipaddress.ip_address(address)
    AddressGuard(block_private=True).check_ip(address)
