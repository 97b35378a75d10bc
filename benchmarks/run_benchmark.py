"""Benchmarks of the core prober, through the real CLI (`python3 -m probe run --json` as a
subprocess, so every figure includes interpreter start-up), against a loopback "internet" served by
a separate process (benchmarks/loopback_internet.py) so that the probe's own CPU and memory are
measured alone.

    python3 -m benchmarks.run_benchmark [--runs N] [--only SCENARIO]... [--profile SCENARIO]
                                        [--experiment [NAME,...|all]]
                                        [--targets N] [--blackhole-targets N]
                                        [--loop uvloop|asyncio]

Scenarios (each run --runs times; min and median printed beside the goal):

    mix         1,000 targets in the built-in catalog's mix of kinds; goal >= 300 targets/s and
                a peak RSS < 200 MB
    https       1,000 HTTPS targets (the costly kind); goal >= 250 targets/s, the same RSS
    blackhole   200 TCP targets whose SYNs are dropped, connect = 2 s; goal: the run ends in < 2.5 s
    window      `mix` with the default DNS second-answer window (0.5 s instead of 0.05 s)
    burst-dns   `mix` through a resolver that drops datagrams when a burst overflows its socket
    dead        `mix` on a dead network (the resolver never answers): the runner promises that a
                dead network ends the run quickly, once every control has failed

Targets use the catalog's own port numbers (443, 80, 5222) on loopback addresses, so the runner's
port-dependent steps (protocol probes on 80 and 443) run as in the field; binding them needs root.

The figures: wall time from spawn to exit, targets/s, measurements stored (counted in the SQLite
file), the probe's CPU time and peak RSS (wait4: this child alone), how long it waited for a CPU
(schedstat: other load on a shared machine), the servers' CPU time, when the first check started,
the last DNS check ended and the last check ended, the targets' outcomes, host-wide kernel drop
counters and the 1-minute load average.

--profile SCENARIO adds one cProfile'd run and prints its hottest functions. --experiment runs the
probe with the fixes proposed in the benchmark report monkeypatched in (EXPERIMENTS below), so
their effect is measured without editing probe/. --loop picks the probe's event loop
(probe/eventloop.py: uvloop when installed, else asyncio's), so the two can be compared.

All traffic stays on 127.0.0.0/8: names resolve through the loopback fake nameservers only
([dns] resolvers is a udp:// spec; the system resolver is never asked). It asserts no timing and
exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import pstats
import select
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe import eventloop

REPO = Path(__file__).resolve().parent.parent
DOMAIN = "bench.test"
CONTROL = f"control.{DOMAIN}"
# Web servers on 127.0.1.1 .. 127.0.4.64, so connections spread over many destinations as they
# would on a real network (and no single 4-tuple space fills up); plain-HTTP-only servers (the
# Telegram data centres' role) on 127.0.5.x; SYN-dropping listeners on 127.0.9.x.
WEB_ADDRESSES = [f"127.0.{block}.{host}" for block in range(1, 5) for host in range(1, 65)]
PLAIN_ADDRESSES = [f"127.0.5.{host}" for host in range(1, 65)]
BLACKHOLE_ADDRESSES = [f"127.0.9.{host}" for host in range(1, 9)]
# A short second-answer window (default 0.5 s): no injector lives on loopback, and the window
# would otherwise add half a second to every DNS check's hold on a concurrency slot (the
# `window` scenario measures what the default costs).
SECOND_ANSWER_WINDOW = 0.05
DEFAULT_SECOND_ANSWER_WINDOW = 0.5
BLACKHOLE_CONNECT_TIMEOUT = 2.0
# A documentation address (RFC 5737) as the probe's "own" public address, as a helper would
# report it: the Scrubber then does its real work on every stored string.
PUBLIC_ADDRESS = "192.0.2.77"
PROBE_TIMEOUT_S = 300.0

# Issue 16's goals on this 2-core machine: the catalog's mix, and HTTPS alone (the costly kind).
GOAL_TARGETS_PER_S = 300.0
GOAL_HTTPS_TARGETS_PER_S = 250.0
GOAL_RSS_MB = 200.0
GOAL_BLACKHOLE_WALL_S = 2.5
DEFAULT_DNS_TIMEOUT_S = 3.0  # probe.checks.Timeouts.dns

SCENARIOS = ("mix", "https", "blackhole", "window", "burst-dns", "dead")


# -- the targets --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """One kind of built-in catalog target: kind, method and its real port numbers."""

    kind: str
    method: str
    ports: tuple[int, ...]

    def label(self) -> str:
        ports = ",".join(map(str, self.ports))
        method = f" {self.method}" if self.kind == "http" else ""
        return f"{self.kind}{method}" + (f" [{ports}]" if ports else "")

    def plain_on_tls_port(self, tls_ports: Sequence[int]) -> bool:
        """Plain HTTP to a port that web servers use for TLS (Telegram's POST to 443)."""
        return self.kind == "http" and any(p in tls_ports for p in self.ports)


HTTPS = Shape("https", "GET", (443,))


def catalog_mix() -> Counter[Shape]:
    """How many targets of each shape the built-in catalog holds (controls left out)."""
    from probe.catalog import builtin_platforms

    return Counter(
        Shape(t.kind.value, t.method, t.ports)
        for platform in builtin_platforms()
        if not platform.control
        for t in platform.targets
    )


def scale(mix: Counter[Shape], total: int) -> list[tuple[Shape, int]]:
    """`total` targets in the proportions of `mix` (largest remainder, so they sum exactly)."""
    whole = sum(mix.values())
    exact = {shape: count * total / whole for shape, count in mix.items()}
    counts = {shape: math.floor(value) for shape, value in exact.items()}
    short = total - sum(counts.values())
    for shape in sorted(exact, key=lambda s: exact[s] - counts[s], reverse=True)[:short]:
        counts[shape] += 1
    return sorted(((s, n) for s, n in counts.items() if n), key=lambda item: -item[1])


def entry(shape: Shape, host: str) -> str:
    """A catalog [[targets]] table of `shape` on `host`, at the catalog's own ports."""
    if shape.kind in ("http", "https") and shape.method == "GET" and len(shape.ports) == 1:
        default = 443 if shape.kind == "https" else 80
        port = "" if shape.ports[0] == default else f":{shape.ports[0]}"
        return f'[[targets]]\nurl = "{shape.kind}://{host}{port}/"\n'
    lines = ["[[targets]]", f'kind = "{shape.kind}"', f'host = "{host}"']
    if shape.ports:
        lines.append(f"ports = [{', '.join(map(str, shape.ports))}]")
    if shape.method != "GET":
        lines.append(f'method = "{shape.method}"')
    return "\n".join(lines) + "\n"


@dataclass
class Internet:
    """The loopback internet's layout: who has which address, and the catalogs that use it."""

    targets: int
    blackholes: int
    plan: list[tuple[Shape, int]] = field(default_factory=list)
    mixed: list[tuple[Shape, str]] = field(default_factory=list)
    zone: dict[str, str] = field(default_factory=dict)
    tls_ports: list[int] = field(default_factory=list)
    plain_ports: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.plan = scale(catalog_mix(), self.targets)
        shapes = [shape for shape, count in self.plan for _ in range(count)]
        self.tls_ports = sorted({p for s in shapes if s.kind == "https" for p in s.ports} | {443})
        self.plain_ports = sorted({p for s in shapes for p in s.ports} - set(self.tls_ports))
        self.mixed = [(shape, f"b{i:04d}.{DOMAIN}") for i, shape in enumerate(shapes)]
        web, plain = iter(_cycle(WEB_ADDRESSES)), iter(_cycle(PLAIN_ADDRESSES))
        for shape, name in self.mixed:
            self.zone[name] = next(plain if shape.plain_on_tls_port(self.tls_ports) else web)
        for name in self.https_names():
            self.zone[name] = next(web)
        blackhole = iter(_cycle(BLACKHOLE_ADDRESSES))
        for name in self.blackhole_names():
            self.zone[name] = next(blackhole)
        self.zone[CONTROL] = WEB_ADDRESSES[0]

    def https_names(self) -> list[str]:
        return [f"s{i:04d}.{DOMAIN}" for i in range(self.targets)]

    def blackhole_names(self) -> list[str]:
        return [f"h{i:04d}.{DOMAIN}" for i in range(self.blackholes)]

    def spec(self, ca_file: Path) -> dict[str, Any]:
        """The loopback_internet process's SPEC.json."""
        return {
            "web": WEB_ADDRESSES,
            "plain": PLAIN_ADDRESSES,
            "blackhole": BLACKHOLE_ADDRESSES,
            "tls_ports": self.tls_ports,
            "plain_ports": self.plain_ports,
            "zone": self.zone,
            "ca_file": str(ca_file),
        }


def _cycle(items: Sequence[str]) -> Iterator[str]:
    while True:
        yield from items


# -- scenarios ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    config: Path
    targets: int
    goal: str
    resolver: str | None = None  # the config's one resolver (udp://address:port)


def write_scenario(
    tmp: Path,
    name: str,
    entries: Sequence[str],
    *,
    resolver: str,
    ca_file: Path,
    goal: str,
    window: float = SECOND_ANSWER_WINDOW,
    connect_timeout: float | None = None,
    test_lists: Sequence[Path] = (),
) -> Scenario:
    """A catalog dir (platform "bench" + one loopback control) and the config.toml that uses it
    (with `test_lists`, their targets too: platform "testlist")."""
    folder = tmp / name
    catalog = folder / "catalog"
    catalog.mkdir(parents=True)
    (catalog / "bench.toml").write_text(
        'platform = "bench"\ndisplay_name = "Benchmark"\n\n' + "\n".join(entries),
        encoding="utf-8",
    )
    # Same platform name as the built-in controls.toml, so it replaces the internet controls.
    (catalog / "controls.toml").write_text(
        f'platform = "control"\ncontrol = true\n\n{entry(HTTPS, CONTROL)}', encoding="utf-8"
    )
    timeouts = f"[timeouts]\nconnect = {connect_timeout}\n" if connect_timeout else ""
    platforms = ["bench", "testlist"] if test_lists else ["bench"]
    lists = f"test_lists = {json.dumps([str(p) for p in test_lists])}\n" if test_lists else ""
    config = folder / "config.toml"
    config.write_text(
        f"""[probe]
platforms = {json.dumps(platforms)}
{timeouts}[dns]
resolvers = [{json.dumps(resolver)}]
second_answer_window = {window}
[tls]
ca_file = {json.dumps(str(ca_file))}
[catalog]
dir = {json.dumps(str(catalog))}
{lists}[network]
public_addresses = [{json.dumps(PUBLIC_ADDRESS)}]
""",
        encoding="utf-8",
    )
    return Scenario(name, config, len(entries), goal, resolver)


def build_scenarios(
    tmp: Path, internet: Internet, resolvers: dict[str, str], ca_file: Path
) -> dict[str, Scenario]:
    mixed = [entry(shape, name) for shape, name in internet.mixed]
    rate_goal = f">= {GOAL_TARGETS_PER_S:.0f} targets/s, peak RSS < {GOAL_RSS_MB:.0f} MB"
    https_goal = f">= {GOAL_HTTPS_TARGETS_PER_S:.0f} targets/s, peak RSS < {GOAL_RSS_MB:.0f} MB"

    def write(name: str, entries: Sequence[str], goal: str, **options: Any) -> Scenario:
        options.setdefault("resolver", resolvers["dns"])
        return write_scenario(tmp, name, entries, ca_file=ca_file, goal=goal, **options)

    blackhole_port = internet.tls_ports[0]
    blackhole = [
        entry(Shape("tcp", "GET", (blackhole_port,)), name) for name in internet.blackhole_names()
    ]
    return {
        "mix": write("mix", mixed, rate_goal),
        "https": write("https", [entry(HTTPS, n) for n in internet.https_names()], https_goal),
        "blackhole": write(
            "blackhole",
            blackhole,
            f"wall < {GOAL_BLACKHOLE_WALL_S} s at a {BLACKHOLE_CONNECT_TIMEOUT} s connect timeout",
            connect_timeout=BLACKHOLE_CONNECT_TIMEOUT,
        ),
        "window": write(
            "window",
            mixed,
            f"as mix ({rate_goal}); the idle window should not cost throughput",
            window=DEFAULT_SECOND_ANSWER_WINDOW,
        ),
        "burst-dns": write(
            "burst-dns",
            mixed,
            "every target answers: no generic_timeout_error@dns",
            resolver=resolvers["burst_limited_dns"],
        ),
        "dead": write(
            "dead",
            mixed,
            f"no connectivity found within start-up + one DNS timeout ({DEFAULT_DNS_TIMEOUT_S} s)"
            " + 1 s",
            resolver=resolvers["silent_dns"],
        ),
    }


# -- processes ----------------------------------------------------------------------------------


def _env(home: Path | None = None) -> dict[str, str]:
    """The probe's environment: the repo importable and, given `home`, private user directories
    (consent record, run lock), so a benchmark neither touches the user's nor waits on the lock
    of a probe someone else is running."""
    env = {k: v for k, v in os.environ.items() if k != "PROBE_CONFIG"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    if home is not None:
        for variable, folder in (
            ("XDG_CONFIG_HOME", "config"),
            ("XDG_DATA_HOME", "data"),
            ("XDG_STATE_HOME", "state"),
            ("XDG_CACHE_HOME", "cache"),
        ):
            env[variable] = str(home / folder)
    return env


def kernel_drops() -> Counter[str]:
    """Host-wide drop counters: UDP datagrams dropped on a full receive buffer (expected only
    with the burst-limited and the silent resolver), and SYNs dropped on a full accept queue
    (expected only in the blackhole scenario)."""
    found: Counter[str] = Counter()
    wanted = {("Udp", "RcvbufErrors"): "udp_rcvbuf", ("TcpExt", "ListenOverflows"): "syn_dropped"}
    for table in ("/proc/net/snmp", "/proc/net/netstat"):
        lines = Path(table).read_text().splitlines()
        for header, values in zip(lines[::2], lines[1::2], strict=True):
            prefix, names = header.split(":", 1)
            for name, value in zip(names.split(), values.split(":", 1)[1].split(), strict=True):
                if (prefix, name) in wanted:
                    found[wanted[(prefix, name)]] = int(value)
    return found


def _run_queue_wait(pid: int, last: float) -> float:
    """Seconds the process's main thread has been runnable but waiting for a CPU (schedstat):
    on a shared machine, the part of the wall time that other load took; `last` once it is gone."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return last


def _udp_peer(resolver: str | None) -> str | None:
    """How /proc/net/udp writes a socket connected to this udp://IPv4:port resolver (the
    address as the kernel's little-endian hex, the port as hex), or None for another kind."""
    if resolver is None or not resolver.startswith("udp://"):
        return None
    address, _, port = resolver.removeprefix("udp://").rpartition(":")
    try:
        packed = socket.inet_aton(address)
    except OSError:
        return None
    return f"{packed[::-1].hex().upper()}:{int(port):04X}"


def _udp_socket_to(peer: str) -> bool:
    """Whether a UDP socket connected to `peer` exists now: the probe's DNS check connects its
    socket to the resolver (probe/checks/dns.py), and nothing else here talks to it. An outside
    clock for the first check, since the stored start times are whole seconds."""
    try:
        table = Path("/proc/net/udp").read_text(encoding="ascii")
    except OSError:
        return False
    return any(line.split()[2] == peer for line in table.splitlines()[1:] if line.strip())


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def loopback_internet(spec: dict[str, Any], tmp: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Start benchmarks.loopback_internet; yield its pid and ready line; end it by pid."""
    spec_file = tmp / "internet.json"
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    log_path = tmp / "internet.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.loopback_internet", str(spec_file)],
            cwd=REPO,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=log,
        )
        try:
            assert process.stdout is not None
            readable, _, _ = select.select([process.stdout], [], [], 60.0)
            line = process.stdout.readline() if readable else b""
            if not line:
                raise RuntimeError(f"the loopback internet did not start:\n{log_path.read_text()}")
            yield process.pid, json.loads(line)
        finally:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.kill(process.pid, signal.SIGKILL)
                    process.wait()
            if process.stdout is not None:
                process.stdout.close()


@dataclass
class Result:
    wall_s: float
    exit_code: int
    connectivity: str
    measurements: int
    stored: int
    rss_mb: float
    cpu_s: float
    cpu_wait_s: float
    server_cpu_s: float
    load: float
    drops: Counter[str]
    outcomes: Counter[str] = field(default_factory=Counter)
    phases: dict[str, float] = field(default_factory=dict)


def _outcomes(document: dict[str, Any]) -> Counter[str]:
    """Targets per outcome: the furthest layer reached, or the first failure and its layer."""
    found: Counter[str] = Counter()
    for t in document.get("targets", []):
        if not t["control"]:
            ok = t["failure"] is None
            found[f"reached {t['reached']}" if ok else f"{t['failure']}@{t['failed_layer']}"] += 1
    return found


def _phases(db: Path, spawned_at: float) -> dict[str, float]:
    """When, in seconds after the spawn, the first check started, the last DNS check and the last
    check of any kind ended (from the stored measurements' UTC start and monotonic duration).
    The stored starts are whole seconds (probe.checks: no sub-second wall-clock time is kept),
    so each phase is good to about a second only."""
    from datetime import datetime

    if not db.exists():
        return {}
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("select layer, started_at, duration_ms from measurements").fetchall()
    if not rows:
        return {}
    spans = [
        (layer, start - spawned_at, start - spawned_at + duration / 1000.0)
        for layer, text, duration in rows
        for start in (datetime.fromisoformat(text).timestamp(),)
    ]
    dns_ends = [end for layer, _, end in spans if layer == "dns"]
    return {
        "first check": min(start for _, start, _ in spans),
        "last DNS ends": max(dns_ends) if dns_ends else math.nan,
        "last check ends": max(end for _, _, end in spans),
    }


def probe_command(
    config: Path, db: Path, *, experiments: Sequence[str], profile: Path | None
) -> list[str]:
    # --i-understand-the-risks: consent is recorded in the benchmark's private config dir.
    args = ["run", "--config", str(config), "--db", str(db), "--json", "--i-understand-the-risks"]
    if not experiments and profile is None:
        return [sys.executable, "-m", "probe", *args]
    wrapper = [sys.executable, "-m", "benchmarks.run_benchmark", "--as-probe"]
    if experiments:
        wrapper += ["--experiment", ",".join(experiments)]
    if profile is not None:
        wrapper += ["--profile-out", str(profile)]
    return [*wrapper, "--", *args]


def run_probe(
    scenario: Scenario,
    db: Path,
    server_pid: int,
    *,
    experiments: Sequence[str] = (),
    profile: Path | None = None,
) -> Result:
    """One `probe run` subprocess: wall time, exit code, its own peak RSS and CPU (wait4 gives
    the rusage of this child alone, not of every child waited so far)."""
    out_path, err_path = db.with_suffix(".json"), db.with_suffix(".err")
    load = os.getloadavg()[0]
    server_before = _cpu_seconds(server_pid)
    drops_before = kernel_drops()
    with out_path.open("wb") as out, err_path.open("wb") as errors:
        spawned_at = time.time()
        started = time.monotonic()
        process = subprocess.Popen(
            probe_command(scenario.config, db, experiments=experiments, profile=profile),
            cwd=db.parent,
            env=_env(db.parent / "home"),
            stdout=out,
            stderr=errors,
            stdin=subprocess.DEVNULL,
        )
        deadline = started + PROBE_TIMEOUT_S
        cpu_wait = 0.0
        peer = _udp_peer(scenario.resolver)
        first_query: float | None = None
        while True:
            cpu_wait = _run_queue_wait(process.pid, cpu_wait)
            if first_query is None and peer is not None and _udp_socket_to(peer):
                first_query = time.monotonic() - started
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                os.kill(process.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.002)
        wall = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    server_cpu = _cpu_seconds(server_pid) - server_before
    drops = kernel_drops()
    drops.subtract(drops_before)
    text = out_path.read_text(encoding="utf-8")
    document = json.loads(text) if text.strip() else {}
    stored = 0
    if db.exists():
        with contextlib.closing(sqlite3.connect(db)) as conn:
            stored = conn.execute("select count(*) from measurements").fetchone()[0]
    if not document:
        sys.stderr.write(err_path.read_text(errors="replace")[-3000:])
    return Result(
        wall_s=wall,
        exit_code=process.returncode,
        connectivity=str(document.get("connectivity")),
        measurements=int(document.get("measurements", 0)),
        stored=stored,
        rss_mb=usage.ru_maxrss / 1024.0,
        cpu_s=usage.ru_utime + usage.ru_stime,
        cpu_wait_s=cpu_wait,
        server_cpu_s=server_cpu,
        load=load,
        drops=drops,
        outcomes=_outcomes(document),
        phases={
            **_phases(db, spawned_at),
            **({} if first_query is None else {"first DNS query": first_query}),
            "exit": wall,
        },
    )


def startup_seconds(runs: int = 3) -> float:
    """The fixed cost every run pays: `python3 -m probe --version` (imports, CLI setup)."""
    times = []
    for _ in range(runs):
        started = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "probe", "--version"],
            cwd=REPO,
            env=_env(),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        times.append(time.monotonic() - started)
    return min(times)


# -- reporting ----------------------------------------------------------------------------------


def _min_med(values: Sequence[float], digits: int = 2) -> str:
    return f"{min(values):.{digits}f} / {statistics.median(values):.{digits}f}"


def report(scenario: Scenario, results: Sequence[Result]) -> None:
    walls = [r.wall_s for r in results]
    rates = [scenario.targets / r.wall_s for r in results]
    print(f"\n== {scenario.name}: {scenario.targets} targets, {len(results)} runs")
    for i, r in enumerate(results, 1):
        print(
            f"  run {i}: wall {r.wall_s:6.2f} s {scenario.targets / r.wall_s:6.1f} targets/s | "
            f"stored {r.stored} (reported {r.measurements}) | exit {r.exit_code}, connectivity "
            f"{r.connectivity} | load1 {r.load:.2f} | drops: udp {r.drops['udp_rcvbuf']}, syn "
            f"{r.drops['syn_dropped']}"
        )
        print(
            f"         probe CPU {r.cpu_s:5.2f} s, waited for a CPU {r.cpu_wait_s:4.2f} s, "
            f"peak RSS {r.rss_mb:5.1f} MB | server CPU {r.server_cpu_s:5.2f} s"
        )
        print("         outcomes: " + ", ".join(f"{k} x{v}" for k, v in r.outcomes.most_common()))
        print(
            "         seconds after spawn: "
            + ", ".join(f"{name} {value:.2f}" for name, value in r.phases.items())
        )
    cpu = [r.cpu_s for r in results]
    print(f"  wall time s         (min / median): {_min_med(walls)}")
    print(
        f"  targets/s           (max / median): {max(rates):.1f} / {statistics.median(rates):.1f}"
    )
    print(f"  probe CPU s         (min / median): {_min_med(cpu)}")
    print(f"  targets per CPU-s   (max / median): {scenario.targets / min(cpu):.1f} / "
          f"{scenario.targets / statistics.median(cpu):.1f}")  # fmt: skip
    print(f"  peak RSS MB         (min / median): {_min_med([r.rss_mb for r in results], 1)}")
    print(f"  goal: {scenario.goal}")


def print_profile(path: Path, limit: int = 30) -> None:
    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime").print_stats(limit)
    stats.sort_stats("cumulative").print_stats(limit)


# -- experiments: the proposed fixes, patched into the probe process ---------------------------

# Retransmissions of a UDP DNS query within the DNS timeout (glibc's resolver defaults to
# attempts:2; three sends spaced a third of the timeout apart stay inside the same budget).
DNS_SENDS = 3


def _experiment_dns_own_limiter() -> None:
    """DNS checks take slots of their own semaphore (as many as `concurrency`), not those of the
    connection semaphore, so the idle second-answer window never delays a connect, handshake or
    fetch; the DNS burst stays as large as it is today (a larger DNS semaphore overflows a
    burst-limited resolver sooner)."""
    from probe.flows.base import TargetRun

    original = TargetRun.addresses
    limiters: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}

    async def _addresses(self: TargetRun, *args: Any, **kwargs: Any) -> list[tuple[str, str]]:
        loop = asyncio.get_running_loop()
        dns_limiter = limiters.setdefault(loop, asyncio.Semaphore(self.plan.concurrency))
        # The DNS checks read self.limiter as they start, which is before addresses returns
        # (their tasks start at the loop's next step; addresses awaits the first of them).
        saved, self.limiter = self.limiter, dns_limiter
        try:
            return await original(self, *args, **kwargs)
        finally:
            self.limiter = saved

    TargetRun.addresses = _addresses  # type: ignore[method-assign]


def _experiment_depth_first() -> None:
    """Every check takes a slot of the one semaphore, which is FIFO: all targets' DNS checks are
    queued before any target's connect, so no TLS or HTTP work overlaps the DNS phase (its idle
    second-answer windows included) and no target finishes before every target has resolved.
    Proposed: a slot per target for its whole pipeline (concurrency = targets in flight), so 256
    targets run DNS -> TCP -> TLS -> HTTP each while others wait on the network."""
    from probe.flows.base import Flow, TargetRun

    original = TargetRun.run
    limiters: dict[asyncio.AbstractEventLoop, tuple[asyncio.Semaphore, asyncio.Semaphore]] = {}

    async def run(self: TargetRun, flow: Flow) -> None:
        loop = asyncio.get_running_loop()
        per_target, unlimited = limiters.setdefault(
            loop, (asyncio.Semaphore(self.plan.concurrency), asyncio.Semaphore(1 << 30))
        )
        async with per_target:
            # The target's own checks (a few connects at most) need no further slot.
            self.limiter = unlimited
            await original(self, flow)

    TargetRun.run = run  # type: ignore[method-assign]


EXPERIMENTS: dict[str, Callable[[], None]] = {
    # Applied in this order. (controls-first, dns-retransmit and shared-http-session, measured
    # here first, are now part of the probe: probe/runner.py starts controls first and opens one
    # HTTP session per run, probe/checks/dns.py resends.)
    "depth-first": _experiment_depth_first,
    "dns-own-limiter": _experiment_dns_own_limiter,
}


def experiment_names(text: str | None) -> list[str]:
    if not text:
        return []
    names = list(EXPERIMENTS) if text == "all" else [n.strip() for n in text.split(",")]
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise SystemExit(f"unknown experiment(s) {unknown}; known: {', '.join(EXPERIMENTS)}")
    return names


def as_probe(argv: Sequence[str]) -> None:
    """Run the probe CLI in this process, patched and/or profiled:
    `--as-probe [--experiment NAMES] [--profile-out FILE] -- PROBE ARGS...`."""
    split = list(argv).index("--")
    parser = argparse.ArgumentParser(prog="run_benchmark --as-probe")
    parser.add_argument("--experiment")
    parser.add_argument("--profile-out", type=Path)
    args = parser.parse_args(argv[:split])
    chosen = experiment_names(args.experiment)
    for name, apply in EXPERIMENTS.items():
        if name in chosen:
            apply()
    from probe.cli.app import main as probe_main

    sys.argv = ["probe", *argv[split + 1 :]]
    if args.profile_out is None:
        probe_main()
        return
    import cProfile

    profiler = cProfile.Profile()
    try:
        profiler.runcall(probe_main)
    finally:
        profiler.dump_stats(str(args.profile_out))


# -- main ---------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--as-probe"]:
        as_probe(argv[1:])
        return 0
    parser = argparse.ArgumentParser(prog="python3 -m benchmarks.run_benchmark")
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario (default 3)")
    parser.add_argument("--targets", type=int, default=1000, help="targets of the 1,000 scenarios")
    parser.add_argument("--blackhole-targets", type=int, default=200)
    parser.add_argument("--only", choices=SCENARIOS, action="append", help="repeatable")
    parser.add_argument(
        "--profile", choices=SCENARIOS, help="add one cProfile'd run of this scenario"
    )
    parser.add_argument(
        "--experiment",
        nargs="?",
        const="all",
        help=f"patch in proposed fixes: all (default) or some of {', '.join(EXPERIMENTS)}",
    )
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        help="the probe's event loop (default: the probe's own choice, uvloop when installed)",
    )
    args = parser.parse_args(argv)
    experiments = experiment_names(args.experiment)

    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"machine: {os.cpu_count()} CPUs, load average {load}, Python {sys.version.split()[0]}")
    print(f"probe start-up (python3 -m probe --version, best of 3): {startup_seconds():.2f} s")
    print(f"experiments patched in: {', '.join(experiments) or 'none'}")
    if args.loop:  # the probe's children inherit it (_env)
        os.environ[eventloop.ENVIRONMENT] = args.loop
    print(f"event loop: {eventloop.loop_name()}")
    print(
        f"DNS: loopback fake nameserver over UDP only; [dns] second_answer_window = "
        f"{SECOND_ANSWER_WINDOW} (the `window` scenario: {DEFAULT_SECOND_ANSWER_WINDOW})"
    )
    internet = Internet(args.targets, args.blackhole_targets)
    mix = catalog_mix()
    print(
        "catalog mix -> benchmark mix: "
        + ", ".join(f"{s.label()} {mix[s]}->{n}" for s, n in internet.plan)
    )
    with tempfile.TemporaryDirectory(prefix="probe-bench-") as tmp_name:
        tmp = Path(tmp_name)
        ca_file = tmp / "ca.pem"
        with loopback_internet(internet.spec(ca_file), tmp) as (server_pid, resolvers):
            scenarios = build_scenarios(tmp, internet, resolvers, ca_file)
            for name in args.only or SCENARIOS:
                scenario = scenarios[name]
                results = [
                    run_probe(scenario, tmp / f"{name}-{i}.db", server_pid, experiments=experiments)
                    for i in range(args.runs)
                ]
                report(scenario, results)
            if args.profile:
                profile = tmp / "probe.prof"
                result = run_probe(
                    scenarios[args.profile],
                    tmp / "profiled.db",
                    server_pid,
                    experiments=experiments,
                    profile=profile,
                )
                print(
                    f"\n== cProfile of one {args.profile} run "
                    f"(wall {result.wall_s:.2f} s under the profiler)"
                )
                print_profile(profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
