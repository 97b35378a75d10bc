"""How long one probe run takes behind a censor: the full built-in catalog in the censorship lab
under the "iran_mix" scenario (DNS lies, blackholed Telegram DCs, SNI resets, the HTTP blockpage,
throttled video), the real CLI (`python3 -m probe run`) in the client namespace, the control test
helper in the ctrl namespace. Needs root (network namespaces):

    python3 -m benchmarks.lab_benchmark [--connect S] [--dns S] [--tls S] [--http S]
                                        [--window S] [--runs N] [--scenario NAME] [--no-helper]

The goal: a run ends within 1.5 x the connect timeout. A blackholed address costs one connect
timeout and nothing can end a run earlier than that; anything beyond half a timeout more is a
phase that waits longer than it needs to. The script prints the timeouts, the wall time of
`probe run` (interpreter start, helper, measuring, analysis), the measurement phase alone (the
stored run's started_at -> finished_at), and, for the slowest targets, each measurement's phase,
start offset and duration, so a missed goal names its cause. It asserts nothing and exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from probe.model import Measurement
from tests.lab.e2e import (
    LAB_DOH_RESOLVER,
    ControlHelper,
    LabTimeouts,
    ProbeRun,
    ProbeWorkspace,
    run_probe,
)
from tests.lab.lab import Lab, unavailable_reason
from tests.lab.scenarios import get_scenario

GOAL_FACTOR = 1.5
SLOWEST_SHOWN = 6


def _end(m: Measurement) -> datetime:
    from datetime import timedelta

    return m.observation.started_at + timedelta(milliseconds=m.observation.duration_ms)


def _label(m: Measurement) -> str:
    o = m.observation
    kind = o.differential_kind
    what = f"{o.layer.value}{'/' + str(kind) if kind else ''} {o.endpoint}"
    outcome = "ok" if o.failure is None else f"{o.failure} ({o.failed_operation})"
    return f"{what} -> {outcome}"


def describe_run(run: ProbeRun, timeouts: LabTimeouts, show: int = SLOWEST_SHOWN) -> list[str]:
    """The run's figures and its slowest targets, phase by phase."""
    goal = GOAL_FACTOR * timeouts.connect
    lines = [
        f"  exit {run.exit_code}, {len(run.measurements)} measurements, "
        f"{len(run.verdicts)} verdicts ({len(run.blocked())} blocked)",
        f"  wall time of `probe run`:  {run.wall_seconds:6.2f} s",
    ]
    phase = run.measurement_seconds
    if phase is None or run.run is None or not run.measurements:
        lines.append("  no stored run: nothing more to say")
        return lines
    verdict = "met" if phase < goal else "MISSED"
    lines[-1] += f"   goal < {goal:.2f} s: {'met' if run.wall_seconds < goal else 'MISSED'}"
    before = run.before_measuring_seconds or 0.0
    after = run.wall_seconds - before - phase
    lines.append(
        f"    = {before:.2f} s before measuring (interpreter, config, helper, network identity)"
        f" + {phase:.2f} s measuring + {after:.2f} s after (analysis, verdicts, output, exit)"
    )
    lines.append(f"  measurement phase:         {phase:6.2f} s   goal < {goal:.2f} s: {verdict}")
    start = run.run.started_at
    first = min(m.observation.started_at for m in run.measurements)
    last = max(_end(m) for m in run.measurements)
    lines.append(
        f"  first measurement at +{(first - start).total_seconds():.2f} s, "
        f"last one ends at +{(last - start).total_seconds():.2f} s"
    )
    spans: dict[tuple[str, str], list[Measurement]] = {}
    for m in run.measurements:
        spans.setdefault((m.platform, m.target), []).append(m)

    def finish(item: tuple[tuple[str, str], list[Measurement]]) -> datetime:
        return max(_end(m) for m in item[1])

    lines.append("  slowest targets (when their last measurement ended, from the run's start):")
    for (platform, target), found in sorted(spans.items(), key=finish, reverse=True)[:show]:
        ended = (max(_end(m) for m in found) - start).total_seconds()
        lines.append(f"    {ended:5.2f} s  {platform} {target}")
        for m in sorted(found, key=lambda m: m.observation.started_at):
            offset = (m.observation.started_at - start).total_seconds()
            seconds = m.observation.duration_ms / 1000
            lines.append(f"             +{offset:4.2f} s {seconds:5.2f} s  {_label(m)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m benchmarks.lab_benchmark", description=__doc__
    )
    defaults = LabTimeouts(dns=3.0, connect=2.0, tls=3.0, http=5.0, second_answer_window=0.5)
    parser.add_argument("--connect", type=float, default=defaults.connect)
    parser.add_argument("--dns", type=float, default=defaults.dns)
    parser.add_argument("--tls", type=float, default=defaults.tls)
    parser.add_argument("--http", type=float, default=defaults.http)
    parser.add_argument(
        "--window",
        type=float,
        default=defaults.second_answer_window,
        help="[dns] second_answer_window (UDP resolvers only)",
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scenario", default="iran_mix")
    parser.add_argument(
        "--resolver",
        action="append",
        default=None,
        help=f"a [dns] resolver (repeat); default: system and {LAB_DOH_RESOLVER}",
    )
    parser.add_argument("--no-helper", action="store_true", help="run without the test helper")
    parser.add_argument(
        "--extra-target",
        action="append",
        default=[],
        metavar="URL",
        help="add a target beyond the catalog, e.g. http://redirector.googlevideo.com/big (a 2 MiB"
        " download from the throttled video host)",
    )
    parser.add_argument("--show", type=int, default=SLOWEST_SHOWN, help="slowest targets shown")
    options = parser.parse_args(argv)
    reason = unavailable_reason()
    if reason is not None:
        print(f"cannot run the lab benchmark: {reason}", file=sys.stderr)
        return 0
    timeouts = LabTimeouts(
        dns=options.dns,
        connect=options.connect,
        tls=options.tls,
        http=options.http,
        second_answer_window=options.window,
    )
    resolvers = tuple(options.resolver or ("system", LAB_DOH_RESOLVER))
    print(f"scenario {options.scenario}, the built-in catalog, {options.runs} run(s)")
    print(f"timeouts: {timeouts.describe()}")
    print(f"resolvers: {', '.join(resolvers)}; helper: {'no' if options.no_helper else 'yes'}")
    if options.extra_target:
        print(f"extra targets: {', '.join(options.extra_target)}")
    print(f"goal: the run ends within {GOAL_FACTOR} x connect = {GOAL_FACTOR * timeouts.connect} s")
    with tempfile.TemporaryDirectory(prefix="lab-benchmark-") as tmp, Lab.create() as lab:
        print(f"lab {lab.prefix} up in {lab.bring_up_seconds:.2f} s")
        workspace = ProbeWorkspace.create(Path(tmp), timeouts)
        helper = None if options.no_helper else ControlHelper.start(lab, workspace)
        try:
            extra = "".join(
                f'\n[[targets]]\nplatform = "extra"\nurl = "{url}"\n'
                for url in options.extra_target
            )
            config = workspace.write_config(
                helper_url=helper.url if helper else None,
                token=helper.token if helper else None,
                resolvers=resolvers,
                extra=extra,
            )
            lab.apply(get_scenario(options.scenario))
            walls, phases = [], []
            for i in range(options.runs):
                started = time.monotonic()
                run = run_probe(lab, workspace, config, f"{options.scenario}-{i}")
                print(f"run {i + 1} ({time.monotonic() - started:.1f} s):")
                print("\n".join(describe_run(run, timeouts, options.show)))
                walls.append(run.wall_seconds)
                if run.measurement_seconds is not None:
                    phases.append(run.measurement_seconds)
        finally:
            if helper is not None:
                helper.stop()
    goal = GOAL_FACTOR * timeouts.connect

    def against(values: list[float]) -> str:
        median = statistics.median(values)
        met = "met" if median < goal else "MISSED"
        return f"min {min(values):.2f} s, median {median:.2f} s (goal < {goal:.2f} s: {met})"

    print(f"summary: wall {against(walls)}")
    print(f"         measurement phase {against(phases) if phases else 'not recorded'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
