"""Who is on the other end of a call: the client's address.

The peer of the call (`context.peer()`), unless that peer is a trusted proxy
(`limits.trusted_proxies`, e.g. the Envoy edge, which appends the address it
saw to x-forwarded-for): then the last x-forwarded-for entry. Entries before
the last are the client's own claims and are never believed. An IPv6 client
stands for its /64, which one subscriber holds whole.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import grpc

from dragoman.errors import InvalidArgument

FORWARDED_FOR = "x-forwarded-for"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """`limits.trusted_proxies`: comma-separated addresses or CIDR networks."""
    try:
        return tuple(ipaddress.ip_network(part.strip(), strict=False)
                     for part in text.split(",") if part.strip())
    except ValueError as e:
        raise InvalidArgument(f"setting limits.trusted_proxies: {e}") from None


def peer_host(peer: str) -> str:
    """The host of a gRPC peer string: "ipv4:10.0.0.1:5000" -> "10.0.0.1",
    "ipv6:[::1]:5000" -> "::1"; other kinds (unix sockets) as they are."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    if kind == "ipv6":
        host = rest.rpartition(":")[0] if rest.startswith("[") else rest
        return host.strip("[]")
    return peer


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _client_ip(
    context: grpc.aio.ServicerContext, trusted: Sequence[Network],
) -> tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address | None]:
    """The peer's host and the client's IP (None when the peer is not an IP)."""
    host = peer_host(context.peer() or "")
    ip = _ip(host)
    if ip is None:
        return host, None
    if any(ip in network for network in trusted):
        forwarded = [v for k, v in context.invocation_metadata() or () if k == FORWARDED_FOR]
        ip = _ip(str(forwarded[-1]).rpartition(",")[2] if forwarded else "") or ip
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return host, ip.ipv4_mapped
    return host, ip


def client_address(context: grpc.aio.ServicerContext, trusted: Sequence[Network] = ()) -> str:
    """The address a call comes from, as limits count it (see the module's docstring)."""
    host, ip = _client_ip(context, trusted)
    if ip is None:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def coarse_network(context: grpc.aio.ServicerContext, trusted: Sequence[Network] = ()) -> str:
    """The client's network as a device list shows it, never its address: the
    IPv4 /24 or IPv6 /48 around it; "" when the peer is not an IP."""
    _, ip = _client_ip(context, trusted)
    if ip is None:
        return ""
    prefix = 24 if isinstance(ip, ipaddress.IPv4Address) else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
