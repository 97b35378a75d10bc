"""A whole test list in one run: Citizen Lab's Iran list plus the built-in catalog's mix, through
the real CLI (`python3 -m probe run`), against the loopback internet (benchmarks/
loopback_internet.py) where every host resolves and serves, and about 14% of hosts time out: half
of those at connect (their SYNs dropped), half at TLS (the ClientHello never answered; only hosts
with https URLs alone, so every URL of such a host stalls at TLS).

    python3 -m benchmarks.testlist_benchmark [--runs N] [--test-list CSV] [--timeout-share 0.14]

The list is read where it lies (default: shared/data/citizenlab-test-lists/ir.csv in a folder
above the repository), never copied. The probe runs with its default timeouts.

Printed beside the goal (median of the runs, min, max, the load before each run):

    wall       spawn to exit; goal <= 1.3x the longest per-target chain of configured timeouts
               (DNS + connect + TLS + the longer of the HTTP fetch and the SNI A/B control's
               connect + TLS, which a stalled handshake adds)
    peak RSS   goal < 250 MB
    controls   measured first (every control's last measurement ends before any target's first
               starts) and on time (each within the chain)
    sequential the sum of the same targets' durations (each target's time with a check in flight:
               the union of its measurements' intervals): what a probe measuring one target at a
               time pays, as a ratio
    OONI       the field's published per-URL figures for the same number of URLs, as ratios: OONI
               plans 5 s per URL, and real `ooniprobe run websites` sessions over a 137-URL list
               took 814-1,023 s (OONI Probe's documentation and measurement metadata)

All traffic stays on 127.0.0.0/8: the names resolve through the loopback fake nameserver only. It
asserts no timing and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import statistics
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from benchmarks.run_benchmark import (
    BLACKHOLE_ADDRESSES,
    DEFAULT_SECOND_ANSWER_WINDOW,
    REPO,
    WEB_ADDRESSES,
    Internet,
    Result,
    catalog_mix,
    entry,
    loopback_internet,
    run_probe,
    write_scenario,
)
from probe.checks import Timeouts
from probe.model import Target
from probe.testlists import load_test_list

LIST_PATH = Path("shared/data/citizenlab-test-lists/ir.csv")
# Listeners that accept and never answer (a TLS handshake times out).
STALL_ADDRESSES = [f"127.0.10.{host}" for host in range(1, 9)]
GOAL_CHAIN_RATIO = 1.3
GOAL_RSS_MB = 250.0
# OONI's planning figure, and its real sessions: 137 URLs in 814 to 1,023 s.
OONI_PLANNED_S_PER_URL = 5.0
OONI_SESSION_URLS = 137
OONI_SESSION_S = (814.0, 1023.0)


def default_list() -> Path | None:
    """The Iran list in a shared/ folder beside the repository or above it."""
    for folder in (REPO, *REPO.parents):
        if (folder / LIST_PATH).is_file():
            return folder / LIST_PATH
    return None


def longest_chain(timeouts: Timeouts) -> float:
    """The longest chain of configured timeouts one target can wait through, in seconds."""
    return (
        timeouts.dns
        + timeouts.connect
        + timeouts.tls
        + max(timeouts.http, timeouts.connect + timeouts.tls)
    )


@dataclass(frozen=True)
class Layout:
    """Which test-list hosts time out, and how."""

    connect_timeouts: list[str]
    tls_timeouts: list[str]
    serving: list[str]


def choose(targets: Sequence[Target], share: float) -> Layout:
    """About `share` of the hosts time out, spread evenly over the sorted hosts: alternately at
    connect and, for hosts with https URLs only, at TLS."""
    kinds: dict[str, set[str]] = {}
    for target in targets:
        kinds.setdefault(target.host, set()).add(target.kind.value)
    hosts = sorted(kinds)
    every = max(1, round(1 / share)) if share > 0 else 0
    connect: list[str] = []
    tls: list[str] = []
    serving: list[str] = []
    for index, host in enumerate(hosts):
        if every and index % every == every // 2:
            https_only = kinds[host] == {"https"}
            (tls if https_only and len(tls) <= len(connect) else connect).append(host)
        else:
            serving.append(host)
    return Layout(connect, tls, serving)


def _cycle(items: Sequence[str]) -> Iterator[str]:
    while True:
        yield from items


@dataclass(frozen=True)
class Spans:
    """What the store says about one run's targets."""

    sequential_s: float
    controls_first: bool
    slowest_control_s: float
    targets: int


