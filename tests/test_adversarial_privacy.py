"""Adversarial privacy suite: every form in which a page, a header, a cookie or an rDNS name can
spell the volunteer's address is scrubbed, and the same form of another address stays (the
negative control of each case)."""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import io
import ipaddress
import json
import re
from pathlib import Path

import pytest
from aiohttp import web
from typer.testing import CliRunner

from analysis.export import write_measurements_csv, write_measurements_jsonl
from probe.checks.http import fetch
from probe.cli.app import app
from probe.config import Settings
from probe.model import Measurement
from probe.privacy import SCRUBBED, Scrubber, ScrubbingSink
from probe.store import Store
from tests.servers import hostile
from tests.servers.tls_certs import Pki
from tests.sites import Site
from tests.store_rows import make_run

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
    [
        ":" * 5000,
        "0:0::" * 1000,
        "1." * 3000,
        "12-" * 2000,
        "%2525" * 1000,
        "A" * 20000,
        "&#49;&#46;" * 2000,
        "&#&#x;" * 3000,
    ],
)
def test_hostile_runs_are_scanned_and_left_alone(hostile: str) -> None:
    # Pathological runs (no address in them) come back unchanged: the scanner splits them into
    # bounded candidates instead of trying every stretch (its speed: benchmarks/scrub_benchmark).
    assert _scrubber().text(hostile) == hostile


# -- the body hash is no address oracle ------------------------------------------------------

_ECHO_PAGE = (
    "<html><head><title>Attention Required! | Cloudflare</title></head><body>"
    "<p>Sorry, you have been blocked.</p><span>Cloudflare Ray ID: 8e5a1f2b3c4d5e6f</span>"
    "<span>Your IP: {ip}</span><!-- {dashed}.dyn.example.ir {integer} -->"
    "<script>var visitor='{b64}';</script>" + "<p>padding</p>" * 300 + "</body></html>"
)


def _echo_page(address: ipaddress.IPv4Address) -> bytes:
    """The page as a server that echoes the visitor's address writes it: the attacker knows
    the template and tries every candidate address."""
    return _ECHO_PAGE.format(
        ip=address,
        dashed=str(address).replace(".", "-"),
        integer=int(address),
        b64=_b64(f"ip={address}"),
    ).encode()


async def _echoing_server_measurement(
    tmp_path: Path, scrub_in_check: bool
) -> tuple[Path, str, str]:
    """Fetch the echoing page from a loopback server, store it scrubbed, export it: the
    database file and the CSV and JSON Lines text."""

    async def page(_request: web.Request) -> web.Response:
        return web.Response(body=_echo_page(OWN_V4), content_type="text/html")

    application = web.Application()
    application.router.add_get("/", page)
    scrubber = _scrubber()
    ctx = Pki().check_context()
    if scrub_in_check:
        ctx = dataclasses.replace(ctx, scrubber=scrubber)
    async with hostile.web_app(application) as server:
        observation = await fetch(server.url, ctx)
    assert observation.ok and observation.details.body_sha256 is not None
    path = tmp_path / "m.db"
    with Store.open(path) as store:
        run = make_run(store.probe_id())
        store.start_run(run)
        ScrubbingSink(store, scrubber).save_measurements(
            [Measurement(run.id, "p", "t", observation)]
        )
        csv_out, jsonl_out = io.StringIO(), io.StringIO()
        write_measurements_csv(store, csv_out)
        write_measurements_jsonl(store, jsonl_out)
    return path, csv_out.getvalue(), jsonl_out.getvalue()


@functools.cache
def _digests_of_the_16() -> dict[str, ipaddress.IPv4Address]:
    """The attacker's table: the echoed page's sha256 for every address of the volunteer's /16."""
    network = ipaddress.IPv4Network(f"{OWN_V4}/16", strict=False)
    return {hashlib.sha256(_echo_page(a)).hexdigest(): a for a in network}


