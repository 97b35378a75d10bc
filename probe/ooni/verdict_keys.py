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


def _bool_blocking(value: Any) -> OoniOutcome:
    """A `..._blocking` boolean: true is blocked."""
    if value is True:
        return OoniOutcome.BLOCKED
    if value is False:
        return OoniOutcome.OK
    return OoniOutcome.UNKNOWN


def _bool_ok(value: Any) -> OoniOutcome:
    """A `..._reachable` / `..._consistent` boolean: true is ok."""
    if value is True:
        return OoniOutcome.OK
    if value is False:
        return OoniOutcome.BLOCKED
    return OoniOutcome.UNKNOWN


def _status(value: Any) -> OoniOutcome:
    """A `..._status` string: "ok" or "blocked"."""
    if value == "ok":
        return OoniOutcome.OK
    if value == "blocked":
        return OoniOutcome.BLOCKED
    return OoniOutcome.UNKNOWN


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


def _telegram(tk: Mapping[str, Any]) -> list[OoniKey]:
    keys = []
    if "telegram_tcp_blocking" in tk:
        value = tk["telegram_tcp_blocking"]
        scope = Scope(TELEGRAM_DCS, Combine.ALL, ("tcp.",))
        keys.append(OoniKey("telegram_tcp_blocking", _json(value), _bool_blocking(value), scope))
    if "telegram_http_blocking" in tk:
        value = tk["telegram_http_blocking"]
        scope = Scope(TELEGRAM_DCS, Combine.ALL)
        keys.append(OoniKey("telegram_http_blocking", _json(value), _bool_blocking(value), scope))
    if "telegram_web_status" in tk:
        value = tk["telegram_web_status"]
        scope = Scope(frozenset({"web.telegram.org"}), Combine.ANY)
        keys.append(OoniKey("telegram_web_status", _json(value), _status(value), scope))
    return keys


def _whatsapp(tk: Mapping[str, Any]) -> list[OoniKey]:
    keys = []
    for key, scope in (
        ("whatsapp_endpoints_status", Scope(WHATSAPP_ENDPOINTS, Combine.ALL)),
        ("registration_server_status", Scope(frozenset({"v.whatsapp.net"}))),
        ("whatsapp_web_status", Scope(frozenset({"web.whatsapp.com"}))),
    ):
        if key in tk:
            keys.append(OoniKey(key, _json(tk[key]), _status(tk[key]), scope))
    return keys


def _signal(tk: Mapping[str, Any]) -> list[OoniKey]:
    if "signal_backend_status" not in tk:
        return []
    value = tk["signal_backend_status"]
    return [OoniKey("signal_backend_status", _json(value), _status(value), Scope())]


def _facebook(tk: Mapping[str, Any]) -> list[OoniKey]:
    keys = []
    everything = frozenset(FACEBOOK_ENDPOINTS.values())
    for key, techniques in (("facebook_dns_blocking", ("dns.",)), ("facebook_tcp_blocking", ())):
        if key in tk:
            scope = Scope(everything, Combine.ANY, techniques)
            keys.append(OoniKey(key, _json(tk[key]), _bool_blocking(tk[key]), scope))
    for name, host in FACEBOOK_ENDPOINTS.items():
        for suffix, techniques in (("dns_consistent", ("dns.",)), ("reachable", ())):
            key = f"facebook_{name}_{suffix}"
            if key in tk:
                scope = Scope(frozenset({host}), Combine.ANY, techniques)
                keys.append(OoniKey(key, _json(tk[key]), _bool_ok(tk[key]), scope))
    return keys


_EXTRACTORS = {
    "web_connectivity": _web_connectivity,
    "telegram": _telegram,
    "whatsapp": _whatsapp,
    "signal": _signal,
    "facebook_messenger": _facebook,
}


def ooni_keys(document: OoniDocument) -> tuple[OoniKey, ...]:
    """OONI's verdict keys of the document, in a fixed order per experiment."""
    extract = _EXTRACTORS.get(document.test_name)
    return tuple(extract(document.test_keys)) if extract else ()
