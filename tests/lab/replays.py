"""Recording the replay fixtures (tests/replay.py): one probe run per lab scenario, with the
end-to-end config (tests/lab/e2e.py: e2e_config) and the control helper, kept as
tests/replays/SCENARIO.json.gz.

    sudo flock /work/lab.lock python3 -m tests.lab record-replays [--scenario NAME ...]

One lab and one helper serve every scenario. Each run is `run_once` (probe/session.py, what
`probe run` calls) in the client namespace, by this module's `measure` command, which writes the
run's fixture beside its database; this process then moves it into tests/replays/.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tests.replay import REPLAY_DIR, Replay, load_replay, replay_path, write_replay

# A run under the heaviest scenario takes well under a minute in the lab; this stops a wedged one.
RUN_TIMEOUT = 300.0


def _recorded_on() -> str:
    """The commit the fixtures were recorded on (+dirty when the tree had uncommitted changes
    outside tests/replays)."""
    root = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short=12", "HEAD") or "unknown"
    changed = [
        line
        for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
        if "tests/replays/" not in line
    ]
    return f"{head}+dirty" if changed else head


def measure(config: Path, db: Path, scenario: str, out: Path, recorded_on: str) -> int:
    """One run with `config` into `db` (in the namespace this is called in), its fixture into
    the folder `out`."""
    from probe.config import load_settings
    from probe.helper.protocol import HelperResult
    from probe.session import plan_run, run_once
    from probe.store import Store

    settings = load_settings(config)
    report = run_once(settings, plan=plan_run(settings), db=str(db))
    with Store.open(db) as store:
        run = store.get_run(report.run.id)
        measurements = tuple(store.measurements(run_id=report.run.id))
    if run is None:
        print(f"run {report.run.id} is not in {db}", file=sys.stderr)
        return 1
    helper = report.helper if isinstance(report.helper, HelperResult) else None
    if helper is not None:
        # The helper saw the probe's address: a volunteer's identity is never kept.
        helper = dataclasses.replace(
            helper, client=dataclasses.replace(helper.client, address=None)
        )
    replay = Replay(
        scenario=scenario,
        recorded_on=recorded_on,
        run=run,
        helper=helper,
        measurements=measurements,
        verdicts=tuple(report.analysis.verdicts),
    )
    write_replay(replay, out)
    return 0


def record(scenarios: Sequence[str], folder: Path = REPLAY_DIR) -> int:
    """Bring the lab and its helper up once, record each scenario's run; 0 when all were kept."""
    from tests.lab.e2e import ControlHelper, ProbeWorkspace, e2e_config
    from tests.lab.lab import Lab
    from tests.lab.scenarios import get_scenario

    recorded_on = _recorded_on()
    failures = 0
    with tempfile.TemporaryDirectory(prefix="censorprobe-replays-") as tmp, Lab.create() as lab:
        workspace = ProbeWorkspace.create(Path(tmp))
        with ControlHelper.start(lab, workspace) as helper:
            config = e2e_config(lab, workspace, helper)
            for name in scenarios:
                started = time.monotonic()
                lab.clear()
                lab.apply(get_scenario(name))
                staging = workspace.root / "staging"
                argv = [
                    sys.executable,
                    "-m",
                    "tests.lab.replays",
                    "measure",
                    "--config",
                    str(config),
                    "--db",
                    str(workspace.database(name)),
                    "--scenario",
                    name,
                    "--out",
                    str(staging),
                    "--recorded-on",
                    recorded_on,
                ]
                done = lab.run_in_client(argv, env=workspace.environment(), timeout=RUN_TIMEOUT)
                staged = replay_path(name, staging)
                if done.returncode != 0 or not staged.exists():
                    failures += 1
                    print(f"{name}: not recorded (exit {done.returncode})", file=sys.stderr)
                    print(done.stderr[-2000:], file=sys.stderr)
                    continue
                replay = load_replay(staged)
                path = write_replay(replay, folder)
                print(
                    f"{name}: {len(replay.measurements)} measurements, {len(replay.verdicts)} "
                    f"verdicts, {path.stat().st_size / 1024:.0f} KiB "
                    f"({time.monotonic() - started:.1f} s)",
                    file=sys.stderr,
                )
            lab.clear()
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    from tests.lab.scenarios import SCENARIOS

    parser = argparse.ArgumentParser(
        prog="python3 -m tests.lab record-replays",
        description="Record the replay fixtures: one probe run per lab scenario (root).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record-replays", help="record tests/replays/ (all scenarios by default)")
    rec.add_argument("--scenario", action="append", default=[], choices=sorted(SCENARIOS))
    rec.add_argument("--out", type=Path, default=REPLAY_DIR, help=argparse.SUPPRESS)
    one = sub.add_parser("measure", help=argparse.SUPPRESS)
    one.add_argument("--config", type=Path, required=True)
    one.add_argument("--db", type=Path, required=True)
    one.add_argument("--scenario", required=True)
    one.add_argument("--out", type=Path, required=True)
    one.add_argument("--recorded-on", default="")
    options = parser.parse_args(argv)
    if options.command == "measure":
        return measure(
            options.config, options.db, options.scenario, options.out, options.recorded_on
        )
    return record(options.scenario or list(SCENARIOS), options.out)


if __name__ == "__main__":
    sys.exit(main())
