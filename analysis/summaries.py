"""Platform summaries: one run's verdicts folded per platform the way the field reports them.

`summarise` is the one place a platform's (or a catalog group's) state is decided; the terminal
(`probe run`, `probe show`, `probe report`), `probe run --json` and the HTML report print what it
stored. The rule, in order (first match wins):

1. blocked: a core group (the endpoints the platform's app talks to) is blocked, or some unit is
   blocked and every unit that is not inconclusive is blocked or down. Units are the catalog's
   groups of interchangeable endpoints (Telegram's data centres, WhatsApp's chat endpoints),
   each folded by the group rule below, and the ungrouped targets.
2. partial: otherwise, some unit is blocked or partial (partial blocking has hidden real blocking
   before: it is never rounded to blocked or ok).
3. ok: nothing is blocked and the targets judged ok are a strict majority of the targets that
   are not down (a down target fails from the control too, so it says nothing about this
   network either way). A platform whose targets are mostly inconclusive is not ok.
4. down: nothing is blocked, and most targets are down.
5. inconclusive: anything else (e.g. 2 ok of 903, the rest inconclusive).

A group is blocked only when every member fails (blocked or down), at least one of them blocked
(OONI calls Telegram's TCP blocked only when all DCs fail: ooni/spec,
nettests/ts-020-telegram.md); partial when some members are blocked; otherwise ok, down or
inconclusive by rules 3 to 5 over its members. Answers outside a platform's owner ASNs
(Facebook's AS32934) are flagged as suspicious when an IP -> ASN lookup is available. Groups,
core groups and owner ASNs are the catalog's data (probe/catalog), not this module's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from analysis.controls import is_control_resolver
from analysis.model import AsnLookup
from probe.catalog import Platform, builtin_platforms, target_groups
from probe.model import DnsQuery, Measurement, Target
from probe.records import GroupSummary, PlatformStatus, PlatformSummary, Status, Verdict


def _techniques(verdicts: Iterable[Verdict]) -> tuple[str, ...]:
    """Techniques of the blocked verdicts, most frequent first."""
    counts = Counter(v.technique for v in verdicts if v.status is Status.BLOCKED and v.technique)
    return tuple(t for t, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _reachability(statuses: Sequence[Status]) -> PlatformStatus:
    """Rules 3 to 5 for targets none of which is blocked: ok only when the ok ones are a strict
    majority of those not down; down when most are down; else inconclusive."""
    ok = sum(s is Status.OK for s in statuses)
    down = sum(s is Status.DOWN for s in statuses)
    if ok and 2 * ok > len(statuses) - down:
        return PlatformStatus.OK
    if 2 * down > len(statuses):
        return PlatformStatus.DOWN
    return PlatformStatus.INCONCLUSIVE


def group_status(statuses: Sequence[Status]) -> PlatformStatus:
    """A group is blocked only when every member fails (blocked or down) and one is blocked;
    partial when some members are blocked; inconclusive members are never assumed to fail, nor
    to be ok (`_reachability`)."""
    blocked = sum(s is Status.BLOCKED for s in statuses)
    failing = sum(s in (Status.BLOCKED, Status.DOWN) for s in statuses)
    if blocked and failing == len(statuses):
        return PlatformStatus.BLOCKED
    if blocked:
        return PlatformStatus.PARTIAL
    return _reachability(statuses)


def platform_status(
    statuses: Sequence[Status], units: Sequence[PlatformStatus], core_blocked: bool
) -> PlatformStatus:
    """The module docstring's rule: `statuses` are the platform's target verdicts, `units` the
    states of its groups and ungrouped targets, `core_blocked` whether a core group is blocked."""
    if core_blocked:
        return PlatformStatus.BLOCKED
    known = [u for u in units if u is not PlatformStatus.INCONCLUSIVE]
    blocked = [u for u in known if u is PlatformStatus.BLOCKED]
    if blocked and all(u in (PlatformStatus.BLOCKED, PlatformStatus.DOWN) for u in known):
        return PlatformStatus.BLOCKED
    if blocked or PlatformStatus.PARTIAL in known:
        return PlatformStatus.PARTIAL
    return _reachability(statuses)


def _suspicious_answers(
    platform: str,
    measurements: Iterable[Measurement],
    expected: frozenset[int],
    asn_of: AsnLookup | None,
) -> tuple[str, ...]:
    if not expected or asn_of is None:
        return ()
    found: dict[str, None] = {}
    for m in measurements:
        details = m.observation.details
        if (
            m.platform != platform
            or not isinstance(details, DnsQuery)
            or is_control_resolver(details)
        ):
            continue
        for address in details.addresses:
            asn = asn_of(address)
            if asn is not None and asn not in expected:
                found[f"{details.query or m.target} -> {address} (AS{asn})"] = None
    return tuple(found)


def _groups_of(
    targets: Sequence[Target] | None, platforms: Mapping[str, Platform]
) -> dict[tuple[str, str], str]:
    if targets is None:
        targets = [t for platform in platforms.values() for t in platform.targets]
    return target_groups(targets)


def summarise(
    verdicts: Sequence[Verdict],
    measurements: Sequence[Measurement],
    *,
    targets: Sequence[Target] | None = None,
    platforms: Sequence[Platform] | None = None,
    asn_of: AsnLookup | None = None,
) -> list[PlatformSummary]:
    """Per-platform summaries of one run's verdicts, sorted by platform.

    targets:   the run's targets, for their groups (default: the catalog's targets).
    platforms: the catalog, for core groups and owner ASNs (default: the built-in catalog).
    asn_of:    an IP -> ASN lookup; with it, answers outside a platform's owner ASNs are flagged.
    """
    runs = {v.run_id for v in verdicts}
    if len(runs) > 1:
        raise ValueError(f"summarise() takes one run's verdicts, got runs {sorted(runs)}")
    catalog = {p.name: p for p in (builtin_platforms() if platforms is None else platforms)}
    groups_of = _groups_of(targets, catalog)
    by_platform: dict[str, list[Verdict]] = {}
    for verdict in verdicts:
        by_platform.setdefault(verdict.platform, []).append(verdict)
    summaries = []
    for platform, platform_verdicts in sorted(by_platform.items()):
        grouped: dict[str, list[Verdict]] = {}
        units: list[PlatformStatus] = []
        for v in platform_verdicts:
            group = groups_of.get((platform, v.target))
            if group is None:
                units.append(group_status([v.status]))
            else:
                grouped.setdefault(group, []).append(v)
        groups = tuple(
            GroupSummary(
                name=name,
                status=group_status([v.status for v in members]),
                blocked=sum(v.status is Status.BLOCKED for v in members),
                total=len(members),
                techniques=_techniques(members),
            )
            for name, members in sorted(grouped.items())
        )
        units += [g.status for g in groups]
        semantics = catalog.get(platform)
        core = semantics.core_groups if semantics else frozenset()
        core_blocked = any(g.name in core and g.status is PlatformStatus.BLOCKED for g in groups)
        blocked = sum(v.status is Status.BLOCKED for v in platform_verdicts)
        counts = Counter(v.status for v in platform_verdicts)
        parts = [f"{blocked} of {len(platform_verdicts)} targets blocked"]
        parts += [f"{counts[s]} {s}" for s in (Status.DOWN, Status.INCONCLUSIVE) if counts[s]]
        parts += [f"{g.name}: {g.blocked} of {g.total} blocked ({g.status})" for g in groups]
        summaries.append(
            PlatformSummary(
                platform=platform,
                status=platform_status([v.status for v in platform_verdicts], units, core_blocked),
                techniques=_techniques(platform_verdicts),
                blocked=blocked,
                total=len(platform_verdicts),
                groups=groups,
                suspicious=_suspicious_answers(
                    platform,
                    measurements,
                    semantics.owner_asns if semantics else frozenset(),
                    asn_of,
                ),
                detail="; ".join(parts),
            )
        )
    return summaries
