"""Addresses of a pool's servers as Envoy's STRICT_DNS cluster sees them.

A pool endpoint may be a DNS name standing for several servers (a Kubernetes headless
Service). Envoy re-resolves it every few seconds (its dns_refresh_rate, 5 s by default) and
prefers IPv4; the picker must name the same `ip:port` strings, so it resolves the same way
and as often.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

# Envoy's default dns_refresh_rate for STRICT_DNS clusters.
REFRESH_S = 5.0


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def endpoint(ip: str, port: int) -> str:
    """`ip:port`, an IPv6 address in brackets (the form override host takes)."""
    return f"[{ip}]:{port}" if ipaddress.ip_address(ip).version == 6 else f"{ip}:{port}"


def from_addrinfo(infos: Iterable[Any], port: int) -> list[str]:
    """getaddrinfo results -> endpoints, IPv4 only when there is any (Envoy's V4_PREFERRED)."""
    found = [ipaddress.ip_address(str(info[4][0])) for info in infos]
    v4 = [ip for ip in found if ip.version == 4]
    ips = sorted(set(v4 or found), key=lambda ip: (ip.version, int(ip)))
    return [endpoint(str(ip), port) for ip in ips]


def resolve(host: str, port: int) -> list[str]:
    """Blocking: for start-up, where the configuration is read."""
    if is_ip(host):
        return [endpoint(host, port)]
    return from_addrinfo(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM), port)


async def resolve_async(host: str, port: int) -> list[str]:
    """On the running loop (getaddrinfo runs in the loop's executor)."""
    if is_ip(host):
        return [endpoint(host, port)]
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return from_addrinfo(infos, port)