def _brute_force(haystack: bytes) -> list[ipaddress.IPv4Address]:
    """Every address of the /16 whose echoed page's sha256 appears in `haystack` (the DB files
    or an export)."""
    table = _digests_of_the_16()
    found = re.findall(rb"[0-9a-f]{64}", haystack)
    return sorted({table[d.decode()] for d in found if d.decode() in table})


def _files(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(f"{path.name}*"))


async def test_body_hash_of_a_page_echoing_the_address_reveals_nothing(tmp_path: Path) -> None:
    path, csv_text, jsonl_text = await _echoing_server_measurement(tmp_path, scrub_in_check=True)
    for haystack in (_files(path), csv_text.encode(), jsonl_text.encode()):
        assert _brute_force(haystack) == []
        assert str(OWN_V4) not in haystack.decode("latin-1")
    record = json.loads(jsonl_text)
    # The digest is of the scrubbed body: two volunteers behind the same blockpage agree.
    scrubbed = _scrubber().text(_echo_page(OWN_V4).decode("latin-1")).encode("latin-1")
    assert record["details"]["body_sha256"] == hashlib.sha256(scrubbed).hexdigest()
    assert record["details"]["body_length"] == len(scrubbed)


async def test_body_hash_of_the_raw_page_would_reveal_the_address(tmp_path: Path) -> None:
    # The negative control: the digest of the unscrubbed body (the check without the scrubber)
    # is found by brute force over the /16, although the sink scrubbed every text field.
    path, csv_text, _ = await _echoing_server_measurement(tmp_path, scrub_in_check=False)
    assert _brute_force(_files(path)) == [OWN_V4]
    assert _brute_force(csv_text.encode()) == [OWN_V4]


# -- identifying metadata --------------------------------------------------------------------


def _settings_under(home: Path, ca: bytes = b"-----BEGIN CERTIFICATE-----\nMIIB\n") -> Settings:
    """The same configuration, its files under `home` (as /home/<user>/... would be)."""
    (home / "catalog").mkdir(parents=True)
    (home / "catalog" / "lo.toml").write_text('platform = "lo"\n')
    (home / "ca.pem").write_bytes(ca)
    (home / "list.csv").write_text("url\nhttps://example.org/\n")
    return Settings(
        database=str(home / "measurements.db"),
        ca_file=str(home / "ca.pem"),
        catalog_dir=home / "catalog",
        test_lists=(home / "list.csv",),
        upload_proxy=f"http://{home.name}:secret@proxy.example:3128",
    )


def test_config_digest_does_not_depend_on_where_the_user_lives(tmp_path: Path) -> None:
    alice = _settings_under(tmp_path / "home" / "alice")
    bob = _settings_under(tmp_path / "home" / "bob")
    assert alice.digest() == bob.digest()  # a guessed user name cannot be confirmed


def test_config_digest_still_tells_different_settings_apart(tmp_path: Path) -> None:
    # The control: the digest is of the meaning, so another CA (or catalog) changes it.
    alice = _settings_under(tmp_path / "alice")
    other = _settings_under(tmp_path / "bob", ca=b"-----BEGIN CERTIFICATE-----\nMIIC\n")
    assert alice.digest() != other.digest()
    (tmp_path / "alice" / "catalog" / "lo.toml").write_text('platform = "other"\n')
    assert alice.digest() != _settings_under(tmp_path / "carol").digest()


def test_a_runs_wall_clock_times_are_stored_to_the_second(site: Site, tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    result = CliRunner().invoke(
        app,
        ["run", "--config", str(site.config), "--db", str(db), "--i-understand-the-risks"],
    )
    assert result.exit_code == 0, result.stderr
    with Store.open(db) as store:
        (run,) = store.runs()
        durations = [m.observation.duration_ms for m in store.measurements(run_id=run.id)]
        starts = [m.observation.started_at for m in store.measurements(run_id=run.id)]
    assert run.started_at.microsecond == 0
    assert run.finished_at is not None and run.finished_at.microsecond == 0
    assert starts and all(when.microsecond == 0 for when in starts)  # measurements' too
    assert any(d != round(d) for d in durations)  # durations stay precise (the control)