def spans(db: Path) -> Spans:
    """Per target, the first start and the last end of its measurements (UTC start plus
    monotonic duration)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "select platform, target, started_at, duration_ms from measurements"
        ).fetchall()
    intervals: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for platform, target, text, duration in rows:
        start = datetime.fromisoformat(text).timestamp()
        intervals.setdefault((platform, target), []).append((start, start + duration / 1000.0))
    extent = {key: (min(s for s, _ in spans), max(e for _, e in spans)) for key, spans in
              intervals.items()}  # fmt: skip
    controls = [span for (platform, _), span in extent.items() if platform == "control"]
    others = [span for (platform, _), span in extent.items() if platform != "control"]
    first_target = min((start for start, _ in others), default=float("inf"))
    return Spans(
        sequential_s=sum(_busy(spans) for spans in intervals.values()),
        controls_first=bool(controls) and max(end for _, end in controls) <= first_target,
        slowest_control_s=max((end - start for start, end in controls), default=float("nan")),
        targets=len(extent),
    )


def _busy(spans: list[tuple[float, float]]) -> float:
    """How long a target had a check in flight: the union of its measurements' intervals (the
    time its checks waited for a free slot of the run's semaphore is left out)."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def _figure(values: Sequence[float], unit: str, digits: int = 1) -> str:
    return (
        f"median {statistics.median(values):.{digits}f} {unit} (min {min(values):.{digits}f}, "
        f"max {max(values):.{digits}f})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m benchmarks.testlist_benchmark")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--test-list", type=Path, default=None, help="default: the Iran list")
    parser.add_argument("--timeout-share", type=float, default=0.14)
    args = parser.parse_args(argv)
    path = args.test_list or default_list()
    if path is None or not path.is_file():
        raise SystemExit(f"no test list: give --test-list (looked for {LIST_PATH} above {REPO})")
    listed = load_test_list(path)
    layout = choose(listed.targets, args.timeout_share)
    hosts = len(layout.serving) + len(layout.connect_timeouts) + len(layout.tls_timeouts)
    catalog_size = sum(catalog_mix().values())
    internet = Internet(catalog_size, 0)
    web, hole, stall = _cycle(WEB_ADDRESSES), _cycle(BLACKHOLE_ADDRESSES), _cycle(STALL_ADDRESSES)
    for host in layout.serving:
        internet.zone[host] = next(web)
    for host in layout.connect_timeouts:
        internet.zone[host] = next(hole)
    for host in layout.tls_timeouts:
        internet.zone[host] = next(stall)
    timeouts = Timeouts()
    chain = longest_chain(timeouts)
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(
        f"test list: {path} ({len(listed.targets)} URLs on {hosts} hosts) + the catalog's mix "
        f"({catalog_size} targets) + 1 control"
    )
    timed_out = len(layout.connect_timeouts) + len(layout.tls_timeouts)
    print(
        f"hosts timing out: {timed_out} of {hosts} ({timed_out / hosts:.1%}): "
        f"{len(layout.connect_timeouts)} at connect, {len(layout.tls_timeouts)} at TLS"
    )
    print(
        f"timeouts (defaults): dns {timeouts.dns} s, connect {timeouts.connect} s, tls "
        f"{timeouts.tls} s, http {timeouts.http} s; longest per-target chain {chain:.0f} s; goal: "
        f"wall <= {GOAL_CHAIN_RATIO * chain:.1f} s, peak RSS < {GOAL_RSS_MB:.0f} MB"
    )
    results: list[tuple[Result, Spans]] = []
    with tempfile.TemporaryDirectory(prefix="probe-testlist-") as tmp_name:
        tmp = Path(tmp_name)
        ca_file = tmp / "ca.pem"
        spec = internet.spec(ca_file)
        spec.update(
            blackhole=BLACKHOLE_ADDRESSES,
            blackhole_ports=[80, 443],
            stall=STALL_ADDRESSES,
            tls_names=layout.serving + layout.tls_timeouts,
        )
        with loopback_internet(spec, tmp) as (server_pid, resolvers):
            scenario = write_scenario(
                tmp,
                "testlist",
                [entry(shape, name) for shape, name in internet.mixed],
                resolver=resolvers["dns"],
                ca_file=ca_file,
                goal="",
                window=DEFAULT_SECOND_ANSWER_WINDOW,
                test_lists=[path],
            )
            for i in range(args.runs):
                db = tmp / f"testlist-{i}.db"
                result = run_probe(scenario, db, server_pid)
                found = spans(db)
                results.append((result, found))
                print(
                    f"  run {i + 1}: wall {result.wall_s:.1f} s, peak RSS {result.rss_mb:.0f} MB, "
                    f"exit {result.exit_code}, {found.targets} targets measured, "
                    f"{result.stored} measurements, load {result.load:.2f}, probe CPU "
                    f"{result.cpu_s:.1f} s (waited for a CPU {result.cpu_wait_s:.1f} s); "
                    "sequential "
                    f"{found.sequential_s:.0f} s; controls first: {found.controls_first}, "
                    f"slowest control {found.slowest_control_s:.1f} s"
                )
                print("         outcomes: " + ", ".join(
                    f"{k} x{v}" for k, v in result.outcomes.most_common(8)
                ))  # fmt: skip
    walls = [r.wall_s for r, _ in results]
    loads = [r.load for r, _ in results]
    wall = statistics.median(walls)
    sequential = statistics.median(s.sequential_s for _, s in results)
    urls = len(listed.targets)
    print(f"\nwall            {_figure(walls, 's')}, load {min(loads):.2f}-{max(loads):.2f}")
    print(f"                = {wall / chain:.2f}x the longest chain ({chain:.0f} s); goal <= "
          f"{GOAL_CHAIN_RATIO}x")  # fmt: skip
    print(f"peak RSS        {_figure([r.rss_mb for r, _ in results], 'MB', 0)}; goal < "
          f"{GOAL_RSS_MB:.0f} MB")  # fmt: skip
    print(
        f"controls        first in {sum(s.controls_first for _, s in results)} of "
        f"{len(results)} runs; slowest control "
        f"{max(s.slowest_control_s for _, s in results):.1f} s (chain {chain:.0f} s)"
    )
    print(f"sequential      {sequential:.0f} s (sum of the targets' durations) = "
          f"{sequential / wall:.0f}x this run's wall")  # fmt: skip
    planned = urls * OONI_PLANNED_S_PER_URL
    low, high = (urls * s / OONI_SESSION_URLS for s in OONI_SESSION_S)
    print(f"OONI, planned   {urls} URLs x {OONI_PLANNED_S_PER_URL:.0f} s = {planned:.0f} s = "
          f"{planned / wall:.0f}x this run's wall")  # fmt: skip
    print(f"OONI, observed  {urls} URLs at {OONI_SESSION_S[0]:.0f}-{OONI_SESSION_S[1]:.0f} s per "
          f"{OONI_SESSION_URLS} = {low:.0f}-{high:.0f} s = {low / wall:.0f}-{high / wall:.0f}x "
          "this run's wall")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
