"""One run's stored measurements -> verdicts and platform summaries, saved beside them.

Called by the run session (probe/session.py) once a run ends. Analysing a run again (after the
rules change) replaces its verdicts, and each keeps the RULES_VERSION that decided it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from analysis.controls import ControlEvidence
from analysis.model import AsnLookup
from analysis.summaries import summarise
from analysis.verdicts import verdicts_for_run
from probe.catalog import Platform
from probe.model import Measurement, Run, Target
from probe.records import PlatformSummary, Verdict
from probe.store import Store, StoreError


@dataclass(frozen=True, slots=True)
class RunAnalysis:
    """What a run showed: a verdict per target and a summary per platform."""

    run: Run
    verdicts: list[Verdict]
    summaries: list[PlatformSummary]


def analyse(
    run: Run,
    measurements: Sequence[Measurement],
    *,
    controls: ControlEvidence | None = None,
    targets: Sequence[Target] | None = None,
    platforms: Sequence[Platform] | None = None,
    asn_of: AsnLookup | None = None,
) -> RunAnalysis:
    """The verdicts and platform summaries of one run's measurements (no I/O). targets and
    platforms: the run's targets and its catalog (defaults: the built-in catalog)."""
    verdicts = verdicts_for_run(
        run, measurements, controls=controls, asn_of=asn_of, targets=targets
    )
    summaries = summarise(
        verdicts, measurements, targets=targets, platforms=platforms, asn_of=asn_of
    )
    return RunAnalysis(run, verdicts, summaries)


def analyse_run(
    store: Store,
    run_id: str,
    *,
    controls: ControlEvidence | None = None,
    targets: Sequence[Target] | None = None,
    platforms: Sequence[Platform] | None = None,
    asn_of: AsnLookup | None = None,
) -> RunAnalysis:
    """Decide and store the verdicts and platform summaries of one stored run."""
    run = store.get_run(run_id)
    if run is None:
        raise StoreError(f"{store.location} has no run {run_id}")
    measurements = list(store.measurements(run_id=run_id))
    result = analyse(
        run, measurements, controls=controls, targets=targets, platforms=platforms, asn_of=asn_of
    )
    store.save_verdicts(run_id, result.verdicts)
    store.save_platform_summaries(run_id, result.summaries)
    return result
