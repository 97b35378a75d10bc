"""The platform catalog: what the probe tests, kept as data (one TOML file per platform).

A file holds `platform`, `display_name`, optionally `control = true`, and `[[targets]]` entries,
each either `url = "https://host/path"` or `kind` ("dns" | "tcp" | "http" | "https") with `host`
and `ports`, plus optional `method`, `path`, `name`, `group` and `speaks`. The same entry shape is
accepted in config.toml's `[[targets]]`, so users extend the catalog with the words it is written
in.

`speaks` says what the endpoint's own traffic is, when the kind alone does not: "tls" for a tcp
endpoint that speaks TLS with its name as SNI (Facebook's b-api, edge-mqtt, fbcdn hosts: measured
with a TLS handshake, so a protocol allowlist that passes TLS passes them too), "raw" for an
endpoint the app speaks a protocol of its own to (WhatsApp's chat servers, the tcp default; or
Telegram's data centres, which OONI probes with a plain-HTTP POST but the app speaks MTProto
to). An https target speaks tls and an http target http unless it says raw.

A platform's semantics are data too, so a new platform is one file:
- `[groups.NAME]` declares a group of interchangeable endpoints (Telegram's data centres): the
  group is blocked only when every member fails. `core = true` marks the endpoints the app itself
  talks to: that group blocked blocks the platform whatever its web pages do. A target's `group`
  must name a declared group. (A target's own ports are all-fail too: a WhatsApp chat endpoint on
  443 and 5222 is blocked only when every connect fails, as its verdict rules decide.)
- `owner_asns = [...]` lists the networks that own the platform's addresses (Facebook's AS32934):
  a DNS answer outside them is flagged as suspicious when an IP -> ASN lookup is available.
- `transfer = true` on an http(s) target marks a large resource (a static asset of the
  platform's CDN, a video) read for its goodput within the transfer bounds; the control sites'
  transfers of the same size are the reference a throttled one is compared with.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dns.exception
import dns.name

from probe.model import Speaks, Target, TargetKind

_DEFAULT_PORTS = {TargetKind.HTTP: (80,), TargetKind.HTTPS: (443,)}
_ENTRY_KEYS = frozenset(
    {
        "url",
        "kind",
        "host",
        "ports",
        "method",
        "path",
        "name",
        "group",
        "platform",
        "speaks",
        "transfer",
    }
)
_METHODS = frozenset({"GET", "POST", "HEAD"})
# What each kind of target may say it speaks (the first is the kind's own, Target.protocol).
_SPEAKS = {
    TargetKind.TCP: (Speaks.RAW, Speaks.TLS),
    TargetKind.HTTP: (Speaks.HTTP, Speaks.RAW),
    TargetKind.HTTPS: (Speaks.TLS,),
    TargetKind.DNS: (),
}


class CatalogError(ValueError):
    """A catalog entry is malformed; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Group:
    """Interchangeable endpoints of one platform, blocked only when every member fails.

    core: the endpoints the app itself connects to; this group blocked blocks the platform.
    """

    name: str
    core: bool = False


@dataclass(frozen=True, slots=True)
class Platform:
    """A platform, its targets, and how their results fold into the platform's status."""

    name: str
    display_name: str
    targets: tuple[Target, ...]
    control: bool = False
    groups: tuple[Group, ...] = ()
    owner_asns: frozenset[int] = frozenset()

    @property
    def core_groups(self) -> frozenset[str]:
        """Names of the groups whose full blocking blocks the platform."""
        return frozenset(group.name for group in self.groups if group.core)


def _check_host(host: str, where: str) -> str:
    host = host.strip().rstrip(".").lower()
    if not host:
        raise CatalogError(f"{where}: empty host")
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        pass
    labels = host.split(".")
    if not all(label and all(c.isalnum() or c in "-_" for c in label) for label in labels):
        raise CatalogError(f"{where}: {host!r} is not a valid host name or IP address")
    problem = _unencodable(host)
    if problem is not None:
        raise CatalogError(f"{where}: {host!r:.300} cannot be encoded as a DNS name ({problem})")
    return host


def _unencodable(host: str) -> str | None:
    """Why `host` has no DNS wire form, or None: the IDNA encoding getaddrinfo, the TLS SNI and
    dnspython all use (Python's IDNA 2003 codec) must succeed, and a label is at most 63 octets
    and a name 253 once encoded (RFC 1035 section 2.3.4, RFC 5890 section 2.3.2.1)."""
    try:
        # The codec first: it says why (dnspython reports every codec error as "label too long").
        encoded = host.encode("idna").decode("ascii")
        dns.name.from_text(encoded)
    except (dns.exception.DNSException, UnicodeError) as exc:
        return str(exc) or type(exc).__name__
    if len(encoded) > 253:
        return f"{len(encoded)} octets once encoded, more than 253"
    return None


