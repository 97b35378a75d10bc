"""Our measurements as OONI data-format documents, so OONI's tools (and anyone used to OONI's
data) can read them.

One run becomes one OONI report (report_id `censorprobe-<run id>`), with one document per
experiment unit, the closest OONI experiment for each:

    telegram, whatsapp, signal      the platform's experiment (ts-020, ts-018, ts-029), all its
                                    targets in one document
    facebook (tcp and dns targets)  facebook_messenger (ts-019)
    any other http/https target     web_connectivity (ts-017), one document per URL
    any other tcp or dns target     urlgetter (ts-027) with input tcpconnect://host:port or
                                    dnslookup://host

test_keys holds the df-xxx lists in OONI's field names (df-002 `queries`, one per query type;
df-005 `tcp_connect`; df-006 `tls_handshakes` with the certificates' DER when we have it, else
none: our records keep digests, not certificates; df-001 `requests`, the body being the prefix
we kept) and the experiment's verdict keys computed from our verdicts with OONI's semantics
(probe/ooni/verdict_keys.py); a key is null where our verdicts cannot decide (no control could
tell), never a guess. Our own records ride along losslessly in `x_censorprobe` (OONI's
`x_` prefix marks keys outside the spec): importing the export gives back the same
measurements, hence the same verdicts.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from probe import __version__, model
from probe.catalog import builtin_targets
from probe.codec import encode_measurement, encode_run
from probe.model import Layer, Measurement, Run, Target, TargetKind
from probe.ooni.agreement import combine
from probe.ooni.targets import host_of_target
from probe.ooni.verdict_keys import KEY_SPECS, OoniOutcome, encode_value
from probe.records import Status, Verdict
from probe.store import Store

SOFTWARE_NAME = "censorprobe"
EXTENSION_KEY = "x_censorprobe"
REPORT_PREFIX = "censorprobe-"

_EXPERIMENT_OF_PLATFORM = {"telegram": "telegram", "whatsapp": "whatsapp", "signal": "signal"}
_TEST_VERSION = {
    "web_connectivity": "0.4.3",
    "telegram": "0.3.0",
    "whatsapp": "0.10.0",
    "signal": "0.2.5",
    "facebook_messenger": "0.2.0",
    "urlgetter": "0.2.0",
}
_AS_OONI = {
    Status.OK: OoniOutcome.OK,
    Status.BLOCKED: OoniOutcome.BLOCKED,
    Status.DOWN: OoniOutcome.DOWN,
    Status.INCONCLUSIVE: OoniOutcome.UNKNOWN,
}


def _ooni_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _seconds(run: Run, moment: datetime) -> float:
    return round(max(0.0, (moment - run.started_at).total_seconds()), 6)


def _ooni_failure(observation: model.Observation[model.Details]) -> str | None:
    """The failure as OONI writes it: an unknown failure carries its text (df-007)."""
    if observation.failure == model.UNKNOWN_FAILURE and observation.failure_detail:
        return f"{model.UNKNOWN_FAILURE_PREFIX}{observation.failure_detail}"
    return observation.failure


# -- df-xxx entries ------------------------------------------------------------------------------


def _engine(details: model.DnsQuery) -> tuple[str, str]:
    """(engine, resolver_address) for one of our resolvers (df-002's engine table)."""
    if details.transport in ("udp", "tcp"):
        return details.transport, details.resolver.split("://", 1)[-1]
    if details.transport == "doh":
        return "doh", details.resolver
    return "getaddrinfo", ""


def _queries(run: Run, m: Measurement) -> list[dict[str, Any]]:
    obs = m.observation
    details = obs.details
    assert isinstance(details, model.DnsQuery)
    engine, resolver = _engine(details)
    t0 = _seconds(run, obs.started_at)
    entries = []
    for query_type, failure in (("A", details.per_type.a), ("AAAA", details.per_type.aaaa)):
        answers: list[dict[str, Any]] = []
        for answer in details.answers:
            if answer.type == "CNAME":
                answers.append(
                    {"answer_type": "CNAME", "hostname": answer.value, "ttl": answer.ttl}
                )
            elif answer.type == query_type:
                field = "ipv4" if query_type == "A" else "ipv6"
                answers.append({"answer_type": query_type, field: answer.value, "ttl": answer.ttl})
        if not answers:
            # Records carry answers when the check kept them; addresses always.
            version = 4 if query_type == "A" else 6
            for address in details.addresses:
                if (":" in address) == (version == 6):
                    field = "ipv4" if version == 4 else "ipv6"
                    answers.append({"answer_type": query_type, field: address, "ttl": None})
        entries.append(
            {
                "answers": answers or None,
                "engine": engine,
                "failure": failure if failure is not None else (None if answers else obs.failure),
                "hostname": details.query,
                "query_type": query_type,
                "resolver_address": resolver,
                "resolver_hostname": None,
                "resolver_port": None,
                "t0": t0,
                "t": round(t0 + obs.duration_ms / 1000.0, 6),
            }
        )
    return entries


def _tcp(run: Run, m: Measurement) -> dict[str, Any]:
    obs = m.observation
    details = obs.details
    assert isinstance(details, model.TcpConnect | model.ProtocolProbe)
    t0 = _seconds(run, obs.started_at)
    failure = (
        _ooni_failure(obs) if obs.failed_operation in (None, model.Operation.CONNECT) else None
    )
    return {
        "ip": details.address,
        "port": details.port,
        "status": {"blocked": None, "failure": failure, "success": failure is None},
        "t0": t0,
        "t": round(t0 + obs.duration_ms / 1000.0, 6),
    }


def _tls(run: Run, m: Measurement) -> dict[str, Any]:
    obs = m.observation
    details = obs.details
    assert isinstance(details, model.TlsHandshake)
    address = f"[{details.address}]" if ":" in details.address else details.address
    t0 = _seconds(run, obs.started_at)
    return {
        "address": f"{address}:{details.port}",
        "cipher_suite": details.cipher or "",
        "failure": _ooni_failure(obs),
        "negotiated_protocol": details.alpn or "",
        "no_tls_verify": False,
        # df-006 wants the DER of each certificate; our records keep their digests and fields.
        "peer_certificates": [],
        "server_name": details.sni,
        "t0": t0,
        "t": round(t0 + obs.duration_ms / 1000.0, 6),
        "tags": [f"x_sha256:{c.sha256}" for c in details.certificates],
        "tls_version": details.version or "",
    }


def _requests(run: Run, m: Measurement) -> dict[str, Any]:
    obs = m.observation
    details = obs.details
    assert isinstance(details, model.HttpTransaction)
    t0 = _seconds(run, obs.started_at)
    request_headers = [["Host", details.host_header]] if details.host_header else []
    response_headers = [[name, value] for name, value in details.headers]
    response: dict[str, Any] = {
        "body": details.body_prefix,
        "body_is_truncated": details.body_truncated
        or len(details.body_prefix.encode("utf-8")) < details.body_length,
        "code": details.status or 0,
        "headers_list": response_headers or None,
        "headers": {name: value for name, value in details.headers} or None,
    }
    return {
        "failure": _ooni_failure(obs),
        "request": {
            "body": "",
            "body_is_truncated": False,
            "headers_list": request_headers,
            "headers": dict(request_headers),
            "method": details.method,
            "tor": {"exit_ip": None, "exit_name": None, "is_tor": False},
            "x_transport": "tcp",
            "url": details.url,
        },
        "response": response,
        "t0": t0,
        "t": round(t0 + obs.duration_ms / 1000.0, 6),
    }


def observation_lists(run: Run, measurements: Iterable[Measurement]) -> dict[str, Any]:
    """The df-002/005/006/001 lists of these measurements, in OONI's field names."""
    queries: list[dict[str, Any]] = []
    tcp: list[dict[str, Any]] = []
    tls: list[dict[str, Any]] = []
    requests: list[dict[str, Any]] = []
    for m in measurements:
        details = m.observation.details
        if isinstance(details, model.RawCapture):
            continue
        if m.layer is Layer.DNS and isinstance(details, model.DnsQuery):
            queries.extend(_queries(run, m))
        elif m.layer is Layer.TCP and isinstance(details, model.TcpConnect | model.ProtocolProbe):
            tcp.append(_tcp(run, m))
        elif m.layer is Layer.TLS and isinstance(details, model.TlsHandshake):
            tls.append(_tls(run, m))
        elif m.layer is Layer.HTTP and isinstance(details, model.HttpTransaction):
            requests.append(_requests(run, m))
    return {"queries": queries, "tcp_connect": tcp, "tls_handshakes": tls, "requests": requests}


# -- verdict keys ---------------------------------------------------------------------------------


def platform_keys(experiment: str, verdicts: Sequence[Verdict]) -> dict[str, Any]:
    """The experiment's verdict keys from our verdicts, with OONI's combining (verdict_keys)."""
    keys: dict[str, Any] = {}
    for spec in KEY_SPECS.get(experiment, ()):
        scoped = [
            v
            for v in verdicts
            if not spec.scope.hosts or host_of_target(v.target) in spec.scope.hosts
        ]
        statuses = [
            Status.INCONCLUSIVE
            if v.status is Status.BLOCKED
            and spec.scope.techniques
            and not (v.technique or "").startswith(spec.scope.techniques)
            else v.status
            for v in scoped
        ]
        keys[spec.key] = encode_value(spec.kind, _AS_OONI[combine(statuses, spec.scope.combine)])
    return keys


def web_keys(verdict: Verdict | None) -> dict[str, Any]:
    """ts-017's blocking/accessible from our verdict of the URL."""
    if verdict is None or verdict.status is Status.INCONCLUSIVE:
        return {"blocking": None, "accessible": None}
    if verdict.status is Status.OK:
        return {"blocking": False, "accessible": True}
    if verdict.status is Status.DOWN:
        return {"blocking": False, "accessible": False}
    technique = verdict.technique or ""
    if technique.startswith("dns."):
        blocking = "dns"
    elif technique.startswith("tcp."):
        blocking = "tcp_ip"
    elif technique in ("http.blockpage", "http.diff"):
        blocking = "http-diff"
    else:
        blocking = "http-failure"
    return {"blocking": blocking, "accessible": False}


# -- documents ------------------------------------------------------------------------------------


def _unit_of(
    platform: str, name: str, target: Target | None, items: Sequence[Measurement]
) -> tuple[str, str | None]:
    """The (experiment, input) of the document a target's measurements go in."""
    experiment = _EXPERIMENT_OF_PLATFORM.get(platform)
    kind = target.kind if target is not None else _kind_of_name(name)
    if experiment is not None:
        return experiment, None
    if platform == "facebook" and kind in (TargetKind.TCP, TargetKind.DNS):
        return "facebook_messenger", None
    if kind in (TargetKind.HTTP, TargetKind.HTTPS):
        return "web_connectivity", target.url if target is not None else name
    host = target.host if target is not None else name
    ports = target.ports if target is not None else ()
    port = (
        ports[0]
        if ports
        else next(
            (
                m.observation.details.port
                for m in items
                if isinstance(m.observation.details, model.TcpConnect)
            ),
            None,
        )
    )
    return "urlgetter", f"tcpconnect://{host}:{port}" if port else f"dnslookup://{host}"


def _units(
    measurements: Sequence[Measurement], targets: Mapping[tuple[str, str], Target]
) -> Iterator[tuple[str, str | None, list[Measurement]]]:
    """(experiment, input, measurements) per document, in first-seen order."""
    by_target: dict[tuple[str, str], list[Measurement]] = {}
    for m in measurements:
        by_target.setdefault((m.platform, m.target), []).append(m)
    groups: dict[tuple[str, str | None], list[Measurement]] = {}
    for (platform, name), items in by_target.items():
        key = _unit_of(platform, name, targets.get((platform, name)), items)
        groups.setdefault(key, []).extend(items)
    for (experiment, url), grouped in groups.items():
        yield experiment, url, grouped


def _kind_of_name(name: str) -> TargetKind:
    if name.startswith("https://"):
        return TargetKind.HTTPS
    if name.startswith("http://"):
        return TargetKind.HTTP
    return TargetKind.TCP


def run_documents(
    run: Run,
    measurements: Sequence[Measurement],
    verdicts: Sequence[Verdict],
    targets: Sequence[Target] = (),
) -> Iterator[dict[str, Any]]:
    """The OONI documents of one run (see the module docstring)."""
    by_target = {(t.platform, t.name): t for t in targets}
    network = run.network
    for experiment, url, items in _units(measurements, by_target):
        names = {(m.platform, m.target) for m in items}
        scoped = [v for v in verdicts if (v.platform, v.target) in names]
        test_keys: dict[str, Any] = {
            **observation_lists(run, items),
            "failure": None,
            "failed_operation": None,
        }
        if experiment == "web_connectivity":
            test_keys.update(web_keys(scoped[0] if scoped else None))
        else:
            test_keys.update(platform_keys(experiment, scoped))
        test_keys[EXTENSION_KEY] = {
            "run": encode_run(run),
            "measurements": [encode_measurement(m) for m in items],
        }
        runtime = max(
            (_seconds(run, m.observation.started_at) + m.observation.duration_ms / 1000.0)
            for m in items
        )
        yield {
            "annotations": {"engine_name": SOFTWARE_NAME, "engine_version": __version__},
            "data_format_version": "0.2.0",
            "input": url,
            "measurement_start_time": _ooni_time(run.started_at),
            "probe_asn": f"AS{network.asn or 0}",
            "probe_cc": network.country or "ZZ",
            # Never our address: OONI's scrubbed value (the probe's address is not stored).
            "probe_ip": "127.0.0.1",
            "probe_network_name": network.as_name or "",
            "report_id": f"{REPORT_PREFIX}{run.id}",
            "resolver_asn": f"AS{network.resolver_asn or 0}",
            "resolver_ip": "127.0.0.2",
            "resolver_network_name": network.resolver_as_name or "",
            "software_name": SOFTWARE_NAME,
            "software_version": __version__,
            "test_helpers": {},
            "test_keys": test_keys,
            "test_name": experiment,
            "test_runtime": round(runtime, 6),
            "test_start_time": _ooni_time(run.started_at),
            "test_version": _TEST_VERSION[experiment],
        }


def write_ooni_jsonl(
    store: Store,
    out: TextIO,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    platforms: Collection[str] | None = None,
    asns: Collection[int | None] | None = None,
    targets: Sequence[Target] | None = None,
) -> int:
    """Write the OONI documents of every stored run started in [since, until), one per line;
    memory holds one run at a time. `targets` (default: the built-in catalog) tell each
    target's kind. Returns the number of documents."""
    targets = builtin_targets() if targets is None else targets
    count = 0
    for run in store.runs(since=since, until=until):
        if asns is not None and run.network.asn not in asns:
            continue
        if run.probe_id.startswith("ooni:"):
            continue  # imported from OONI: its documents are OONI's, not ours to re-issue
        measurements = [
            m
            for m in store.measurements(run_id=run.id)
            if platforms is None or m.platform in platforms
        ]
        if not measurements:
            continue
        verdicts = list(store.verdicts(run_id=run.id))
        for document in run_documents(run, measurements, verdicts, targets):
            out.write(json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n")
            count += 1
    return count
