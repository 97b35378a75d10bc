"""The lab's shared expectations (tests/lab/expectations.py), checked without root: each recorded
replay (one run per scenario with the control helper, tests/replays/) scores correct on every
target, and the scoring tells a false "blocked" from a miss from an inconclusive verdict."""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Sequence

import pytest

from probe.config import parse_settings
from probe.model import Target
from probe.records import Status, Verdict
from probe.targets import select_targets
from tests.builders import only
from tests.lab.expectations import (
    SCENARIO_RULES,
    Score,
    Setup,
    Truth,
    describe,
    expected,
    judge_run,
    score,
)
from tests.lab.plan import build_plan, default_targets
from tests.lab.scenarios import SCENARIOS
from tests.replay import load_replay, recorded_scenarios, replay_config_text, replay_path

PLAN = build_plan(default_targets())


def replay_targets() -> Sequence[Target]:
    """The targets the recorded runs planned (the end-to-end config's)."""
    return select_targets(parse_settings(tomllib.loads(replay_config_text()))).targets


def test_every_lab_scenario_has_expectations() -> None:
    assert set(SCENARIO_RULES) == set(SCENARIOS)


@pytest.mark.parametrize("scenario", recorded_scenarios())
def test_recorded_run_with_a_helper_meets_the_scenarios_expectations(scenario: str) -> None:
    replay = load_replay(replay_path(scenario))
    expectations = expected(scenario, Setup.HELPER, PLAN, replay_targets())
    judged = judge_run(replay.verdicts, expectations)
    wrong = [describe(j) for j in judged if j.score is not Score.CORRECT]
    assert not wrong, "\n".join(wrong)
    assert len(judged) == len(replay.verdicts)


def _with(verdict: Verdict, status: Status, technique: str | None = None) -> Verdict:
    return dataclasses.replace(verdict, status=status, technique=technique, confidence=None)


def test_scoring_tells_false_blocked_missed_and_inconclusive_apart() -> None:
    replay = load_replay(replay_path("sni_reset"))
    expectations = expected("sni_reset", Setup.HELPER, PLAN, replay_targets())
    reset = only(list(replay.verdicts), "https://twitter.com/")
    clean = only(list(replay.verdicts), "https://www.youtube.com/")
    gone = only(list(replay.verdicts), "https://x.com/")
    assert expectations[(reset.platform, reset.target)].truth is Truth.CENSORED
    assert expectations[(clean.platform, clean.target)].truth is Truth.CLEAN
    changed = {
        reset.target: _with(reset, Status.OK),  # censored, called ok
        clean.target: _with(clean, Status.BLOCKED, "tcp.reset"),  # clean, called blocked
        gone.target: _with(gone, Status.INCONCLUSIVE),
    }
    verdicts = [changed.get(v.target, v) for v in replay.verdicts]
    counts = score(verdicts, expectations)
    assert counts[Score.MISSED] == 1
    assert counts[Score.FALSE_BLOCKED] == 1
    assert counts[Score.INCONCLUSIVE] == 1
    assert counts[Score.CORRECT] == len(verdicts) - 3
    # A target the run gave no verdict is counted, not skipped.
    assert score(verdicts[1:], expectations)[Score.NO_VERDICT] == 1


def test_a_limitation_says_why_its_target_is_inconclusive() -> None:
    for setup in (Setup.ALONE, Setup.DEFAULT):
        expectations = expected("endpoint_down", setup, PLAN, replay_targets())
        down = [e for e in expectations.values() if e.truth is Truth.DOWN]
        assert len(down) == 3
        assert all(e.limitation and "never called blocked" in e.limitation for e in down)