def _check_ports(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise CatalogError(f"{where}: 'ports' must be a non-empty list of port numbers")
    ports = []
    for port in value:
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise CatalogError(f"{where}: {port!r} is not a port number (1-65535)")
        ports.append(port)
    return tuple(dict.fromkeys(ports))


def _check_speaks(value: Any, kind: TargetKind, where: str) -> Speaks | None:
    """The entry's `speaks`, None when absent or the kind's own (so a target's identity does not
    depend on spelling out the default)."""
    if value is None:
        return None
    allowed = _SPEAKS[kind]
    try:
        speaks = Speaks(value) if isinstance(value, str) else None
    except ValueError:
        speaks = None
    if speaks is None or speaks not in allowed:
        choices = ", ".join(s.value for s in allowed) or "nothing (it is only resolved)"
        raise CatalogError(f"{where}: 'speaks' of a kind {kind} target must be one of {choices}")
    return None if speaks is allowed[0] else speaks


def parse_url_target(
    url: str, platform: str, *, where: str, control: bool = False, source: str = "catalog"
) -> Target:
    """A Target for an http(s) URL: the shape test lists and `url =` entries use."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise CatalogError(f"{where}: {url!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CatalogError(f"{where}: {url!r} is not an http:// or https:// URL")
    kind = TargetKind(parts.scheme)
    host = _check_host(parts.hostname, where)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(
        platform=platform,
        name=url.strip(),
        kind=kind,
        host=host,
        ports=(port,) if port else _DEFAULT_PORTS[kind],
        path=path,
        control=control,
        source=source,
    )


def parse_target(
    entry: Mapping[str, Any],
    platform: str,
    *,
    where: str,
    control: bool = False,
    source: str = "catalog",
) -> Target:
    """A Target from one `[[targets]]` table; CatalogError names `where` on any mistake."""
    unknown = set(entry) - _ENTRY_KEYS
    if unknown:
        raise CatalogError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    method = str(entry.get("method", "GET")).upper()
    if method not in _METHODS:
        raise CatalogError(f"{where}: method must be one of {', '.join(sorted(_METHODS))}")
    group = entry.get("group")
    if group is not None and not isinstance(group, str):
        raise CatalogError(f"{where}: 'group' must be a string")
    transfer = entry.get("transfer", False)
    if not isinstance(transfer, bool):
        raise CatalogError(f"{where}: 'transfer' must be true or false")
    if "url" in entry:
        if "host" in entry or "kind" in entry:
            raise CatalogError(f"{where}: give either 'url' or 'kind' + 'host', not both")
        if not isinstance(entry["url"], str):
            raise CatalogError(f"{where}: 'url' must be a string")
        target = parse_url_target(
            entry["url"], platform, where=where, control=control, source=source
        )
        name = entry.get("name", target.name)
        return Target(
            platform=target.platform,
            name=str(name),
            kind=target.kind,
            host=target.host,
            ports=_check_ports(entry["ports"], where) if "ports" in entry else target.ports,
            path=target.path,
            method=method,
            control=control,
            source=source,
            group=group,
            speaks=_check_speaks(entry.get("speaks"), target.kind, where),
            transfer=transfer,
        )
    try:
        kind = TargetKind(str(entry.get("kind", "")))
    except ValueError:
        raise CatalogError(
            f"{where}: 'kind' must be one of dns, tcp, http, https (or give a 'url')"
        ) from None
    if not isinstance(entry.get("host"), str):
        raise CatalogError(f"{where}: 'host' is required and must be a string")
    host = _check_host(entry["host"], where)
    if transfer and kind not in _DEFAULT_PORTS:
        raise CatalogError(f"{where}: only an http or https target can be a transfer")
    if kind is TargetKind.DNS:
        ports: tuple[int, ...] = ()
    elif "ports" in entry:
        ports = _check_ports(entry["ports"], where)
    elif kind in _DEFAULT_PORTS:
        ports = _DEFAULT_PORTS[kind]
    else:
        raise CatalogError(f"{where}: a tcp target needs 'ports'")
    path = str(entry.get("path", "/"))
    if not path.startswith("/"):
        raise CatalogError(f"{where}: 'path' must start with '/'")
    return Target(
        platform=platform,
        name=str(entry.get("name", host)),
        kind=kind,
        host=host,
        ports=ports,
        path=path,
        method=method,
        control=control,
        source=source,
        group=group,
        speaks=_check_speaks(entry.get("speaks"), kind, where),
        transfer=transfer,
    )


def parse_platform(document: Mapping[str, Any], *, where: str) -> Platform:
    """A Platform from a parsed catalog TOML document."""
    name = document.get("platform")
    if not isinstance(name, str) or not name.strip():
        raise CatalogError(f"{where}: 'platform' (a name) is required")
    unknown = set(document) - _PLATFORM_KEYS
    if unknown:
        raise CatalogError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    control = bool(document.get("control", False))
    entries = document.get("targets", [])
    if not isinstance(entries, list):
        raise CatalogError(f"{where}: 'targets' must be an array of tables ([[targets]])")
    groups = _parse_groups(document.get("groups", {}), where)
    declared = {group.name for group in groups}
    targets = []
    for i, entry in enumerate(entries):
        target = parse_target(entry, name, where=f"{where}: targets[{i}]", control=control)
        if target.group is not None and target.group not in declared:
            raise CatalogError(
                f"{where}: targets[{i}]: group {target.group!r} is not declared"
                f" (add a [groups.{target.group}] table)"
            )
        targets.append(target)
    _check_unique(targets, where)
    empty = declared - {t.group for t in targets}
    if empty:
        raise CatalogError(f"{where}: group(s) {', '.join(sorted(empty))} have no targets")
    return Platform(
        name,
        str(document.get("display_name", name)),
        tuple(targets),
        control,
        groups,
        _parse_asns(document.get("owner_asns", []), where),
    )


def _parse_groups(value: Any, where: str) -> tuple[Group, ...]:
    if not isinstance(value, dict):
        raise CatalogError(f"{where}: 'groups' must be a table of [groups.NAME] tables")
    groups = []
    for name, table in value.items():
        if not isinstance(table, dict):
            raise CatalogError(f"{where}: groups.{name} must be a table")
        unknown = set(table) - {"core"}
        if unknown:
            raise CatalogError(
                f"{where}: groups.{name}: unknown key(s) {', '.join(sorted(unknown))}"
            )
        core = table.get("core", False)
        if not isinstance(core, bool):
            raise CatalogError(f"{where}: groups.{name}: 'core' must be true or false")
        groups.append(Group(name, core))
    return tuple(groups)


def _parse_asns(value: Any, where: str) -> frozenset[int]:
    if not isinstance(value, list):
        raise CatalogError(f"{where}: 'owner_asns' must be a list of AS numbers")
    for asn in value:
        # AS numbers are 32-bit (RFC 6793); 0 is reserved (RFC 7607).
        if not isinstance(asn, int) or isinstance(asn, bool) or not 0 < asn < 2**32:
            raise CatalogError(f"{where}: owner_asns: {asn!r} is not an AS number")
    return frozenset(value)


_PLATFORM_KEYS = frozenset(
    {"platform", "display_name", "control", "targets", "groups", "owner_asns"}
)


def _check_unique(targets: Iterable[Target], where: str) -> None:
    seen: set[tuple[str, str]] = set()
    for target in targets:
        key = (target.platform, target.name)
        if key in seen:
            raise CatalogError(f"{where}: duplicate target {target.name!r} in {target.platform}")
        seen.add(key)


def load_platform_file(path: Path) -> Platform:
    """Read one catalog TOML file."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{path}: not valid TOML ({exc})") from None
    return parse_platform(document, where=str(path))


