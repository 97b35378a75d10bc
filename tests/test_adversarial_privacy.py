"""Adversarial privacy suite: every form in which a page, a header, a cookie or an rDNS name can
spell the volunteer's address is scrubbed, and the same form of another address stays (the
negative control of each case)."""

from __future__ import annotations

import base64
import ipaddress
import json

import pytest

from probe.privacy import SCRUBBED, Scrubber

OWN_V4 = ipaddress.IPv4Address("5.160.12.34")
OTHER_V4 = ipaddress.IPv4Address("5.160.12.35")  # the next address: another volunteer
OWN_V6 = ipaddress.IPv6Address("2a01:5ec0:1234:5678::abcd")
OTHER_V6 = ipaddress.IPv6Address("2a01:5ec0:1234:5679::abcd")  # the next /64: another line


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _jwt(address: ipaddress.IPv4Address) -> str:
    claims = json.dumps({"sub": "visitor", "ip": str(address)}).encode()
    parts = (b'{"alg":"HS256","typ":"JWT"}', claims, b"\x8f" * 32)
    return ".".join(base64.urlsafe_b64encode(p).decode().rstrip("=") for p in parts)


def _v4_forms(a: ipaddress.IPv4Address) -> dict[str, str]:
    n = int(a)
    o = a.packed
    return {
        "hex": f"{n:08x}",
        "hex without leading zero": f"{n:x}",
        "0x-hex": f"0x{n:08X}",
        "decimal integer": str(n),
        "octal integer": "0" + format(n, "o"),
        "dotted octal": ".".join("0" + format(b, "o") for b in o),
        "dotted 0x-hex": ".".join(f"0x{b:x}" for b in o),
        "URL-encoded dots": "%2E".join(str(b) for b in o),
        "URL-encoded dots, lower case": "%2e".join(str(b) for b in o),
        "underscores": "_".join(str(b) for b in o),
        "dashes": "-".join(str(b) for b in o) + ".dyn.example.ir",
        "dashes, reversed": "-".join(str(b) for b in reversed(o)) + ".pool.example.ir",
        "underscores, reversed": "_".join(str(b) for b in reversed(o)),
        "in-addr.arpa": a.reverse_pointer,
        "IPv4-mapped": f"::ffff:{a}",
        "IPv4-mapped, hex": f"::ffff:{n >> 16:x}:{n & 0xFFFF:x}",
        "IPv4-mapped, uncompressed": f"0:0:0:0:0:ffff:{a}",
        "NAT64": f"64:ff9b::{a}",
        "NAT64, hex": f"64:ff9b::{n >> 16:x}:{n & 0xFFFF:x}",
        "NAT64 local-use": f"64:ff9b:1:abcd::{a}",
        "6to4": f"2002:{n >> 16:x}:{n & 0xFFFF:x}::1",
        "Teredo": str(ipaddress.IPv6Address((0x20010000 << 96) | (~n & 0xFFFFFFFF))),
        "base64, aligned": _b64(str(a)),
        "base64, offset 1": _b64(f"x{a}"),
        "base64, offset 2": _b64(f'i="{a}";'),
        "base64url JWT claim": _jwt(a),
        "base64 behind glued text": "s%3A" + _b64(f"ip={a}"),
        "base64 of the raw 4 bytes": base64.b64encode(b"\x01" + o + b"\x02\x03").decode(),
        "base64 inside URL-encoding": _b64(f"ip={a}").replace("=", "%3D"),
        "URL-encoding inside base64": _b64(str(a).replace(".", "%2E")),
    }


def _v6_forms(a: ipaddress.IPv6Address) -> dict[str, str]:
    groups = a.exploded.split(":")
    return {
        "dashes, rDNS": a.compressed.replace(":", "-") + ".dyn.example.net",
        "dashes, uncompressed": "-".join(groups),
        "dashes, reversed": "-".join(reversed(groups)) + ".rev.example.net",
        "underscores": "_".join(groups),
        "32 hex digits": f"{int(a):032x}",
        "32 hex digits, upper case": f"{int(a):032X}",
        "the /64 as 16 hex digits": f"{int(a) >> 64:016x}",
        "the /64 alone": ":".join(groups[:4]),
        "ip6.arpa": a.reverse_pointer,
        "ip6.arpa of the /64 (a delegation)": ".".join(reversed(f"{int(a) >> 64:016x}"))
        + ".ip6.arpa",
        "URL-encoded colons": a.compressed.replace(":", "%3A"),
        "URL-encoded brackets": f"%5B{a.compressed}%5D",
        "base64": _b64(f"addr={a.compressed}"),
        "base64 of the raw /64": base64.b64encode(a.packed[:8] + b"\x00\x01").decode(),
        "upper case": a.exploded.upper(),
        "another address in the /64 (privacy extension)": str(
            ipaddress.IPv6Address(int(a) ^ 0x9F1E11FFFE223344)
        ),
    }


V4_CASES = sorted(_v4_forms(OWN_V4))
V6_CASES = sorted(_v6_forms(OWN_V6))


def _scrubber() -> Scrubber:
    return Scrubber([OWN_V4, OWN_V6])


@pytest.mark.parametrize("form", V4_CASES)
def test_ipv4_form_is_scrubbed(form: str) -> None:
    spelled = _v4_forms(OWN_V4)[form]
    scrubbed = _scrubber().text(f"seen: {spelled} (end)")
    assert spelled not in scrubbed
    assert SCRUBBED in scrubbed
    assert scrubbed.startswith("seen: ") and scrubbed.endswith(" (end)")


@pytest.mark.parametrize("form", V4_CASES)
def test_ipv4_form_of_another_address_stays(form: str) -> None:
    spelled = _v4_forms(OTHER_V4)[form]
    assert _scrubber().text(f"seen: {spelled} (end)") == f"seen: {spelled} (end)"


@pytest.mark.parametrize("form", V6_CASES)
def test_ipv6_form_is_scrubbed(form: str) -> None:
    spelled = _v6_forms(OWN_V6)[form]
    scrubbed = _scrubber().text(f"seen: {spelled} (end)")
    assert spelled not in scrubbed
    assert SCRUBBED in scrubbed


@pytest.mark.parametrize("form", V6_CASES)
def test_ipv6_form_of_another_line_stays(form: str) -> None:
    spelled = _v6_forms(OTHER_V6)[form]
    assert _scrubber().text(f"seen: {spelled} (end)") == f"seen: {spelled} (end)"


def test_scrubbing_keeps_the_text_around_the_address() -> None:
    page = f'<span id="cf-footer-ip">{OWN_V4}</span> Ray ID: 8e5a1f2b3c4d5e6f'
    assert (
        _scrubber().text(page)
        == f'<span id="cf-footer-ip">{SCRUBBED}</span> Ray ID: 8e5a1f2b3c4d5e6f'
    )


@pytest.mark.parametrize(
    "hostile",
    [":" * 5000, "0:0::" * 1000, "1." * 3000, "12-" * 2000, "%2525" * 1000, "A" * 20000],
)
def test_hostile_runs_are_scanned_and_left_alone(hostile: str) -> None:
    # Pathological runs (no address in them) come back unchanged: the scanner splits them into
    # bounded candidates instead of trying every stretch (its speed: benchmarks/scrub_benchmark).
    assert _scrubber().text(hostile) == hostile
