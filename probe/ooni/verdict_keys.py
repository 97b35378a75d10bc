"""OONI's own verdict keys in a document's test_keys, per experiment, with what each one judges.

Each key becomes an OoniKey: its raw value (as JSON text), OONI's outcome (ok, blocked, down,
unknown) and its Scope: the hosts it is about, how OONI combines them ("all" fail, or "any"
fails) and which of our techniques it speaks for (a TCP key is not contradicted by a DNS
verdict). The agreement module compares our verdicts with them through that scope.

Semantics, from ooni/spec nettests:
- ts-017 web_connectivity: `blocking` is false, null, or the layer ("dns", "tcp_ip",
  "http-failure", "http-diff"); `accessible` false with `blocking` false means the site is down.
- ts-020 telegram: `telegram_tcp_blocking` when every data centre fails at TCP,
  `telegram_http_blocking` when every data centre's HTTP fails, `telegram_web_status` for
  web.telegram.org.
- ts-018 whatsapp: `whatsapp_endpoints_status` "blocked" only when every endpoint fails,
  `registration_server_status` (v.whatsapp.net), `whatsapp_web_status` "blocked" when either
  of web.whatsapp.com's HTTP or HTTPS fails.
- ts-029 signal: `signal_backend_status` "blocked" when any backend fails.
- ts-019 facebook_messenger: `facebook_<endpoint>_dns_consistent` (the answers are in
  Facebook's AS32934), `facebook_<endpoint>_reachable` (TCP 443), and `facebook_dns_blocking` /
  `facebook_tcp_blocking` when any endpoint fails the respective check.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from probe.ooni.document import OoniDocument

# ooni/probe-cli internal/experiment/telegram: the data centres OONI connects to.
TELEGRAM_DCS = frozenset(
    {
        "149.154.175.50",
        "149.154.167.51",
        "149.154.175.100",
        "149.154.167.91",
        "149.154.171.5",
        "95.161.76.100",
    }
)
WHATSAPP_ENDPOINTS = frozenset(f"e{i}.whatsapp.net" for i in range(1, 17))
# ts-019: the endpoint names in facebook_<name>_... keys and the hosts they test.
FACEBOOK_ENDPOINTS = {
    "b_api": "b-api.facebook.com",
    "b_graph": "b-graph.facebook.com",
    "edge": "edge-mqtt.facebook.com",
    "external_cdn": "external.xx.fbcdn.net",
    "scontent_cdn": "scontent.xx.fbcdn.net",
    "star": "star.c10r.facebook.com",
    "stun": "stun.fbsbx.com",
}

_MAX_VALUE = 200


class OoniOutcome(StrEnum):
    """What OONI's key says: ok, blocked, down (the site failed for OONI's control too), or
    unknown (null, missing, or a value OONI does not define)."""

    OK = "ok"
    BLOCKED = "blocked"
    DOWN = "down"
    UNKNOWN = "unknown"


class Combine(StrEnum):
    """How OONI combines a key's hosts: blocked when ALL fail, or when ANY fails."""

    ALL = "all"
    ANY = "any"


@dataclass(frozen=True, slots=True)
class Scope:
    """What a key judges: the hosts (empty: every target of the document), how they combine,
    and the technique prefixes (dns., tcp., ...) it speaks for (empty: any technique)."""

    hosts: frozenset[str] = frozenset()
    combine: Combine = Combine.ANY
    techniques: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OoniKey:
    """One OONI verdict key of one document."""

    key: str
    value: str
    outcome: OoniOutcome
    scope: Scope


def _json(value: Any) -> str:
    encoded = json.dumps(value, ensure_ascii=True, default=str)
    return encoded if len(encoded) <= _MAX_VALUE else encoded[: _MAX_VALUE - 3] + "..."


class ValueKind(StrEnum):
    """How a key writes its verdict: a `_blocking` boolean (true: blocked), a `_reachable` or
    `_consistent` boolean (true: ok), or a `_status` string ("ok" or "blocked")."""

    BLOCKING = "blocking"
    OK_FLAG = "ok_flag"
    STATUS = "status"


@dataclass(frozen=True, slots=True)
class KeySpec:
    """One verdict key of an experiment: its name, how it is written, what it judges."""

    key: str
    kind: ValueKind
    scope: Scope


def decode_value(kind: ValueKind, value: Any) -> OoniOutcome:
    if kind is ValueKind.STATUS:
        return {"ok": OoniOutcome.OK, "blocked": OoniOutcome.BLOCKED}.get(
            value if isinstance(value, str) else "", OoniOutcome.UNKNOWN
        )
    if not isinstance(value, bool):
        return OoniOutcome.UNKNOWN
    blocked = value if kind is ValueKind.BLOCKING else not value
    return OoniOutcome.BLOCKED if blocked else OoniOutcome.OK


