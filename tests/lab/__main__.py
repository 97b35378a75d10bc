"""`python3 -m tests.lab --scenario NAME [--scenario NAME...] -- CMD ARGS...`: bring the lab up,
apply the scenarios, run CMD in the client namespace (SSL_CERT_FILE = the lab CA), print its
output, tear everything down, exit with CMD's status. `--list` lists the scenarios and what each
hits; `--vantage control` runs CMD in the uncensored control namespace instead; `--helper` starts
the control test helper in the control namespace first and gives CMD a config that uses it
(PROBE_CONFIG; the lab's short timeouts, a database in a temporary directory), so that `probe run`
tells down and blocked apart as a volunteer with a helper would see it; `--sweep` removes labs
left behind by processes that were killed. `python3 -m tests.lab record-replays [--scenario
NAME...]` records the replay fixtures in tests/replays/ (tests/lab/replays.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from tests.lab.scenarios import SCENARIOS, get_scenario

if TYPE_CHECKING:
    from tests.lab.lab import Lab


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m tests.lab",
        description="Run a command behind a simulated censor (Linux network namespaces; root).",
        epilog="example: python3 -m tests.lab --scenario iran_mix -- python3 -m probe run",
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument(
        "--scenario",
        action="append",
        default=[],
        metavar="NAME",
        help="a scenario to apply (repeat to compose)",
    )
    parser.add_argument(
        "--vantage",
        choices=("client", "control"),
        default="client",
        help="where CMD runs: behind the censor (client) or uncensored (control)",
    )
    parser.add_argument(
        "--helper",
        action="store_true",
        help="start the control test helper in the control namespace and point CMD at it "
        "(PROBE_CONFIG: a config with the lab's timeouts, the [helper] table and its own database)",
    )
    parser.add_argument("--sweep", action="store_true", help="remove labs left by killed runs")
    return parser


def list_scenarios() -> str:
    from tests.lab.plan import build_plan, default_targets

    address_plan = build_plan(default_targets())
    lines = []
    for scenario in SCENARIOS.values():
        lines.append(f"{scenario.name}: {scenario.description}")
        for technique in scenario.techniques:
            hits = technique.hits(address_plan)
            if technique.by_address and technique.hosts:
                # Name the hosts behind the addresses: "www.facebook.com=157.240.1.215".
                hits = tuple(
                    host
                    if host == address_plan.address_of(host)
                    else f"{host}={address_plan.address_of(host)}"
                    for host in address_plan.select(technique.hosts)
                )
            lines.append(f"    {technique.name}: {', '.join(hits)}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["record-replays"]:
        from tests.lab.replays import main as replays_main

        return replays_main(args)
    command: list[str] = []
    if "--" in args:
        split = args.index("--")
        args, command = args[:split], args[split + 1 :]
    parser = _parser()
    options = parser.parse_args(args)
    if options.list:
        print(list_scenarios())
        return 0
    if options.sweep:
        from tests.lab.topology import sweep_stale

        swept = sweep_stale()
        print(f"swept {len(swept)} stale lab(s): {' '.join(swept)}".rstrip())
        if not command:
            return 0
    if not command:
        parser.error("give the command to run after --")
    try:
        scenarios = [get_scenario(name) for name in options.scenario]
    except KeyError as exc:
        parser.error(str(exc.args[0]))

    from tests.lab.lab import Lab

    with ExitStack() as stack:
        lab = stack.enter_context(Lab.create())
        env: dict[str, str] = {}
        if options.helper:
            env = _start_helper(lab, stack)
        lab.apply(*scenarios)
        names = ", ".join(options.scenario) or "clean"
        print(
            f"lab {lab.prefix} up in {lab.bring_up_seconds:.2f} s; scenario: {names}",
            file=sys.stderr,
        )
        run = lab.run_in_client if options.vantage == "client" else lab.run_in_control
        done = run(command, env=env, capture=False, timeout=24 * 3600)
    print(f"lab {lab.prefix} torn down in {lab.teardown_seconds:.2f} s", file=sys.stderr)
    # A command killed by a signal exits 128 + its number, as in a shell.
    return done.returncode if done.returncode >= 0 else 128 - done.returncode


def _start_helper(lab: Lab, stack: ExitStack) -> dict[str, str]:
    """The control helper served from the lab's control namespace (stopped with the lab), and
    the environment that points the command at a config using it."""
    from tests.lab.e2e import ControlHelper, ProbeWorkspace

    root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="censorprobe-lab-")))
    workspace = ProbeWorkspace.create(root)
    helper = stack.enter_context(ControlHelper.start(lab, workspace))
    database = workspace.root / "db" / "lab.db"
    config = workspace.write_config(
        helper_url=helper.url,
        token=helper.token,
        extra=f"\n[probe]\ndatabase = {json.dumps(str(database))}\n",
    )
    print(f"control helper at {helper.url} (ctrl namespace); config {config}", file=sys.stderr)
    return {"PROBE_CONFIG": str(config)}


if __name__ == "__main__":
    sys.exit(main())
