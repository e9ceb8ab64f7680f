"""Client addresses and blocked ranges, each in one spelling.

A dual-stack proxy or socket reports an IPv4 client as "::ffff:203.0.113.7", and IPv6 has
many spellings of one address. An address is written in one canonical form where it is read
(web/proxies.py), so that rate limits count one client once, a block matches it whatever
the spelling, and the stored address is the one the owner blocks.
"""

from __future__ import annotations

import ipaddress
import re

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_ZONE = re.compile(r"%[^/]*")


def client_address(text: str) -> str:
    """The canonical spelling of a client address: an IPv4-mapped IPv6 address as its IPv4
    address, IPv6 compressed in lower case, without a zone ("fe80::1%eth0" -> "fe80::1").
    Text that is no address is returned as it is."""
    if ":" not in text:  # IPv4 (or not an address): sockets and proxies write it one way
        return text
    try:
        address = ipaddress.IPv6Address(text.partition("%")[0])
    except ValueError:
        return text
    mapped = address.ipv4_mapped
    return str(mapped if mapped is not None else address)


def blocked_network(text: str) -> Network:
    """A blocked address or range as the client addresses it matches are spelled: an
    IPv4-mapped range is its IPv4 range ("::ffff:203.0.113.0/120" -> "203.0.113.0/24").
    Raises ValueError for text that is neither."""
    network = ipaddress.ip_network(_ZONE.sub("", text.strip()), strict=False)
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:  # always, inside ::ffff:0:0/96
            return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network