def encode_value(kind: ValueKind, outcome: OoniOutcome) -> bool | str | None:
    """The key's value for an outcome (None: OONI's null, undecided). Down is not blocked."""
    if outcome is OoniOutcome.UNKNOWN:
        return None
    blocked = outcome is OoniOutcome.BLOCKED
    if kind is ValueKind.STATUS:
        return "blocked" if blocked else "ok"
    return blocked if kind is ValueKind.BLOCKING else not blocked


_EVERY_FACEBOOK = frozenset(FACEBOOK_ENDPOINTS.values())

# The keys of each platform experiment, in the order the spec lists them.
KEY_SPECS: dict[str, tuple[KeySpec, ...]] = {
    "telegram": (
        KeySpec(
            "telegram_tcp_blocking", ValueKind.BLOCKING, Scope(TELEGRAM_DCS, Combine.ALL, ("tcp.",))
        ),
        KeySpec("telegram_http_blocking", ValueKind.BLOCKING, Scope(TELEGRAM_DCS, Combine.ALL)),
        KeySpec("telegram_web_status", ValueKind.STATUS, Scope(frozenset({"web.telegram.org"}))),
    ),
    "whatsapp": (
        KeySpec(
            "whatsapp_endpoints_status", ValueKind.STATUS, Scope(WHATSAPP_ENDPOINTS, Combine.ALL)
        ),
        KeySpec(
            "registration_server_status", ValueKind.STATUS, Scope(frozenset({"v.whatsapp.net"}))
        ),
        KeySpec("whatsapp_web_status", ValueKind.STATUS, Scope(frozenset({"web.whatsapp.com"}))),
    ),
    "signal": (KeySpec("signal_backend_status", ValueKind.STATUS, Scope()),),
    "facebook_messenger": (
        KeySpec(
            "facebook_dns_blocking",
            ValueKind.BLOCKING,
            Scope(_EVERY_FACEBOOK, techniques=("dns.",)),
        ),
        KeySpec(
            "facebook_tcp_blocking",
            ValueKind.BLOCKING,
            Scope(_EVERY_FACEBOOK, techniques=("tcp.",)),
        ),
        *(
            KeySpec(
                f"facebook_{name}_{suffix}",
                ValueKind.OK_FLAG,
                Scope(frozenset({host}), techniques=techniques),
            )
            for name, host in FACEBOOK_ENDPOINTS.items()
            for suffix, techniques in (("dns_consistent", ("dns.",)), ("reachable", ("tcp.",)))
        ),
    ),
}


def _web_connectivity(tk: Mapping[str, Any]) -> list[OoniKey]:
    blocking, accessible = tk.get("blocking"), tk.get("accessible")
    if isinstance(blocking, str) and blocking:
        outcome = OoniOutcome.BLOCKED
    elif blocking is False and accessible is True:
        outcome = OoniOutcome.OK
    elif blocking is False and accessible is False:
        outcome = OoniOutcome.DOWN
    else:
        outcome = OoniOutcome.UNKNOWN
    value = _json({"blocking": blocking, "accessible": accessible})
    return [OoniKey("blocking", value, outcome, Scope())]


def keys_of(test_name: str, test_keys: Mapping[str, Any]) -> tuple[OoniKey, ...]:
    """OONI's verdict keys of an experiment's test_keys, in a fixed order per experiment."""
    if test_name == "web_connectivity":
        return tuple(_web_connectivity(test_keys))
    return tuple(
        OoniKey(
            spec.key,
            _json(test_keys[spec.key]),
            decode_value(spec.kind, test_keys[spec.key]),
            spec.scope,
        )
        for spec in KEY_SPECS.get(test_name, ())
        if spec.key in test_keys
    )


def ooni_keys(document: OoniDocument) -> tuple[OoniKey, ...]:
    """OONI's verdict keys of the document."""
    return keys_of(document.test_name, document.test_keys)


def key_fields(test_name: str, test_keys: Mapping[str, Any]) -> dict[str, Any]:
    """The test_keys fields the verdict keys are read from (scalars, bounded): what an import
    keeps so that keys_of() gives the same keys later without the document."""
    names = (
        ["blocking", "accessible"]
        if test_name == "web_connectivity"
        else [k.key for k in keys_of(test_name, test_keys)]
    )
    kept: dict[str, Any] = {}
    for name in names:
        value = test_keys.get(name)
        if isinstance(value, str):
            kept[name] = value[:_MAX_VALUE]
        elif value is None or isinstance(value, bool | int | float):
            kept[name] = value
    return kept
