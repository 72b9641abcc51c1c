"""Destination safety for tools that fetch user-supplied URLs.

Link-local and cloud-metadata addresses are always refused: they let a URL typed into a
workflow read a cloud instance's credentials. Private and loopback ranges are allowed
unless `block_private_networks` is on, because self-hosted Dify calls internal services.
IPv4 carried inside IPv6 (`::ffff:a.b.c.d`, NAT64 `64:ff9b::/96` and the local-use
`64:ff9b:1::/48`, 6to4 `2002::/16`, IPv4-compatible `::a.b.c.d`) is judged as the IPv4
address it carries.

Two checks, wired into a run by `FanIn(connector_factory=..., check_hop=guard.check_hop)`:
- `socket_factory` judges the address a socket is about to connect to (aiohttp's
  `TCPConnector(socket_factory=...)`), so it sees every direct connection: names resolved
  by any DNS trick, IP literals, every redirect hop, and the proxy itself;
- `check_hop` runs before every URL is requested, the first and each redirect target (the
  engine follows redirects hop by hop): an IP literal is refused at once, and when the URL
  goes through an HTTP(S) proxy (which resolves the name itself, out of the socket check's
  sight) the name is resolved here and every address it has is judged.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from yarl import URL

from fanin.errors import FailureKind, FaninError

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

    kind = FailureKind.REFUSED_DESTINATION

    def __init__(self, message: str) -> None:
        FaninError.__init__(self, message)
        self.strerror = message

    def __str__(self) -> str:
        return self.strerror


_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix: the last 32 bits are IPv4
# RFC 8215 local-use prefix. A network may carve it into translation prefixes of any RFC 6052
# length, and the length (so where the IPv4 sits) is not visible in the address: the /96
# reading (the last 32 bits, by far the most used) is judged like the well-known prefix, and
# the /48, /56 and /64 readings are checked against the always-blocked ranges too.
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
# RFC 6052, section 2.2: the bytes of the IPv6 address holding the IPv4 for each prefix length
# (byte 8, bits 64-71, is the reserved "u" octet and never holds any of it).
_NAT64_LOCAL_LAYOUTS = ((6, 7, 9, 10), (7, 9, 10, 11), (9, 10, 11, 12))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d


def _plain_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address):
    """IPv4 carried inside IPv6 is judged as that IPv4 address: IPv4-mapped (::ffff:a.b.c.d),
    NAT64 (64:ff9b::a.b.c.d), 6to4 (2002:aabb:ccdd::/48) and IPv4-compatible (::a.b.c.d)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return ip
    if ip.scope_id:
        ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or ip in _NAT64_LOCAL or (ip in _IPV4_COMPATIBLE and int(ip) > 1):  # not :: or ::1
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def _other_nat64_readings(ip) -> list[ipaddress.IPv4Address]:
    """The IPv4 an address in the local-use NAT64 prefix carries under the other prefix
    lengths it may be used with (/48, /56, /64)."""
    if not isinstance(ip, ipaddress.IPv6Address) or ip not in _NAT64_LOCAL:
        return []
    packed = ip.packed
    return [ipaddress.IPv4Address(bytes(packed[i] for i in layout)) for layout in _NAT64_LOCAL_LAYOUTS]


class AddressGuard:
    """Decides whether a connection to an IP address may be opened."""

    def __init__(self, *, block_private: bool = False) -> None:
        self.block_private = block_private

    def refusal(self, address: str) -> str | None:
        """Why `address` is refused, or None when it is allowed."""
        try:
            given = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return f"cannot judge destination address {address!r}; refused"
        ip = _plain_address(given)
        shown = f"{ip}" if ip == given or ip.version == given.version else f"{given} (IPv4 {ip})"
        if any(ip in net for net in ALWAYS_BLOCKED):
            return f"destination {shown} is a link-local or cloud-metadata address; refused"
        for other in _other_nat64_readings(given):
            if any(other in net for net in ALWAYS_BLOCKED):
                return (f"destination {given} may carry IPv4 {other} (a local-use NAT64 address), a link-local or"
                        " cloud-metadata address; refused")
        if self.block_private and (any(ip in net for net in PRIVATE_NETWORKS) or ip.is_private or ip.is_loopback):
            return f"destination {shown} is a private or loopback address and {ENV_NAME} is on; refused"
        if ip.is_multicast:
            return f"destination {shown} is not a unicast address; refused"
        return None

    def check_ip(self, address: str) -> None:
        reason = self.refusal(address)
        if reason:
            raise DestinationRefused(reason)

    def check_url(self, url: str | URL) -> None:
        """Early refusal of an IP-literal host (names are judged at connect time)."""
        try:
            host = URL(url).host if isinstance(url, str) else url.host
        except (ValueError, TypeError):
            return  # the engine's own validation reports a bad URL
        if not host:
            return
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return
        self.check_ip(host)

    async def check_hop(self, url: URL) -> None:
        """Before each URL is requested (the first and every redirect target): refuse an IP
        literal at once; when the URL goes through an HTTP(S) proxy, which resolves the name
        itself out of the socket check's sight, resolve the name here and judge every
        address it has. A name that cannot be resolved here is refused rather than left to
        the proxy, whose resolver may see internal names this one cannot judge."""
        self.check_url(url)
        host = url.raw_host
        if not host or not _proxied(url):
            return  # direct: socket_factory judges the address actually connected to
        try:
            ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
            return  # an IP literal, judged above
        except ValueError:
            pass
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, url.port or 80, type=socket.SOCK_STREAM)
        except (OSError, ValueError):  # ValueError: a name no resolver accepts (e.g. bad IDNA)
            raise DestinationRefused(
                f"cannot resolve {url.host} to judge it before the proxy fetches it; refused") from None
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
