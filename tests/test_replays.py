"""Recorded replays: each lab scenario's recorded run (tests/replays/) gives, through today's
analysis, the verdicts it was given when it was recorded. No root, no network: analysis changes
are checked in every plain run. Re-record after an intended change: tests/replay.py
RECORD_COMMAND."""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import pytest

from probe.helper.protocol import ClientView, HelperResult
from probe.records import Status
from tests.builders import control_site, h_dns, h_target, h_tcp, https_site, make_run, only
from tests.lab.scenarios import SCENARIOS
from tests.replay import (
    RECORD_COMMAND,
    Replay,
    ReplayError,
    load_replay,
    mismatch_message,
    recorded_scenarios,
    rederive,
    replay_path,
    verdict_changes,
    write_replay,
)

RECORDED = recorded_scenarios()


@pytest.mark.parametrize("scenario", RECORDED)
def test_recorded_run_gives_the_recorded_verdicts(scenario: str) -> None:
    replay = load_replay(replay_path(scenario))
    changes = verdict_changes(replay.verdicts, rederive(replay))
    assert not changes, mismatch_message(replay, changes)


@pytest.mark.skipif(not RECORDED, reason="no replay recorded yet")
def test_every_lab_scenario_has_a_recorded_replay() -> None:
    missing = sorted(set(SCENARIOS) - set(RECORDED))
    stale = sorted(set(RECORDED) - set(SCENARIOS))
    assert not missing, f"no replay for {', '.join(missing)}: {RECORD_COMMAND}"
    assert not stale, f"replays of scenarios that are gone: {', '.join(stale)}"


def _small_replay() -> Replay:
    """A run that reached Twitter and the control site, its helper reaching Twitter too, with the
    verdicts today's analysis gives it."""
    url, host, address = "https://twitter.com/", "twitter.com", "104.244.42.1"
    measurements = (*https_site("twitter", url, host, address), *control_site())
    answer = HelperResult(
        client=ClientView(),
        targets=(h_target("twitter", url, h_dns(host, [address]), h_tcp(address, 443)),),
    )
    replay = Replay("clean", "abc123", make_run(), answer, measurements, ())
    return dataclasses.replace(replay, verdicts=tuple(rederive(replay)))


def test_a_replay_survives_its_fixture(tmp_path: Path) -> None:
    replay = _small_replay()
    reloaded = load_replay(write_replay(replay, tmp_path))
    assert reloaded == replay
    assert not verdict_changes(reloaded.verdicts, rederive(reloaded))


def test_a_changed_verdict_names_the_target_and_how_to_re_record(tmp_path: Path) -> None:
    replay = _small_replay()
    twitter = only(list(replay.verdicts), "https://twitter.com/")
    assert twitter.status is Status.OK
    made_up = dataclasses.replace(twitter, status=Status.BLOCKED, rule_id="made.up", detail="")
    recorded = tuple(made_up if v is twitter else v for v in replay.verdicts)
    reloaded = load_replay(write_replay(dataclasses.replace(replay, verdicts=recorded), tmp_path))
    changes = verdict_changes(reloaded.verdicts, rederive(reloaded))
    assert changes == [
        "twitter https://twitter.com/: recorded blocked None None (made.up: ) evidence "
        f"{len(twitter.evidence)}; now ok None None ({twitter.rule_id}: {twitter.detail}) "
        f"evidence {len(twitter.evidence)}"
    ]
    message = mismatch_message(reloaded, changes)
    assert message.startswith("replay clean (recorded on abc123): 1 verdict(s) changed")
    assert f"{RECORD_COMMAND} --scenario clean" in message


def test_a_verdict_analysis_no_longer_gives_is_a_change() -> None:
    replay = _small_replay()
    twitter = only(list(replay.verdicts), "https://twitter.com/")
    fewer = [v for v in rederive(replay) if v.target != twitter.target]
    changes = verdict_changes(replay.verdicts, fewer)
    assert len(changes) == 1
    assert changes[0].startswith("twitter https://twitter.com/: recorded ok ")
    assert changes[0].endswith("; now no verdict")


def test_the_rules_version_alone_is_no_change() -> None:
    replay = _small_replay()
    restamped = [dataclasses.replace(v, rules_version="0") for v in replay.verdicts]
    assert verdict_changes(replay.verdicts, restamped) == []


def test_a_damaged_fixture_is_a_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "clean.json.gz"
    bad.write_bytes(gzip.compress(b'{"format": 1, "scenario": "clean", "run": {}}'))
    with pytest.raises(ReplayError, match=r"clean\.json\.gz: "):
        load_replay(bad)
    bad.write_bytes(b"not gzip")
    with pytest.raises(ReplayError, match=r"clean\.json\.gz: "):
        load_replay(bad)
