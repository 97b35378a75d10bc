"""Change detection: hourly series of verdicts -> events (onset, end, technique, scope).

The core is the field's detector (OONI's event detector,
https://github.com/ooni/backend/blob/master/detector/detector/detector.py): a two-sided CUSUM on
each (network, platform, target) series' hourly blocking score, with mu0 = 0.0 (the blocked
share when nothing is blocked), mu1 = 0.7 (when blocked) and threshold h = edd * (mu1 - mu0) / 2
(edd 10 -> 3.5). States are unknown, ok and blocked; the accumulators are halved per 48 hours of
silence so evidence from before a long gap counts for less, but a gap alone never changes the state.
The end of blocking takes as many clean runs as its onset takes blocked ones (`_ok_weight`).

On top of the per-target states:
- intermittent: blocking that comes and goes is one event with its blocked rate (rule below);
- partial: a platform's targets blocked together while its other targets on that network stay ok;
- technique_change: the dominant technique of ongoing blocking switches;
- scope: per-target findings with the same onset and end are grouped per network, then networks
  that agree are grouped, listing targets, networks and the hosts (distinct probe ids) that agree.

Each probe's series is judged on its own (analysis.timeline.Timeline.probe_series): pooled, a
clean second probe on the same network would halve the first's blocked share and hide its
blocking. A network is its ASN, or while a probe's ASN is unknown that probe alone, so probes of
unknown networks are never one "unknown network". An event's `runs` counts runs (one probe's
run judges every target once), not verdicts.

Pure analysis: no network I/O, no storage. `detect_events(verdicts, params)` is the entry point.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from statistics import median

from analysis.model import TECHNIQUE_CHANGE_SEPARATOR, Event, EventKind
from analysis.timeline import Series, Timeline, build_timeline, hour_start
from probe.config import DetectorParams
from probe.records import Verdict, VerdictRow

_UNKNOWN, _OK, _BLOCKED = 0, 1, 2


@dataclass(frozen=True, slots=True)
class _Span:
    """One series' finding: buckets [start, stop) of `series`."""

    kind: EventKind
    series: Series
    start: int
    stop: int
    ongoing: bool
    technique: str | None
    previous_technique: str | None = None  # technique_change only
    from_first_observation: bool = False

    @property
    def onset(self) -> int:
        return self.series.first_hour + self.start

    @property
    def end(self) -> int | None:
        if self.kind is EventKind.TECHNIQUE_CHANGE:
            return self.onset
        return None if self.ongoing else self.series.first_hour + self.stop


@dataclass(slots=True)
class _Finding:
    """An event under construction (hours since the epoch; probe ids as a set for merging)."""

    kind: EventKind
    platform: str
    technique: str | None
    previous_technique: str | None
    onsets: list[int]  # one per member span: the event's onset and end are their medians,
    ends: list[int | None]  # so one target's noisy edge does not move the whole event
    targets: tuple[str, ...]
    networks: list[int | None]
    hosts: set[str]
    runs: int  # distinct runs (probe x run) the finding rests on
    blocked: int  # blocked verdicts, of `verdicts` ok + blocked ones (the rate)
    verdicts: int
    ok_targets: set[str] = field(default_factory=set)
    from_first_observation: bool = False
    unknown_probe: str | None = None  # the probe whose unknown network this is (asn None)

    @property
    def onset(self) -> int:
        return _median(self.onsets)

    @property
    def end(self) -> int | None:
        ends = [end for end in self.ends if end is not None]
        return _median(ends) if len(ends) == len(self.ends) else None


def _median(hours: list[int]) -> int:
    """The median hour (the middle two averaged, rounded down)."""
    return math.floor(median(hours))


def _medians(spans: list[_Span]) -> tuple[int, int | None]:
    """Median onset and end of spans (end None if any is ongoing)."""
    ends = [span.end for span in spans]
    end = None if None in ends else _median([e for e in ends if e is not None])
    return _median([span.onset for span in spans]), end


def detect_events(
    verdicts: Iterable[Verdict | VerdictRow], params: DetectorParams | None = None
) -> list[Event]:
    """Stream `verdicts` (records or rows) into a timeline and detect its events (sorted by
    onset)."""
    return detect_events_in(build_timeline(verdicts), params or DetectorParams())


