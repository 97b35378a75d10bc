"""Past runs as a volunteer looks them up: the list of runs (`probe runs`), one run by a unique
prefix of its id, and one run's verdicts with the measurements they rest on (`probe show`).

Read-only over the Store, like `ooniprobe list` and `ooniprobe show`: nothing here measures,
decides or writes.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from probe.model import Measurement, Run
from probe.records import PlatformSummary, Status, Verdict
from probe.store import Store
from probe.store.uploads import uploaded_runs

# Run ids are uuid4 hex (probe.model.new_run_id): a prefix is hex too.
_HEX = frozenset("0123456789abcdef")


class RunLookupError(ValueError):
    """A run id (or prefix) that names no run, or more than one; the message says which."""


@dataclass(frozen=True, slots=True)
class RunOverview:
    """One run in the list: its record, how many of its targets got each verdict, and whether
    the [upload] collector has acknowledged all of it."""

    run: Run
    blocked: int = 0
    ok: int = 0
    down: int = 0
    inconclusive: int = 0
    uploaded: bool = False

    @property
    def judged(self) -> int:
        return self.blocked + self.ok + self.down + self.inconclusive


@dataclass(frozen=True, slots=True)
class Judged:
    """A verdict with the measurements it rests on (in time order)."""

    verdict: Verdict
    evidence: tuple[Measurement, ...]


@dataclass(frozen=True, slots=True)
class RunDetail:
    """One run: its record, platform summaries, and its verdicts with their evidence."""

    run: Run
    summaries: tuple[PlatformSummary, ...]
    verdicts: tuple[Judged, ...]
    measurements: int


def run_overviews(
    store: Store,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    asns: Collection[int] | None = None,
    limit: int | None = None,
) -> list[RunOverview]:
    """Runs started in [since, until) on `asns` (all when None), newest first, with counts."""
    runs = list(store.runs(since=since, until=until, asns=asns, newest_first=True, limit=limit))
    ids = [r.id for r in runs]
    counts, uploaded = store.verdict_counts(ids), uploaded_runs(store, ids)
    return [_overview(run, counts.get(run.id, {}), run.id in uploaded) for run in runs]


def latest_overview(store: Store) -> RunOverview | None:
    """The newest run, if any."""
    newest = run_overviews(store, limit=1)
    return newest[0] if newest else None


def find_run(store: Store, text: str) -> Run:
    """The run whose id is `text` or starts with it; RunLookupError when none or several do."""
    prefix = text.strip().lower()
    if not prefix or not set(prefix) <= _HEX:
        raise RunLookupError(f"{text!r} is not a run id (hexadecimal, as `probe runs` lists)")
    matches = store.run_ids_starting_with(prefix)
    if not matches:
        raise RunLookupError(f"no run {text!r} in {store.location} (`probe runs` lists them)")
    if len(matches) > 1:
        raise RunLookupError(f"{text!r} is the start of several run ids: give more of it")
    run = store.get_run(matches[0])
    if run is None:  # removed between the two reads
        raise RunLookupError(f"no run {text!r} in {store.location}")
    return run


def run_detail(store: Store, run: Run, targets: Sequence[str] = ()) -> RunDetail:
    """One run's verdicts (only those whose target matches one of `targets`, when given: the
    exact name, else a part of it) with their evidence measurements."""
    verdicts = _matching(list(store.verdicts(run_id=run.id)), targets)
    measurements = list(store.measurements(run_id=run.id))
    by_id = {m.id: m for m in measurements}
    judged = tuple(Judged(v, tuple(by_id[i] for i in v.evidence if i in by_id)) for v in verdicts)
    platforms = {v.platform for v in verdicts}
    summaries = tuple(
        s for s in store.platform_summaries(run.id) if not targets or s.platform in platforms
    )
    return RunDetail(run, summaries, judged, len(measurements))


def _matching(verdicts: list[Verdict], targets: Sequence[str]) -> list[Verdict]:
    """The verdicts of `targets`: each one's exact name, else every target that contains it."""
    if not targets:
        return verdicts
    chosen: dict[tuple[str, str], Verdict] = {}
    for wanted in targets:
        exact = [v for v in verdicts if v.target == wanted]
        for v in exact or [v for v in verdicts if wanted in v.target]:
            chosen.setdefault((v.platform, v.target), v)
    return [v for v in verdicts if (v.platform, v.target) in chosen]


def _overview(run: Run, counts: dict[Status, int], uploaded: bool) -> RunOverview:
    return RunOverview(
        run,
        uploaded=uploaded,
        blocked=counts.get(Status.BLOCKED, 0),
        ok=counts.get(Status.OK, 0),
        down=counts.get(Status.DOWN, 0),
        inconclusive=counts.get(Status.INCONCLUSIVE, 0),
    )
