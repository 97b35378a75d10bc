"""The scenario x config matrix of the censorship lab: for every scenario (tests/lab/scenarios.py),
one `probe run` with the default config (the shipped resolvers, answered by the lab's stand-in
DoH and 8.8.8.8, no helper) and one with the control helper (the end-to-end config), each
endpoint's verdict scored against the scenario's expectation (tests/lab/expectations.py, the
definition the end-to-end tests assert):

    correct        the verdict is the one expected (`limited`: of those, an inconclusive verdict
                   accepted as a documented limitation, e.g. where no control can tell)
    false_blocked  a clean or down endpoint called blocked
    missed         a censored endpoint called ok
    inconclusive   inconclusive where a decided verdict was expected
    wrong          any other unexpected verdict (another technique, down for blocked, ...)
    no_verdict     an endpoint the run gave no verdict

Needs root (network namespaces); run it alone on the machine's lab lock:

    sudo flock /work/lab.lock python3 -m benchmarks.lab_matrix [--scenario NAME ...]
        [--setup default|helper|alone ...]

It prints one row per scenario and setup, the totals per setup, every verdict that is not
correct (with its rule and detail), and the limitations that were relied on. It asserts nothing
and exits 0 (1 only when a run did not finish).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from tests.lab.e2e import (
    ControlHelper,
    ProbeWorkspace,
    default_config,
    e2e_config,
    planned_targets,
    run_probe,
)
from tests.lab.expectations import Judged, Score, Setup, describe, expected, judge_run
from tests.lab.lab import Lab, unavailable_reason
from tests.lab.scenarios import SCENARIOS, get_scenario

COLUMNS = (
    Score.CORRECT,
    Score.FALSE_BLOCKED,
    Score.MISSED,
    Score.INCONCLUSIVE,
    Score.WRONG,
    Score.NO_VERDICT,
)
RUN_TIMEOUT = 300.0


def header() -> str:
    cells = [f"{'scenario':<22}", f"{'setup':<8}", f"{'n':>3}"]
    cells += [f"{c.value:>13}" for c in COLUMNS] + [f"{'limited':>8}", f"{'exit':>4}", "  wall"]
    return " ".join(cells)


def row(name: str, setup: str, judged: list[Judged], exit_code: int | None, wall: float) -> str:
    counts = Counter(j.score for j in judged)
    limited = sum(1 for j in judged if j.verdict is not None and j.expectation.limited(j.verdict))
    cells = [f"{name:<22}", f"{setup:<8}", f"{len(judged):>3}"]
    cells += [f"{counts[c]:>13}" for c in COLUMNS]
    shown_exit = "-" if exit_code is None else str(exit_code)
    cells += [f"{limited:>8}", f"{shown_exit:>4}", f"{wall:5.1f}s"]
    return " ".join(cells)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m benchmarks.lab_matrix", description=__doc__)
    parser.add_argument("--scenario", action="append", default=[], choices=sorted(SCENARIOS))
    parser.add_argument(
        "--setup",
        action="append",
        default=[],
        choices=[s.value for s in Setup],
        help="default: default and helper",
    )
    options = parser.parse_args(argv)
    reason = unavailable_reason()
    if reason is not None:
        print(f"cannot run the lab matrix: {reason}", file=sys.stderr)
        return 0
    names = options.scenario or list(SCENARIOS)
    setups = [Setup(s) for s in options.setup] or [Setup.DEFAULT, Setup.HELPER]
    totals: dict[Setup, Counter[Score]] = {s: Counter() for s in setups}
    limited: dict[Setup, int] = dict.fromkeys(setups, 0)
    not_correct: list[str] = []
    limitations: dict[str, set[str]] = {}
    unfinished = 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lab-matrix-") as tmp, Lab.create() as lab:
        workspace = ProbeWorkspace.create(Path(tmp))
        print(f"lab {lab.prefix} up in {lab.bring_up_seconds:.2f} s")
        print(f"timeouts: {workspace.timeouts.describe()}")
        with ControlHelper.start(lab, workspace) as helper:
            configs = {
                Setup.DEFAULT: default_config(workspace),
                Setup.HELPER: e2e_config(lab, workspace, helper),
                Setup.ALONE: e2e_config(lab, workspace, None, name="probe-alone.toml"),
            }
            print(header(), flush=True)
            for name in names:
                lab.clear()
                lab.apply(get_scenario(name))
                for setup in setups:
                    config = configs[setup]
                    run = run_probe(
                        lab, workspace, config, f"{name}-{setup.value}", timeout=RUN_TIMEOUT
                    )
                    expectations = expected(name, setup, lab.plan, planned_targets(config))
                    judged = judge_run(run.verdicts, expectations)
                    if run.run is None or run.run.finished_at is None:
                        unfinished += 1
                        not_correct.append(f"{name} {setup.value}: the run did not finish")
                        not_correct.append(run.stderr[-1000:])
                    print(row(name, setup.value, judged, run.exit_code, run.wall_seconds))
                    for j in judged:
                        totals[setup][j.score] += 1
                        if j.score is not Score.CORRECT:
                            not_correct.append(f"{name} {setup.value}: {describe(j)}")
                        elif j.verdict is not None and j.expectation.limited(j.verdict):
                            limited[setup] += 1
                            limitations.setdefault(str(j.expectation.limitation), set()).add(
                                f"{name}/{setup.value}"
                            )
            lab.clear()
    print()
    print("totals:")
    for setup in setups:
        counts = totals[setup]
        cells = ", ".join(f"{c.value} {counts[c]}" for c in COLUMNS)
        print(
            f"  {setup.value:<8} {sum(counts.values())} verdicts: {cells}; limited {limited[setup]}"
        )
    print(f"({len(names)} scenarios x {len(setups)} setups in {time.monotonic() - started:.0f} s)")
    print()
    print(f"not correct ({len(not_correct)}):" if not_correct else "not correct: none")
    for line in not_correct:
        print(f"  {line}")
    if limitations:
        print()
        print("limitations relied on (correct, but not the truth):")
        for reason_text, where in sorted(limitations.items()):
            print(f"  {reason_text}\n    in {', '.join(sorted(where))}")
    return 1 if unfinished else 0


if __name__ == "__main__":
    sys.exit(main())