def detect_events_in(timeline: Timeline, params: DetectorParams) -> list[Event]:
    """The events of an already built timeline, sorted by onset, then kind, platform, network."""
    findings: list[_Finding] = []
    for asn, platform, members in timeline.probe_groups():
        spans = [span for series in members for span in _series_spans(series, params)]
        findings.extend(_network_findings(asn, platform, members, spans, params))
    events = [_event(finding) for finding in _merge_networks(findings, params)]
    events.sort(key=lambda e: (e.onset, e.kind, e.platform, [a or 0 for a in e.networks]))
    return events


# --- one series ------------------------------------------------------------------------------


def _series_spans(series: Series, params: DetectorParams) -> list[_Span]:
    """Blocking, intermittent and technique-change findings of one target's series."""
    ok, blocked = series.ok, series.blocked
    positions = [i for i in range(len(series)) if ok[i] or blocked[i]]
    if not positions:
        return []
    blocked_counts = [blocked[i] for i in positions]
    evidence_counts = [ok[i] + blocked[i] for i in positions]
    scores = [b / e for b, e in zip(blocked_counts, evidence_counts, strict=True)]
    reference = params.reference
    votes = [score > reference for score in scores]
    smoothed = _smoothed(votes)
    states = _cusum_states(positions, scores, params)
    intervals = _intermittent_intervals(
        positions, smoothed, blocked_counts, evidence_counts, params
    )
    count = len(positions)

    def bucket(position: int) -> int:
        return positions[position] if position < count else len(series)

    spans: list[_Span] = []
    in_interval = [False] * count
    for first, stop, ongoing in intervals:
        for position in range(first, stop):
            in_interval[position] = True
        wanted = [positions[p] for p in range(first, stop) if votes[p]]
        technique, _ = _techniques(series, wanted, params.technique_min_runs)
        spans.append(
            _Span(
                EventKind.INTERMITTENT,
                series,
                positions[first],
                bucket(stop),
                ongoing,
                technique,
                from_first_observation=first == 0,
            )
        )

    position = 0
    while position < count:
        if states[position] != _BLOCKED or in_interval[position]:
            position += 1
            continue
        first = position
        while position < count and states[position] == _BLOCKED and not in_interval[position]:
            position += 1
        stop = position
        # A stretch cut by an intermittent interval has the interval's ok runs at its edge:
        # trim them, and keep the rest only if it alone carries the CUSUM's weight of evidence.
        cut_before = first > 0 and states[first - 1] == _BLOCKED
        cut_after = stop < count and states[stop] == _BLOCKED
        if cut_before or cut_after:
            while first < stop and cut_before and not votes[first]:
                first += 1
            while stop > first and cut_after and not votes[stop - 1]:
                stop -= 1
            weight = sum(scores[p] - reference for p in range(first, stop))
            if weight <= params.threshold:
                continue
        wanted = [positions[p] for p in range(first, stop) if votes[p]]
        technique, changes = _techniques(series, wanted, params.technique_min_runs)
        span = _Span(
            EventKind.BLOCKING,
            series,
            positions[first],
            bucket(stop),
            stop == count,
            technique,
            from_first_observation=first == 0,
        )
        spans.append(span)
        for at, previous, new in changes:
            spans.append(
                _Span(
                    EventKind.TECHNIQUE_CHANGE, series, at, span.stop, span.ongoing, new, previous
                )
            )
    return spans


