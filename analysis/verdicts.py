"""Measurements of one run -> one Verdict per target, each citing the rule that decided it and the
measurements it rests on.

analysis.facts turns a target's typed measurement records (and the controls) into Facts;
analysis.rules decides. This module performs no network I/O and reads no database: the caller
passes the run's measurements and, when a test helper answered, its ControlEvidence.

The runner's extra A/B measurements carry a probe.model.DifferentialKind: SNI, a TLS handshake
to the same address:port with a harmless SNI; HOST, an HTTP request to the same address:port
with a harmless Host header; PROTOCOL, a TCP flow whose first data is random bytes (the protocol
allowlist); RAW, a packet capture (evidence for a reader, never an attempt). The A/B halves are
paired across the whole run by (address, port), so a harmless half recorded under another target
counts as well, and a target-name half sent to an unrelated server's address (same kinds, the
target's own name) works the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime

from analysis.controls import ControlEvidence
from analysis.facts.run import index_run
from analysis.facts.target import facts_of
from analysis.model import AsnLookup
from analysis.rules import (
    RULES_VERSION,
    Evidence,
    Facts,
    Rule,
    evaluate,
    failed_like_censorship,
)
from probe.catalog import builtin_targets, target_groups
from probe.model import Measurement, Run, Target
from probe.records import Verdict

# The catalog's control sites (probe/catalog/controls.toml): never given a verdict of their own.
CONTROL_PLATFORMS: frozenset[str] = frozenset({"control"})


def facts_for_target(
    run: Run,
    measurements: Sequence[Measurement],
    platform: str,
    target: str,
    *,
    controls: ControlEvidence | None = None,
    asn_of: AsnLookup | None = None,
    control_platforms: Collection[str] = CONTROL_PLATFORMS,
) -> Facts:
    """The Facts of one target, from all of the run's `measurements` (the run-wide ones, IPv6
    health, control sites' speed, A/B handshakes, are read from them too)."""
    index = index_run(run, measurements, controls, asn_of, control_platforms)
    own = [m for m in measurements if m.platform == platform and m.target == target]
    return facts_of(index, platform, target, own)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"Run.started_at must be timezone-aware, got {moment!r}")
    return moment.astimezone(UTC)


def verdict_from(run: Run, facts: Facts, rule: Rule) -> Verdict:
    """The Verdict a rule gives for a target's facts."""
    evidence = facts.ids(rule.evidence) or facts.ids((Evidence.ALL,))
    return Verdict(
        run_id=run.id,
        probe_id=run.probe_id,
        measured_at=_utc(run.started_at),
        asn=run.network.asn,
        country=run.network.country,
        platform=facts.platform,
        target=facts.target,
        status=rule.outcome.status,
        technique=rule.outcome.technique,
        confidence=rule.outcome.confidence,
        rule_id=rule.rule_id,
        rules_version=RULES_VERSION,
        evidence=evidence,
        detail=rule.describe(facts),
    )


def verdicts_for_run(
    run: Run,
    measurements: Sequence[Measurement],
    *,
    controls: ControlEvidence | None = None,
    asn_of: AsnLookup | None = None,
    targets: Sequence[Target] | None = None,
    control_platforms: Collection[str] = CONTROL_PLATFORMS,
) -> list[Verdict]:
    """One verdict per target of the run (control sites excluded), sorted by platform and target.

    controls:  a test helper's evidence (controls_from_helper_targets); the run's own DoH
               answers are added to it. Without either, failures are inconclusive, never blocked.
    asn_of:    an IP -> ASN lookup, when one is available: answers in the control's ASN agree.
    targets:   the run's planned targets; those with no measurement get an inconclusive verdict
               (the runner cancels targets when the network is down). Their catalog groups
               (default: the built-in catalog's) decide whether a failure no control measured
               failed with its group (with_group_failures).
    """
    foreign = {m.run_id for m in measurements} - {run.id}
    if foreign:
        raise ValueError(f"measurements of other runs passed for run {run.id}: {sorted(foreign)}")
    index = index_run(run, measurements, controls, asn_of, control_platforms)
    grouped: dict[tuple[str, str], list[Measurement]] = {}
    for t in targets or ():
        if not t.control and t.platform not in control_platforms:
            grouped.setdefault((t.platform, t.name), [])
    for m in measurements:
        if m.platform not in control_platforms:
            grouped.setdefault((m.platform, m.target), []).append(m)
    facts = {key: facts_of(index, *key, own) for key, own in sorted(grouped.items())}
    groups = target_groups(builtin_targets() if targets is None else targets)
    facts = with_group_failures(facts, groups)
    return [verdict_from(run, f, evaluate(f)) for f in facts.values()]


def with_group_failures(
    facts: Mapping[tuple[str, str], Facts], groups: Mapping[tuple[str, str], str]
) -> dict[tuple[str, str], Facts]:
    """Each target's facts with `group_failed` set from its catalog group's members in the run:
    True when every member (two at least) failed like censorship, False when one did not. A
    target in no group keeps None: alone, a failure no control measured stays inconclusive."""
    members: dict[tuple[str, str], list[Facts]] = {}
    for key, f in facts.items():
        group = groups.get(key)
        if group is not None:
            members.setdefault((key[0], group), []).append(f)
    decided = {
        member: len(together) > 1 and all(failed_like_censorship(m) for m in together)
        for member, together in members.items()
    }
    return {
        key: f
        if (group := groups.get(key)) is None
        else dataclasses.replace(f, group_failed=decided[(key[0], group)])
        for key, f in facts.items()
    }
