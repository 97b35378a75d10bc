"""OONI's test-helper control (web_connectivity `test_keys.control`) as our ControlEvidence.

The web_connectivity test helper (ooni/spec ts-017 "Control", and for 0.5 ooni/probe-cli
internal/experiment/webconnectivitylte) resolves the input's host, connects to every address
the probe and the helper found, handshakes TLS with the host's SNI (0.5 only) and fetches the
URL from an uncensored vantage:

    "control": {
      "dns": {"failure": null, "addrs": ["93.184.216.34", ...]},
      "tcp_connect": {"93.184.216.34:443": {"status": true, "failure": null}, ...},
      "tls_handshake": {"93.184.216.34:443": {"server_name": "...", "status": true, ...}},
      "http_request": {"status_code": 200, "body_length": 1256, "title": "...",
                       "headers": {...}, "failure": null}
    }

That is the same evidence our own helper returns, so our verdict rules read it unchanged. A
document whose `control_failure` is set has no usable control: it yields no evidence (our
verdicts are then inconclusive where they would have needed one, never blocked).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from analysis.controls import ControlConnect, ControlDns, ControlEvidence, ControlHttp, ControlTls
from probe.addresses import is_ip
from probe.names import normalise_host
from probe.ooni.dataformat import (
    MAX_HEADERS,
    binary_text,
    entry,
    fail,
    failure_string,
    flag,
    integer,
    items,
    mapping,
    text,
)
from probe.ooni.document import OoniDocument

# The source recorded on every control of an OONI document: OONI's test helper.
OONI_HELPER_SOURCE = "ooni-th"


def _endpoint(key: str, where: str) -> tuple[str, int]:
    """ "1.2.3.4:443" or "[2001:db8::1]:443" -> (address, port)."""
    host, sep, port = key.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise fail(where, f"not an address:port: {key[:60]!r}") from None
    if not sep or not 0 <= number <= 65535:
        raise fail(where, f"not an address:port: {key[:60]!r}")
    return host, number


def _headers(obj: Mapping[str, Any], where: str) -> tuple[tuple[str, str], ...]:
    headers = mapping(obj, "headers", where) or {}
    if len(headers) > MAX_HEADERS:
        raise fail(f"{where}.headers", f"more than {MAX_HEADERS} headers")
    return tuple(
        (str(name)[:1024], binary_text(value, f"{where}.headers[{name!r:.40}]"))
        for name, value in headers.items()
    )


def control_evidence(document: OoniDocument, platform: str, target: str) -> ControlEvidence:
    """The document's test-helper control for `platform`/`target` (empty when there is none or
    it failed). FormatError when the control object is malformed."""
    tk = document.test_keys
    if tk.get("control_failure") is not None:
        return ControlEvidence()
    control = mapping(tk, "control", "test_keys")
    url = document.input
    if not control or not url:
        return ControlEvidence()
    where = "test_keys.control"
    try:
        host = normalise_host(urlsplit(url).hostname or "")
    except ValueError:
        raise fail("document.input", "not a URL") from None

    dns: list[ControlDns] = []
    dns_obj = mapping(control, "dns", where)
    if dns_obj is not None:
        here = f"{where}.dns"
        addresses = []
        for i, item in enumerate(items(dns_obj, "addrs", here)):
            if not isinstance(item, str) or len(item) > 1024:
                raise fail(f"{here}.addrs[{i}]", "expected an address string")
            # The helper lists CNAMEs among the addresses (legacy helper): keep addresses only.
            if is_ip(item):
                addresses.append(item)
        failure = failure_string(dns_obj, "failure", here)
        if failure is not None or addresses:
            dns.append(ControlDns(host, OONI_HELPER_SOURCE, tuple(addresses), failure))

    tcp: list[ControlConnect] = []
    for key, value in (mapping(control, "tcp_connect", where) or {}).items():
        here = f"{where}.tcp_connect[{key!r:.60}]"
        address, port = _endpoint(key, here)
        if value is None:
            continue  # null: the helper has no result for this endpoint (OONI writes null)
        result = entry(value, here)
        ok = flag(result, "status", here)
        failure = failure_string(result, "failure", here)
        if ok is False and failure is None:
            failure = "unknown_failure: control connect failed"
        tcp.append(ControlConnect(address, port, host, None if ok else failure))

    tls: list[ControlTls] = []
    for key, value in (mapping(control, "tls_handshake", where) or {}).items():
        here = f"{where}.tls_handshake[{key!r:.60}]"
        address, port = _endpoint(key, here)
        if value is None:
            continue
        result = entry(value, here)
        ok = bool(flag(result, "status", here))
        failure = failure_string(result, "failure", here)
        sni = normalise_host(text(result, "server_name", here, 1024) or host)
        if not ok and failure is None:
            failure = "unknown_failure: control handshake failed"
        tls.append(ControlTls(address, port, sni, None if ok else failure, ok, None, None))

    http: list[ControlHttp] = []
    request = mapping(control, "http_request", where)
    if request is not None:
        here = f"{where}.http_request"
        status = integer(request, "status_code", here)
        status = status if status is not None and 100 <= status <= 999 else None
        failure = failure_string(request, "failure", here)
        if status is not None or failure is not None:
            body_length = integer(request, "body_length", here)
            http.append(
                ControlHttp(
                    url=url,
                    status=status,
                    body_length=max(0, body_length or 0),
                    title=text(request, "title", here),
                    headers=_headers(request, here),
                    failure=failure,
                )
            )
    evidence = ControlEvidence(dns=tuple(dns), tcp=tuple(tcp), tls=tuple(tls), http=tuple(http))
    if evidence.empty:
        return evidence
    return ControlEvidence(
        dns=evidence.dns,
        tcp=evidence.tcp,
        tls=evidence.tls,
        http=evidence.http,
        targets=frozenset({(platform, target)}),
    )