def _cusum_states(positions: list[int], scores: list[float], params: DetectorParams) -> list[int]:
    """The CUSUM state (_UNKNOWN/_OK/_BLOCKED) at each non-empty bucket.

    A state change is dated back from the run where the accumulator crossed h to where the new
    behaviour began (`_change_point`), so onset and end land on the first run of the new
    behaviour instead of about h/(score - k) runs later.
    """
    reference, threshold = params.reference, params.threshold
    halving = params.silence_halving_hours
    changes: list[tuple[int, int]] = []
    state = _UNKNOWN
    up = down = 0.0
    up_start = down_start = 0
    previous = positions[0]
    for position, (hour, score) in enumerate(zip(positions, scores, strict=True)):
        silence = hour - previous - 1
        previous = hour
        if silence >= halving:
            factor = 0.5 ** (silence // halving)
            up *= factor
            down *= factor
        if up <= 0.0:
            up_start = position
        up = max(0.0, up + score - reference)
        if down <= 0.0:
            down_start = position
        down = max(0.0, down + _ok_weight(score, reference))
        if state != _BLOCKED and up > threshold:
            since = changes[-1][0] if changes else 0
            changes.append(
                (_change_point(scores, since, up_start, position, True, params), _BLOCKED)
            )
            state, up, down = _BLOCKED, 0.0, 0.0
        elif state != _OK and down > threshold:
            since = changes[-1][0] if changes else 0
            changes.append((_change_point(scores, since, down_start, position, False, params), _OK))
            state, up, down = _OK, 0.0, 0.0
        # Evidence for the state already held is not banked.
        if state == _BLOCKED:
            up = 0.0
        elif state == _OK:
            down = 0.0
    states = [_UNKNOWN] * len(positions)
    for index, (start, new_state) in enumerate(changes):
        stop = changes[index + 1][0] if index + 1 < len(changes) else len(positions)
        states[start:stop] = [new_state] * (stop - start)
    return states


def _ok_weight(score: float, reference: float) -> float:
    """A bucket's evidence that blocking has stopped (the downward accumulator's step).

    The upward step is score - k: with scores in [0, 1] and k = 0.35 a fully blocked run weighs
    +0.65 and a clean run -0.35, so an onset takes ceil(h / 0.65) = 6 blocked runs. Page's
    two-sided CUSUM (Page 1954, "Continuous inspection schemes", Biometrika 41) would step down by
    k - score, which gives a clean run only 0.35: ten clean runs to end blocking that six blocked
    runs began, so after six hourly ok runs the event still read "ongoing" whatever the technique.
    This step mirrors the upward one about k: a clean run weighs +0.65 for an end and a fully
    blocked run -0.35, so an end takes as many clean runs as an onset takes blocked ones. The
    sign is unchanged (a score above k is evidence of blocking in either direction), so a share
    that hovers between the two levels never flaps between the states.
    """
    if score < reference:
        return (reference - score) * (1.0 - reference) / reference
    return (reference - score) * reference / (1.0 - reference)


def _change_point(
    scores: list[float],
    since: int,
    excursion_start: int,
    crossing: int,
    to_blocked: bool,
    params: DetectorParams,
) -> int:
    """Where the change that the accumulator detected at `crossing` began.

    Page's estimate is the excursion's start (the last time the accumulator was zero). It is
    exact on clean data but fragile with a single probe: a noisy run just before the change
    starts the excursion early, and one just after restarts it late (a blocked run weighs
    -0.65 against an ok run's +0.35). So this takes the maximum-likelihood location of a shift in
    level between the one before the excursion and the one during it: the run tau after the
    previous change maximising sum(x - m) over [tau, crossing], m halfway between the two
    levels (signs flipped for a change to ok). On clean data it equals Page's estimate; tied
    maxima (one noisy run next to the change) resolve to the middle, within one run of either.
    """
    # Medians, not means: noisy runs at the excursion's start would drag a mean towards the
    # old level and so favour an early change point.
    after = median(scores[excursion_start : crossing + 1])
    if excursion_start > since:
        before = median(scores[since:excursion_start])
    else:
        before = params.mu0 if to_blocked else params.mu1
    middle = (before + after) / 2
    sign = 1.0 if to_blocked else -1.0
    # Sums closer than a tenth of one run's weight are ties.
    tie = abs(after - before) / 10
    total = 0.0
    best = -1.0
    first_best = last_best = crossing
    for tau in range(crossing, since - 1, -1):
        total += sign * (scores[tau] - middle)
        if total > best + tie:
            best, first_best, last_best = total, tau, tau
        elif total >= best - tie:
            first_best = tau
            best = max(best, total)
    return (first_best + last_best) // 2


def _smoothed(votes: list[bool]) -> list[bool]:
    """Votes under a 3-run majority: a single run unlike both neighbours takes their vote."""
    smoothed = list(votes)
    for p in range(1, len(votes) - 1):
        smoothed[p] = votes[p - 1] + votes[p] + votes[p + 1] >= 2
    return smoothed


def _intermittent_intervals(
    positions: list[int],
    smoothed: list[bool],
    blocked_counts: list[int],
    evidence_counts: list[int],
    params: DetectorParams,
) -> list[tuple[int, int, bool]]:
    """Stretches (first, stop, ongoing) of non-empty buckets where blocking comes and goes.

    The rule: a window of `intermittent_window_runs` runs (72 = three days of hourly runs, so a
    daily pattern shows at least three times) holding at least `intermittent_min_episodes`
    separate blocked episodes, with a blocked rate between `intermittent_min_rate` and
    `intermittent_max_rate`. Why these three conditions:
    - episodes are counted on votes smoothed by a 3-run majority, so a single noisy run neither
      makes an episode nor splits one (noise is single runs; an evening block lasts hours), and
      a let-up shorter than `intermittent_min_quiet_runs` runs does not split one either (with a
      single probe, two noisy ok runs in a row happen about once a month at 2% noise);
    - the rate floor keeps scattered noise out (2% flips give ~0.02; 0.1 rather than 0.2
      because five blocked evening hours are only 0.21 of a day), the ceiling leaves
      near-constant blocking with a few dips to the CUSUM as plain blocking;
    - a window, not the whole series, so a pattern that starts or stops is bounded in time.
    The CUSUM alone cannot do this: 5 blocked hours a day never reach h (5 x 0.65 < 3.5), and
    6 or more produce one short event per day.

    The interval runs from the first to the last episode lying wholly inside the qualifying
    windows; an episode sticking out of them is sustained blocking, left to the CUSUM. It is
    ongoing when the data ends blocked, or ends quiet for no longer than the longest quiet spell
    between its episodes (the pattern may simply be between two episodes).
    """
    count = len(smoothed)
    episodes: list[tuple[int, int]] = []
    p = 0
    while p < count:
        if not smoothed[p]:
            p += 1
            continue
        first = p
        while p < count and smoothed[p]:
            p += 1
        if episodes and first - episodes[-1][1] < params.intermittent_min_quiet_runs:
            episodes[-1] = (episodes[-1][0], p)  # too short a let-up to split blocking
        else:
            episodes.append((first, p))
    if len(episodes) < params.intermittent_min_episodes:
        return []

    blocked_prefix = [0]
    evidence_prefix = [0]
    for blocked, evidence in zip(blocked_counts, evidence_counts, strict=True):
        blocked_prefix.append(blocked_prefix[-1] + blocked)
        evidence_prefix.append(evidence_prefix[-1] + evidence)
    window = min(params.intermittent_window_runs, count)
    zones: list[list[int]] = []
    leaving = entering = 0  # episodes wholly before the window / starting before its end
    for start in range(count - window + 1):
        stop = start + window
        while leaving < len(episodes) and episodes[leaving][1] <= start:
            leaving += 1
        while entering < len(episodes) and episodes[entering][0] < stop:
            entering += 1
        if entering - leaving < params.intermittent_min_episodes:
            continue
        rate = (blocked_prefix[stop] - blocked_prefix[start]) / (
            evidence_prefix[stop] - evidence_prefix[start]
        )
        if not params.intermittent_min_rate <= rate <= params.intermittent_max_rate:
            continue
        if zones and start <= zones[-1][1]:
            zones[-1][1] = stop
        else:
            zones.append([start, stop])

    intervals: list[tuple[int, int, bool]] = []
    for zone_start, zone_stop in zones:
        inside = [e for e in episodes if e[0] >= zone_start and e[1] <= zone_stop]
        inside = _without_stray_edges(inside, positions, params.intermittent_min_episodes)
        if len(inside) < params.intermittent_min_episodes:
            continue
        first, last = inside[0][0], inside[-1][1]
        longest_quiet = max(
            positions[later[0]] - positions[earlier[1]] for earlier, later in pairwise(inside)
        )
        ongoing = last == count or (
            not any(smoothed[last:]) and positions[-1] + 1 - positions[last] <= longest_quiet
        )
        intervals.append((first, count if ongoing else last, ongoing))
    return intervals


def _without_stray_edges(
    episodes: list[tuple[int, int]], positions: list[int], keep: int
) -> list[tuple[int, int]]:
    """Drop first/last episodes that do not fit the pattern: shorter than half the typical
    episode, or cut off from the rest by more than twice the typical quiet spell. With a single
    probe, two noisy runs in a row make a short episode; at the edge of a pattern it would move
    the onset or end by hours or days."""

    def hours(episode: tuple[int, int]) -> int:
        return positions[episode[1] - 1] + 1 - positions[episode[0]]

    while len(episodes) >= keep:
        lengths = sorted(hours(e) for e in episodes)
        quiets = [positions[b[0]] - positions[a[1]] for a, b in pairwise(episodes)]
        typical_length = lengths[(len(lengths) - 1) // 2]
        typical_quiet = sorted(quiets)[(len(quiets) - 1) // 2]
        if 2 * hours(episodes[0]) < typical_length or quiets[0] > 2 * typical_quiet:
            episodes = episodes[1:]
        elif 2 * hours(episodes[-1]) < typical_length or quiets[-1] > 2 * typical_quiet:
            episodes = episodes[:-1]
        else:
            break
    return episodes


def _techniques(
    series: Series, buckets: list[int], min_runs: int
) -> tuple[str | None, list[tuple[int, str | None, str | None]]]:
    """The technique at onset and the switches (bucket, previous, new) along blocked buckets.

    A technique takes over once it dominates `min_runs` consecutive blocked buckets; the switch
    is dated to the first of them.
    """
    names = series.techniques
    current: int | None = None
    initial: int | None = None
    candidate: int | None = None
    candidate_start = candidate_runs = 0
    seen: Counter[int] = Counter()
    changes: list[tuple[int, str | None, str | None]] = []
    for index in buckets:
        technique = series.technique_id(index)
        if technique < 0 or names[technique] is None:
            continue
        seen[technique] += 1
        if technique == current:
            candidate = None
            continue
        if technique == candidate:
            candidate_runs += 1
        else:
            candidate, candidate_start, candidate_runs = technique, index, 1
        if candidate_runs >= min_runs:
            if current is None:
                initial = technique
            else:
                changes.append((candidate_start, names[current], names[technique]))
            current, candidate = technique, None
    if initial is None and seen:
        # Never dominant long enough: the most common one.
        initial = min(seen, key=lambda t: (-seen[t], names[t] or ""))
    return (None if initial is None else names[initial]), changes


# --- one network ------------------------------------------------------------------------------


def _compatible(
    a_onset: int, a_end: int | None, b_onset: int, b_end: int | None, window: int
) -> bool:
    if abs(a_onset - b_onset) > window:
        return False
    if a_end is None or b_end is None:
        return a_end is None and b_end is None
    return abs(a_end - b_end) <= window


def _network_findings(
    asn: int | None,
    platform: str,
    members: list[Series],
    spans: list[_Span],
    params: DetectorParams,
) -> list[_Finding]:
    """Group one network's per-target spans into findings with the same onset and end."""
    groups: dict[tuple[EventKind, str | None, str | None], list[_Span]] = {}
    for span in spans:
        groups.setdefault((span.kind, span.technique, span.previous_technique), []).append(span)
    now = max(series.first_hour + len(series) for series in members) if members else 0
    findings: list[_Finding] = []
    for group in groups.values():
        clusters = _absorb_stragglers(_clusters(group, params.merge_window_hours), now)
        for cluster in clusters:
            findings.append(_finding(asn, platform, members, cluster, params))
    return findings


# How much of their time two clusters must share for the smaller to be a straggler of the larger.
STRAGGLER_OVERLAP = 0.8


def _absorb_stragglers(clusters: list[list[_Span]], now: int) -> list[list[_Span]]:
    """Fold each cluster into a larger one it shares most of its time with (intersection over
    union of their median intervals at least STRAGGLER_OVERLAP), when no series is in both.

    Each probe's series is judged alone, so one target of one probe can date an edge a few runs
    off (a noisy run next to the change): outside the merge window, it would be an event of its
    own, though it lies within the same week of blocking as the rest. A short block a few runs
    apart from another does not overlap it enough and stays separate.
    """
    kept: list[list[_Span]] = []
    for cluster in sorted(clusters, key=len, reverse=True):
        onset, end = _medians(cluster)
        for home in kept:
            home_onset, home_end = _medians(home)
            if (end is None) != (home_end is None):
                continue
            if _overlap(onset, end, home_onset, home_end, now) < STRAGGLER_OVERLAP:
                continue
            if any(span.series is member.series for span in cluster for member in home):
                continue
            home.extend(cluster)
            break
        else:
            kept.append(cluster)
    return kept


def _overlap(a_onset: int, a_end: int | None, b_onset: int, b_end: int | None, now: int) -> float:
    """Intersection over union of [a_onset, a_end) and [b_onset, b_end) (ongoing: up to now)."""
    a_stop = now if a_end is None else a_end
    b_stop = now if b_end is None else b_end
    union = max(a_stop, b_stop) - min(a_onset, b_onset)
    if union <= 0:
        return 1.0
    return max(0, min(a_stop, b_stop) - max(a_onset, b_onset)) / union


def _clusters(spans: list[_Span], window: int) -> list[list[_Span]]:
    """Spans grouped around the densest onsets: repeatedly take the span with the most others
    compatible with it (onset and end within `window`) and gather those, one per series.

    Densest first, not earliest first: with a single probe one target's onset can be off by a
    few runs, and growing groups from the earliest span would split the rest off it.
    """
    ordered = sorted(spans, key=lambda s: (s.onset, s.series.target or ""))
    onsets = [span.onset for span in ordered]
    taken = [False] * len(ordered)

    def neighbours(index: int) -> list[int]:
        anchor = ordered[index]
        low = bisect_left(onsets, anchor.onset - window)
        high = bisect_right(onsets, anchor.onset + window)
        return [
            other
            for other in range(low, high)
            if not taken[other]
            and _compatible(
                anchor.onset, anchor.end, ordered[other].onset, ordered[other].end, window
            )
        ]

    clusters: list[list[_Span]] = []
    while not all(taken):
        candidates = [i for i in range(len(ordered)) if not taken[i]]
        anchor = max(candidates, key=lambda i: (len(neighbours(i)), -i))
        cluster: list[_Span] = []
        nearest_first = sorted(
            neighbours(anchor), key=lambda i: abs(ordered[i].onset - ordered[anchor].onset)
        )
        for index in nearest_first:
            if all(member.series is not ordered[index].series for member in cluster):
                cluster.append(ordered[index])
                taken[index] = True
        clusters.append(cluster)
    return clusters


def _finding(
    asn: int | None,
    platform: str,
    members: list[Series],
    cluster: list[_Span],
    params: DetectorParams,
) -> _Finding:
    """One finding from a cluster of per-probe spans: its targets, the hosts that agree, and the
    runs it rests on (a run judges every target once, so a probe's runs in an hour are the most
    verdicts any one of its targets got in that hour)."""
    first = cluster[0]
    verdicts = blocked = 0
    probe_blocked: Counter[str] = Counter()
    probe_verdicts: Counter[str] = Counter()
    runs_at: dict[tuple[str, int], int] = {}
    for span in cluster:
        series = span.series
        probe = series.probes[0]
        for index in range(span.start, span.stop):
            evidence = series.ok[index] + series.blocked[index]
            if not evidence:
                continue
            verdicts += evidence
            blocked += series.blocked[index]
            probe_blocked[probe] += series.blocked[index]
            probe_verdicts[probe] += evidence
            at = (probe, series.first_hour + index)
            runs_at[at] = max(runs_at.get(at, 0), evidence)
    rate = blocked / verdicts if verdicts else 0.0
    # A host agrees when its own blocked share reaches half the event's: hosts that only show
    # the odd noisy run (a few percent) do not count.
    hosts = {
        probe
        for probe, count in probe_blocked.items()
        if count and count / probe_verdicts[probe] >= rate / 2
    }
    kind = first.kind
    onset, end = _medians(cluster)
    targets = tuple(sorted({span.series.target or "" for span in cluster}))
    ok_targets: set[str] = set()
    if kind is EventKind.BLOCKING:
        # Partial only by the agreeing probes' own other targets: another probe that sees no
        # blocking at all is not evidence that this probe's blocking spared some targets.
        blocked_targets = set(targets)
        for series in members:
            target = series.target or ""
            if series.probes[0] not in hosts or target in blocked_targets:
                continue
            share = _blocked_share(series, onset, end)
            if share is not None and share < params.reference:
                ok_targets.add(target)
        if ok_targets:
            kind = EventKind.PARTIAL
    return _Finding(
        kind=kind,
        platform=platform,
        technique=first.technique,
        previous_technique=first.previous_technique,
        onsets=[span.onset for span in cluster],
        ends=[span.end for span in cluster],
        targets=targets,
        networks=[asn],
        hosts=hosts,
        runs=sum(runs_at.values()),
        blocked=blocked,
        verdicts=verdicts,
        ok_targets=ok_targets,
        from_first_observation=any(span.from_first_observation for span in cluster),
        unknown_probe=first.series.probes[0] if asn is None else None,
    )


def _blocked_share(series: Series, onset: int, end: int | None) -> float | None:
    """Blocked share of a series' evidence over hours [onset, end); None without evidence."""
    start = max(0, onset - series.first_hour)
    stop = len(series) if end is None else min(len(series), end - series.first_hour)
    evidence = blocked = 0
    for index in range(start, stop):
        blocked += series.blocked[index]
        evidence += series.ok[index] + series.blocked[index]
    return blocked / evidence if evidence else None


# --- across networks --------------------------------------------------------------------------


def _merge_networks(findings: list[_Finding], params: DetectorParams) -> list[_Finding]:
    """One finding per set of networks that agree: same platform, kind, technique, targets,
    onset and end within the merge window."""
    window = params.merge_window_hours
    merged: list[_Finding] = []
    for finding in sorted(findings, key=lambda f: (f.onset, str(f.networks))):
        for other in merged:
            if (
                other.kind is finding.kind
                and other.platform == finding.platform
                and other.technique == finding.technique
                and other.previous_technique == finding.previous_technique
                and other.targets == finding.targets
                and not set(other.networks) & set(finding.networks)
                and _compatible(other.onset, other.end, finding.onset, finding.end, window)
            ):
                other.networks.extend(finding.networks)
                other.hosts |= finding.hosts
                other.runs += finding.runs
                other.blocked += finding.blocked
                other.verdicts += finding.verdicts
                other.ok_targets |= finding.ok_targets
                other.onsets.extend(finding.onsets)
                other.ends.extend(finding.ends)
                other.from_first_observation |= finding.from_first_observation
                break
        else:
            merged.append(finding)
    return merged


def _event(finding: _Finding) -> Event:
    networks = tuple(sorted(finding.networks, key=lambda a: (a is None, a or 0)))
    technique = finding.technique
    if finding.kind is EventKind.TECHNIQUE_CHANGE:
        technique = f"{finding.previous_technique}{TECHNIQUE_CHANGE_SEPARATOR}{finding.technique}"
    rate = finding.blocked / finding.verdicts if finding.verdicts else 0.0
    onset = hour_start(finding.onset)
    end: datetime | None = None if finding.end is None else hour_start(finding.end)
    return Event(
        kind=finding.kind,
        platform=finding.platform,
        asn=networks[0] if len(networks) == 1 else None,
        technique=technique,
        onset=onset,
        end=end,
        targets=finding.targets,
        hosts=len(finding.hosts),
        networks=networks,
        rate=round(rate, 4) if finding.kind is EventKind.INTERMITTENT else None,
        runs=finding.runs,
        detail=_describe(finding, networks, rate),
    )


def _describe(finding: _Finding, networks: tuple[int | None, ...], rate: float) -> str:
    how = finding.technique or "an unnamed technique"
    where = ", ".join(
        f"an unknown network (probe {finding.unknown_probe})" if a is None else f"AS{a}"
        for a in networks
    )
    count = len(finding.targets)
    kind = finding.kind
    if kind is EventKind.TECHNIQUE_CHANGE:
        text = (
            f"{finding.platform} blocking switched from {finding.previous_technique} to "
            f"{finding.technique} on {count} target(s)"
        )
    elif kind is EventKind.INTERMITTENT:
        text = (
            f"{finding.platform} blocked on and off ({rate:.0%} of runs) by {how} on "
            f"{count} target(s)"
        )
    elif kind is EventKind.PARTIAL:
        ok = sorted(finding.ok_targets)
        text = (
            f"{finding.platform} partly blocked by {how}: {count} of {count + len(ok)} targets "
            f"({', '.join(finding.targets)}); still ok: {', '.join(ok)}"
        )
    else:
        text = f"{finding.platform} blocked by {how} on all {count} target(s) observed"
    text += f"; {where}; {len(finding.hosts)} host(s) agree over {finding.runs} runs"
    if finding.from_first_observation and kind is not EventKind.TECHNIQUE_CHANGE:
        text += "; already so at the first observation (the onset is the start of the data)"
    if finding.end is None and kind is not EventKind.TECHNIQUE_CHANGE:
        text += "; ongoing"
    return text