def builtin_platforms() -> list[Platform]:
    """The catalog shipped with the package, controls included."""
    return list(_builtin_platforms())


@cache
def _builtin_platforms() -> tuple[Platform, ...]:
    # Read once per process: the package's files do not change while it runs, and summaries
    # consult the catalog for every run they fold.
    folder = resources.files(__name__)
    platforms = []
    for item in sorted(folder.iterdir(), key=lambda entry: entry.name):
        if item.name.endswith(".toml"):
            document = tomllib.loads(item.read_text(encoding="utf-8"))
            platforms.append(parse_platform(document, where=f"built-in catalog {item.name}"))
    return tuple(platforms)


def load_catalog(override_dir: Path | None = None) -> list[Platform]:
    """The built-in catalog, with each `*.toml` in `override_dir` replacing or adding a platform."""
    platforms = {platform.name: platform for platform in builtin_platforms()}
    if override_dir is not None:
        if not override_dir.is_dir():
            raise CatalogError(f"catalog directory {override_dir} does not exist")
        for path in sorted(override_dir.glob("*.toml")):
            platform = load_platform_file(path)
            platforms[platform.name] = platform
    return list(platforms.values())


def target_groups(targets: Iterable[Target]) -> dict[tuple[str, str], str]:
    """(platform, target name) -> the catalog group of each target that has one."""
    return {(t.platform, t.name): t.group for t in targets if t.group}


def builtin_targets() -> list[Target]:
    """Every target of the built-in catalog (controls included, flagged `control=True`)."""
    return [target for platform in builtin_platforms() for target in platform.targets]
