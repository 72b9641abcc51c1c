"""Destination safety for tools that fetch user-supplied URLs.

Link-local and cloud-metadata addresses are always refused: they let a URL typed into a
workflow read a cloud instance's credentials. Private and loopback ranges are allowed
unless `block_private_networks` is on, because self-hosted Dify calls internal services.

The check runs on the address a socket is about to connect to (aiohttp's
`TCPConnector(socket_factory=guard.socket_factory)`), so it sees every connection:
names resolved by any DNS trick, IP literals, and every redirect hop. `check_url` adds
an early, clearer refusal for IP literals before anything is sent.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from yarl import URL

from fanin.errors import FaninError

__all__ = [
    "ALWAYS_BLOCKED",
    "PRIVATE_NETWORKS",
    "DestinationRefused",
    "AddressGuard",
    "block_private_from_env",
    "guard_from_env",
]

ALWAYS_BLOCKED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.0.0/16",  # IPv4 link-local, incl. 169.254.169.254 (AWS, GCP, Azure metadata)
        "fe80::/10",  # IPv6 link-local
        "fd00:ec2::254/128",  # AWS metadata over IPv6
        "100.100.100.200/32",  # Alibaba Cloud metadata
    )
)

PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this host": connects to loopback on Linux
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT, used inside clouds and clusters
        "127.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "::/128",
        "::1/128",
        "fc00::/7",  # unique local
    )
)

ENV_NAME = "BLOCK_PRIVATE_NETWORKS"
_TRUE = {"1", "true", "yes", "on"}


class DestinationRefused(FaninError, OSError):
    """A connection to a refused address. An OSError too, so it travels through aiohttp's
    connect path (which wraps OSErrors) and still names the reason in one line."""

    kind = "refused_destination"

    def __init__(self, message: str) -> None:
        FaninError.__init__(self, message)
        self.strerror = message

    def __str__(self) -> str:
        return self.strerror


def _plain_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address):
    """IPv4 hidden inside IPv6 (::ffff:a.b.c.d, 6to4 style mapping) is judged as IPv4."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
    return ip


class AddressGuard:
    """Decides whether a connection to an IP address may be opened."""

    def __init__(self, *, block_private: bool = False) -> None:
        self.block_private = block_private

    def refusal(self, address: str) -> str | None:
        """Why `address` is refused, or None when it is allowed."""
        try:
            ip = _plain_address(ipaddress.ip_address(address.split("%", 1)[0]))
        except ValueError:
            return f"cannot judge destination address {address!r}; refused"
        if any(ip in net for net in ALWAYS_BLOCKED):
            return f"destination {ip} is a link-local or cloud-metadata address; refused"
        if self.block_private and (any(ip in net for net in PRIVATE_NETWORKS) or ip.is_private or ip.is_loopback):
            return f"destination {ip} is a private or loopback address and {ENV_NAME} is on; refused"
        if ip.is_multicast:
            return f"destination {ip} is not a unicast address; refused"
        return None

    def check_ip(self, address: str) -> None:
        reason = self.refusal(address)
        if reason:
            raise DestinationRefused(reason)

    def check_url(self, url: str) -> None:
        """Early refusal of an IP-literal host (names are judged at connect time)."""
        try:
            host = URL(url).host
        except (ValueError, TypeError):
            return  # the engine's own validation reports a bad URL
        if not host:
            return
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return
        self.check_ip(host)

    def preflight(self, url: str) -> None:
        """Before a run: refuse IP literals at once, and when the request will go through
        an HTTP(S) proxy (which resolves the name itself, out of our sight) resolve the name
        here and judge every address it has."""
        self.check_url(url)
        try:
            parsed = URL(url)
        except (ValueError, TypeError):
            return
        host = parsed.host
        if not host or not _proxied(parsed):
            return
        try:
            infos = socket.getaddrinfo(host, parsed.port or 80, type=socket.SOCK_STREAM)
        except OSError:
            return  # the proxy reports the failure to resolve
        for info in infos:
            self.check_ip(info[4][0])

    def socket_factory(self, addr_info) -> socket.socket:
        """aiohttp TCPConnector socket_factory: judge the resolved address, then make the socket.

        Under gevent the plain socket module is patched; the engine runs on its own asyncio
        loop, so it gets the original socket class (no greenlet machinery in the way).
        """
        family, type_, proto, _canon, sockaddr = addr_info
        self.check_ip(sockaddr[0])
        return _socket_class()(family=family, type=type_, proto=proto)


def _proxied(url: URL) -> bool:
    proxies = urllib.request.getproxies()
    if not proxies.get(url.scheme):
        return False
    return not urllib.request.proxy_bypass(url.host or "")


def _socket_class():
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("socket"):
        return monkey.get_original("socket", "socket")
    return socket.socket


def _read_dotenv(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return values
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        values[key.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return values


def block_private_from_env(environ: Mapping[str, str] | None = None, dotenv: Path | None = None) -> bool:
    """`BLOCK_PRIVATE_NETWORKS` (any case) from the environment, else from a `.env` file
    in the working directory (the plugin's own directory under Dify)."""
    env = os.environ if environ is None else environ
    for key, value in env.items():
        if key.upper() == ENV_NAME:
            return value.strip().lower() in _TRUE
    for key, value in _read_dotenv(dotenv or Path.cwd() / ".env").items():
        if key.upper() == ENV_NAME:
            return value.strip().lower() in _TRUE
    return False


def guard_from_env(environ: Mapping[str, str] | None = None, dotenv: Path | None = None) -> AddressGuard:
    return AddressGuard(block_private=block_private_from_env(environ, dotenv))
