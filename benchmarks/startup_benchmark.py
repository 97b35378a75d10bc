"""Start-up of the `probe` command, as a volunteer's shell spawns it (`python3 -m probe`).

    python3 -m benchmarks.startup_benchmark [--runs N] [--targets N]

Figures (median of --runs, min, max; the 1-minute load average before each figure):

    bare        `python3 -c "import asyncio, ssl"`: the same interpreter's floor
    --version   `probe --version`; goal: within 5x of bare
    --help      `probe --help`
    first check `probe run` against the loopback internet (benchmarks/loopback_internet.py):
                seconds from spawn to its first DNS query (an outside clock: the first UDP socket
                connected to the loopback resolver); goal: <= 0.4 s

It asserts no timing and exits 0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.run_benchmark import (
    REPO,
    Internet,
    _env,
    build_scenarios,
    loopback_internet,
    run_probe,
)

GOAL_VERSION_RATIO = 5.0
GOAL_FIRST_CHECK_S = 0.4
# The first check's start, by an outside clock: when the probe's first DNS socket to the loopback
# resolver appears (benchmarks.run_benchmark polls /proc/net/udp every few ms). The stored start
# times are whole seconds, too coarse for this.
FIRST = "first DNS query"


def _load() -> float:
    return os.getloadavg()[0]


def figure(values: Sequence[float], loads: Sequence[float]) -> str:
    """`median (min-max) s, load L` with the loads seen before the runs (lowest-highest)."""
    load = f"{min(loads):.2f}-{max(loads):.2f}" if len(loads) > 1 else f"{loads[0]:.2f}"
    return (
        f"median {statistics.median(values):.3f} s (min {min(values):.3f}, max {max(values):.3f})"
        f", load {load}"
    )


def _timed(command: Sequence[str], runs: int) -> tuple[list[float], list[float]]:
    times, loads = [], []
    for _ in range(runs):
        loads.append(_load())
        started = time.monotonic()
        subprocess.run(command, cwd=REPO, env=_env(), check=True, stdout=subprocess.DEVNULL)
        times.append(time.monotonic() - started)
    return times, loads


def first_check_seconds(runs: int, targets: int) -> tuple[list[float], list[float]]:
    """Spawn-to-first-check of `probe run` on a small catalog mix (its own spawn to the start of
    the earliest stored measurement)."""
    internet = Internet(targets, 1)
    found, loads = [], []
    with tempfile.TemporaryDirectory(prefix="probe-startup-") as tmp_name:
        tmp = Path(tmp_name)
        ca_file = tmp / "ca.pem"
        with loopback_internet(internet.spec(ca_file), tmp) as (server_pid, resolvers):
            scenario = build_scenarios(tmp, internet, resolvers, ca_file)["mix"]
            for i in range(runs):
                result = run_probe(scenario, tmp / f"mix-{i}.db", server_pid)
                if FIRST not in result.phases:
                    raise SystemExit(f"run {i + 1} sent no DNS query (exit {result.exit_code})")
                found.append(result.phases[FIRST])
                loads.append(result.load)
    return found, loads


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m benchmarks.startup_benchmark")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--targets", type=int, default=20, help="targets of the probe run")
    args = parser.parse_args(argv)
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    probe = [sys.executable, "-m", "probe"]
    measured: dict[str, Callable[[], tuple[list[float], list[float]]]] = {
        "bare": lambda: _timed([sys.executable, "-c", "import asyncio, ssl"], args.runs),
        "--version": lambda: _timed([*probe, "--version"], args.runs),
        "--help": lambda: _timed([*probe, "--help"], args.runs),
        "first check": lambda: first_check_seconds(args.runs, args.targets),
    }
    medians = {}
    for name, measure in measured.items():
        values, loads = measure()
        medians[name] = statistics.median(values)
        print(f"{name:12} {figure(values, loads)}")
    ratio = medians["--version"] / medians["bare"]
    print(f"--version / bare: {ratio:.1f}x (goal <= {GOAL_VERSION_RATIO:.0f}x)")
    print(
        f"probe run, spawn to first check: {medians['first check']:.3f} s "
        f"(goal <= {GOAL_FIRST_CHECK_S} s)"
    )
    print("  (when its first DNS socket to the loopback resolver appeared, polled every ~2 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
