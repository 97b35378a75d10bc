"""A small MaxMind DB (.mmdb) writer for tests: networks -> records, in the format that
GeoLite2-ASN / GeoLite2-Country files use, readable by the `maxminddb` package.

Format (MaxMind DB spec 2.0): a binary search tree over the address bits (24-bit records: each
node is a left and a right record of 3 bytes), 16 zero bytes, the data section, then the metadata
marker and a metadata map. A record below the node count points at a node, equal to it means "no
data", above it points into the data section (value - node_count - 16). IPv4 networks live under
::/96 of an IPv6 tree, where readers look them up.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"


def _control(type_number: int, size: int) -> bytes:
    """The control byte(s) of a field: type in the top 3 bits (extended types in a second
    byte), size in the low 5 bits (29/30/31 announce 1/2/3 more size bytes)."""
    if size < 29:
        size_bits, extra = size, b""
    elif size < 29 + 256:
        size_bits, extra = 29, bytes([size - 29])
    elif size < 285 + 65536:
        size_bits, extra = 30, (size - 285).to_bytes(2, "big")
    else:
        size_bits, extra = 31, (size - 65821).to_bytes(3, "big")
    if type_number <= 7:
        return bytes([(type_number << 5) | size_bits]) + extra
    return bytes([size_bits, type_number - 7]) + extra


class Uint16(int):
    """An int written as uint16 whatever its size (the metadata's fields have fixed types)."""


class Uint32(int):
    """An int written as uint32."""


class Uint64(int):
    """An int written as uint64."""


_FIXED_UINT_TYPES: dict[type, int] = {Uint16: 5, Uint32: 6, Uint64: 9}


def encode(value: Any) -> bytes:
    """One value in the data section's encoding."""
    if type(value) in _FIXED_UINT_TYPES:
        raw = int(value).to_bytes((int(value).bit_length() + 7) // 8, "big")
        return _control(_FIXED_UINT_TYPES[type(value)], len(raw)) + raw
    if isinstance(value, bool):
        return _control(14, int(value))
    if isinstance(value, str):
        raw = value.encode()
        return _control(2, len(raw)) + raw
    if isinstance(value, float):
        return _control(3, 8) + struct.pack(">d", value)
    if isinstance(value, int):
        if value < 0:
            raise ValueError("negative integers are not needed here")
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
        if value < 1 << 16:
            return _control(5, len(raw)) + raw  # uint16
        if value < 1 << 32:
            return _control(6, len(raw)) + raw  # uint32
        return _control(9, len(raw)) + raw  # uint64
    if isinstance(value, Mapping):
        out = _control(7, len(value))
        for key, item in value.items():
            out += encode(str(key)) + encode(item)
        return out
    if isinstance(value, list | tuple):
        return _control(11, len(value)) + b"".join(encode(v) for v in value)
    raise TypeError(f"cannot encode {type(value).__name__}")


class _Node:
    __slots__ = ("children",)

    def __init__(self) -> None:
        self.children: list[_Node | int | None] = [None, None]  # node, data offset, or empty


def write_mmdb(
    path: Path,
    networks: Mapping[str, Mapping[str, Any]],
    *,
    database_type: str = "GeoLite2-ASN",
) -> Path:
    """Write an IPv6 tree (IPv4 under ::/96) mapping each network to its record."""
    root = _Node()
    data = b""
    offsets: dict[bytes, int] = {}
    for text, record in networks.items():
        network = ipaddress.ip_network(text)
        # As a 128-bit number an IPv4 address already sits under ::/96; only its depth differs.
        bits = network.prefixlen + (96 if network.version == 4 else 0)
        value = int(network.network_address)
        encoded = encode(dict(record))
        if encoded not in offsets:
            offsets[encoded] = len(data)
            data += encoded
        node = root
        for depth in range(bits):
            bit = (value >> (127 - depth)) & 1
            if depth == bits - 1:
                node.children[bit] = offsets[encoded]
                break
            child = node.children[bit]
            if not isinstance(child, _Node):
                if isinstance(child, int):
                    raise ValueError(f"{text} nests inside another network: not supported")
                child = _Node()
                node.children[bit] = child
            node = child

    order: list[_Node] = []
    queue = [root]
    while queue:
        node = queue.pop(0)
        order.append(node)
        queue.extend(c for c in node.children if isinstance(c, _Node))
    index = {id(node): i for i, node in enumerate(order)}
    node_count = len(order)

    def record_value(child: _Node | int | None) -> int:
        if child is None:
            return node_count
        if isinstance(child, _Node):
            return index[id(child)]
        return node_count + 16 + child

    tree = b"".join(
        b"".join(record_value(child).to_bytes(3, "big") for child in node.children)
        for node in order
    )
    metadata = {
        "node_count": Uint32(node_count),
        "record_size": Uint16(24),
        "ip_version": Uint16(6),
        "database_type": database_type,
        "languages": ["en"],
        "binary_format_major_version": Uint16(2),
        "binary_format_minor_version": Uint16(0),
        "build_epoch": Uint64(1_700_000_000),
        "description": {"en": "censorprobe test database"},
    }
    path.write_bytes(tree + bytes(16) + data + _METADATA_MARKER + encode(metadata))
    return path
