"""Recorded replays: one lab run per scenario kept as a compact fixture
(tests/replays/NAME.json.gz), from which the verdicts are re-derived without root, through the
product's analysis.

A fixture is one JSON object, gzip-compressed, every record in it serialised by probe.codec (the
run, its measurements, its verdicts) or by the helper protocol (the helper's answer, the run's
controls):

    {"format": 1, "scenario": "sni_reset", "recorded_on": "<main commit>",
     "run": {...}, "helper": {...} | null, "measurements": [...], "verdicts": [...]}

Re-deriving takes the run's targets from the end-to-end config's (tests/lab/e2e.py: the built-in
catalog and EXTRA_TARGETS), the controls from the helper's answer, and calls analysis.analyse as
the run session does. Recording needs the lab (root): RECORD_COMMAND.
"""

from __future__ import annotations

import gzip
import json
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.analyse import analyse
from analysis.controls import controls_from_helper_targets
from probe.codec import (
    decode_measurement,
    decode_run,
    decode_verdict,
    encode_measurement,
    encode_run,
    encode_verdict,
)
from probe.config import parse_settings
from probe.helper.protocol import HelperResult, encode_response, parse_response
from probe.model import Measurement, Run
from probe.records import Verdict
from probe.targets import load_platforms, select_targets

REPLAY_DIR = Path(__file__).resolve().parent / "replays"
FORMAT = 1
SUFFIX = ".json.gz"
RECORD_COMMAND = "sudo flock /work/lab.lock python3 -m tests.lab record-replays"


class ReplayError(ValueError):
    """A replay fixture that cannot be read (not gzip, not JSON, not this format)."""


@dataclass(frozen=True, slots=True)
class Replay:
    """One recorded run: what it measured, the helper's answer, the verdicts it was given."""

    scenario: str
    recorded_on: str
    run: Run
    helper: HelperResult | None
    measurements: tuple[Measurement, ...]
    verdicts: tuple[Verdict, ...]


def replay_path(scenario: str, folder: Path = REPLAY_DIR) -> Path:
    return folder / f"{scenario}{SUFFIX}"


def encode_replay(replay: Replay) -> dict[str, Any]:
    helper = replay.helper
    return {
        "format": FORMAT,
        "scenario": replay.scenario,
        "recorded_on": replay.recorded_on,
        "run": encode_run(replay.run),
        "helper": None if helper is None else encode_response(helper),
        "measurements": [encode_measurement(m) for m in replay.measurements],
        "verdicts": [encode_verdict(v) for v in replay.verdicts],
    }


def write_replay(replay: Replay, folder: Path = REPLAY_DIR) -> Path:
    """Write the fixture (compact JSON, gzip with no timestamp: the same run gives the same
    bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = replay_path(replay.scenario, folder)
    text = json.dumps(encode_replay(replay), separators=(",", ":"), sort_keys=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(gzip.compress(text.encode(), compresslevel=9, mtime=0))
    temporary.replace(path)
    return path


def decode_replay(document: Any, name: str) -> Replay:
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ReplayError(f"{name}: not a replay of format {FORMAT}")
    helper = document.get("helper")
    try:
        return Replay(
            scenario=str(document["scenario"]),
            recorded_on=str(document.get("recorded_on", "")),
            run=decode_run(document["run"], "$.run"),
            helper=None if helper is None else parse_response(helper),
            measurements=tuple(
                decode_measurement(m, f"$.measurements[{i}]")
                for i, m in enumerate(document["measurements"])
            ),
            verdicts=tuple(
                decode_verdict(v, f"$.verdicts[{i}]") for i, v in enumerate(document["verdicts"])
            ),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ReplayError(f"{name}: {exc}") from None


def load_replay(path: Path) -> Replay:
    try:
        document = json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, EOFError, ValueError) as exc:
        raise ReplayError(f"{path}: {exc}") from None
    return decode_replay(document, str(path))


def recorded_scenarios(folder: Path = REPLAY_DIR) -> list[str]:
    return sorted(p.name.removesuffix(SUFFIX) for p in folder.glob(f"*{SUFFIX}"))


def replay_config_text() -> str:
    """What of the end-to-end config decides the verdicts (its targets and catalog); the lab's
    addresses, timeouts and helper URL only shaped the measuring."""
    from tests.lab.e2e import EXTRA_TARGETS

    return EXTRA_TARGETS


def rederive(replay: Replay) -> list[Verdict]:
    """The verdicts today's analysis gives the recorded measurements, with the run's planned
    targets and its helper's controls, as the run session decides them (probe/session.py)."""
    settings = parse_settings(tomllib.loads(replay_config_text()))
    selection = select_targets(settings)
    controls = (
        None if replay.helper is None else controls_from_helper_targets(replay.helper.targets)
    )
    result = analyse(
        replay.run,
        replay.measurements,
        controls=controls,
        targets=[*selection.targets, *selection.controls],
        platforms=load_platforms(settings),
    )
    return result.verdicts


def _shown(v: Verdict) -> str:
    confidence = None if v.confidence is None else v.confidence.value
    return (
        f"{v.status.value} {v.technique} {confidence} ({v.rule_id}: {v.detail}) "
        f"evidence {len(v.evidence)}"
    )


def _compared(v: Verdict) -> tuple[object, ...]:
    """What a verdict says, less the RULES_VERSION that stamps it."""
    return (
        v.run_id,
        v.probe_id,
        v.measured_at,
        v.asn,
        v.country,
        v.status,
        v.technique,
        v.confidence,
        v.rule_id,
        v.detail,
        tuple(sorted(v.evidence)),
    )


def verdict_changes(recorded: Sequence[Verdict], now: Sequence[Verdict]) -> list[str]:
    """One line per target whose verdict differs between the recording and today's analysis."""
    before = {(v.platform, v.target): v for v in recorded}
    after = {(v.platform, v.target): v for v in now}
    lines = []
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key), after.get(key)
        if old is not None and new is not None and _compared(old) == _compared(new):
            continue
        was = "no verdict" if old is None else _shown(old)
        is_now = "no verdict" if new is None else _shown(new)
        lines.append(f"{key[0]} {key[1]}: recorded {was}; now {is_now}")
    return lines


def mismatch_message(replay: Replay, changes: Sequence[str]) -> str:
    return (
        f"replay {replay.scenario} (recorded on {replay.recorded_on or 'unknown commit'}): "
        f"{len(changes)} verdict(s) changed\n  "
        + "\n  ".join(changes)
        + "\nIf the change is intended (a rule, fingerprint or catalog change), re-record: "
        f"{RECORD_COMMAND} --scenario {replay.scenario}   (all scenarios: without --scenario)"
    )
