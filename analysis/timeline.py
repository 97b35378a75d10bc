"""Verdicts over time: hourly series per (network, platform, target), the event detector's input.

Each series holds one bucket per UTC hour. A bucket counts ok, blocked, down and inconclusive
verdicts; its blocking score is blocked / (ok + blocked). Down and inconclusive verdicts are not
evidence either way (OONI Web Connectivity,
https://github.com/ooni/spec/blob/master/nettests/ts-017-web-connectivity.md), so a bucket
holding only those is
empty: it has no score. The technique is an attribute of each bucket (the dominant one among its
blocked verdicts), and so are the probes that reported ok and blocked.

The event detector reads a second set of series, one per probe (`Timeline.probe_series`): a
probe's blocking is decided on its own evidence, so a clean second probe on the same network does
not dilute the first's blocked share, and probes whose network is unknown (no helper, no mmdb) are
never pooled into one "unknown network" (`network_key`: the ASN, or the probe id while the ASN is
unknown). They hold only what the detector reads (ok and blocked counts and the technique).

The builder streams: it reads each verdict once and keeps only counters, so a month of hourly runs
from 50 hosts (a million verdicts) fits in tens of megabytes. Storage is compact on purpose: one
`array` per counter, one int bitmask per bucket for the probes (bit i = the i-th probe seen in
that network), technique names interned to small ints. No numpy or pandas: the package does not
depend on them.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from probe.records import Status, Verdict, VerdictRow, VerdictTimes

HOUR = timedelta(hours=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Technique cell values besides an interned technique index.
_NO_TECHNIQUE = -1  # no blocked verdict in the bucket yet
_MIXED = -2  # several techniques: counts live in Series.mixed[bucket]


def hour_of(moment: datetime) -> int:
    """Hours since the epoch of the UTC hour holding `moment` (the bucket number)."""
    return (moment - _EPOCH) // HOUR


def hour_start(hour: int) -> datetime:
    """The UTC start of bucket number `hour`."""
    return _EPOCH + hour * HOUR


class SeriesKey(NamedTuple):
    """One series: a target of a platform as seen from one network (asn None = unknown ASN)."""

    asn: int | None
    platform: str
    target: str


class ProbeSeriesKey(NamedTuple):
    """One probe's series of a target (asn None = that probe's network is unknown)."""

    asn: int | None
    probe: str
    platform: str
    target: str


NetworkKey = int | str


def network_key(asn: int | None, probe: str) -> NetworkKey:
    """Which verdicts form one network for the detector: the ASN's, or while a probe's ASN is
    unknown, that probe's alone (two unknown networks are not one)."""
    return probe if asn is None else asn


class AggregateKey(NamedTuple):
    """A platform as seen from one network: the sum of its targets' series."""

    asn: int | None
    platform: str


@dataclass(frozen=True, slots=True)
class Point:
    """One hourly bucket of a series, for reports and charts."""

    hour: datetime
    ok: int
    blocked: int
    down: int
    inconclusive: int
    technique: str | None
    ok_hosts: tuple[str, ...]
    blocked_hosts: tuple[str, ...]

    @property
    def score(self) -> float | None:
        """Share of blocked among ok + blocked verdicts; None when the bucket holds no evidence."""
        evidence = self.ok + self.blocked
        return self.blocked / evidence if evidence else None


class Series:
    """Hourly buckets from `first_hour` on, for one target (or, target None, a platform aggregate).

    Bucket i is the UTC hour `first_hour + i`. The arrays are parallel; `ok_hosts[i]` and
    `blocked_hosts[i]` are bitmasks over `probes` (the network's probes in order of appearance).
    """

    __slots__ = (
        "asn",
        "blocked",
        "blocked_hosts",
        "country",
        "down",
        "first_hour",
        "inconclusive",
        "mixed",
        "newest",
        "ok",
        "ok_hosts",
        "platform",
        "probe_bits",
        "probes",
        "target",
        "technique",
        "techniques",
    )

    def __init__(
        self,
        asn: int | None,
        platform: str,
        target: str | None,
        first_hour: int,
        probes: list[str],
        probe_bits: dict[str, int],
        techniques: list[str | None],
    ) -> None:
        self.asn = asn
        self.platform = platform
        self.target = target
        self.country: str | None = None
        self.first_hour = first_hour
        self.ok = array("I")
        self.blocked = array("I")
        self.down = array("I")
        self.inconclusive = array("I")
        self.ok_hosts: list[int] = []
        self.blocked_hosts: list[int] = []
        self.technique = array("h")
        self.mixed: dict[int, dict[int, int]] = {}
        # The newest verdict counted here (ties: the later one); None in aggregates.
        self.newest: VerdictRow | None = None
        # Shared with every series of the same network / the whole timeline.
        self.probes = probes
        self.probe_bits = probe_bits
        self.techniques = techniques

    def __len__(self) -> int:
        return len(self.ok)

    def __repr__(self) -> str:
        return (
            f"Series(asn={self.asn!r}, platform={self.platform!r}, target={self.target!r}, "
            f"from={hour_start(self.first_hour).isoformat()}, hours={len(self)})"
        )

    def cover(self, hour: int) -> int:
        """Grow the arrays so bucket `hour` exists; return its index."""
        size = len(self.ok)
        if size == 0:
            self.first_hour = hour
        index = hour - self.first_hour
        if index >= size:
            self._grow_back(index + 1 - size)
        elif index < 0:
            # Out-of-order input: rare, so an O(n) prepend is fine.
            self._grow_front(-index)
            self.first_hour = hour
            index = 0
        return index

    def _grow_back(self, count: int) -> None:
        zeros = bytes(4 * count)
        for counter in (self.ok, self.blocked, self.down, self.inconclusive):
            counter.frombytes(zeros)
        self.ok_hosts.extend([0] * count)
        self.blocked_hosts.extend([0] * count)
        self.technique.extend(array("h", [_NO_TECHNIQUE]) * count)

    def _grow_front(self, count: int) -> None:
        zeros = array("I", bytes(4 * count))
        self.ok = zeros + self.ok
        self.blocked = zeros + self.blocked
        self.down = zeros + self.down
        self.inconclusive = zeros + self.inconclusive
        self.ok_hosts[:0] = [0] * count
        self.blocked_hosts[:0] = [0] * count
        self.technique = array("h", [_NO_TECHNIQUE]) * count + self.technique
        self.mixed = {index + count: counts for index, counts in self.mixed.items()}

    def hour_at(self, index: int) -> datetime:
        """The UTC start of bucket `index`."""
        return hour_start(self.first_hour + index)

    def score(self, index: int) -> float | None:
        """Blocked share of the bucket's evidence; None when it holds no ok or blocked verdict."""
        blocked = self.blocked[index]
        evidence = self.ok[index] + blocked
        return blocked / evidence if evidence else None

    def technique_counts(self, index: int) -> dict[int, int]:
        """Blocked verdicts per interned technique in bucket `index`."""
        cell = self.technique[index]
        if cell == _NO_TECHNIQUE:
            return {}
        if cell == _MIXED:
            return dict(self.mixed[index])
        return {cell: self.blocked[index]}

    def technique_id(self, index: int) -> int:
        """The bucket's dominant technique as an interned index (-1 when nothing was blocked).

        Ties go to the alphabetically first name so the result does not depend on input order.
        """
        cell = self.technique[index]
        if cell != _MIXED:
            return cell
        counts = self.mixed[index]
        names = self.techniques
        return min(counts, key=lambda t: (-counts[t], names[t] or ""))

    def dominant_technique(self, index: int) -> str | None:
        """The most common technique among the bucket's blocked verdicts."""
        technique = self.technique_id(index)
        return None if technique < 0 else self.techniques[technique]

    def hosts(self, mask: int) -> tuple[str, ...]:
        """The probe ids whose bits are set in `mask`."""
        found: list[str] = []
        probes = self.probes
        while mask:
            low = mask & -mask
            found.append(probes[low.bit_length() - 1])
            mask ^= low
        return tuple(found)

    def points(self, include_empty: bool = False) -> Iterator[Point]:
        """The buckets in time order; empty ones (no ok or blocked verdict) only on request."""
        for index in range(len(self.ok)):
            if not include_empty and not (self.ok[index] or self.blocked[index]):
                continue
            yield Point(
                hour=self.hour_at(index),
                ok=self.ok[index],
                blocked=self.blocked[index],
                down=self.down[index],
                inconclusive=self.inconclusive[index],
                technique=self.dominant_technique(index),
                ok_hosts=self.hosts(self.ok_hosts[index]),
                blocked_hosts=self.hosts(self.blocked_hosts[index]),
            )


class Timeline:
    """All series of a set of verdicts, keyed by (asn, platform, target)."""

    def __init__(self) -> None:
        self._series: dict[tuple[int | None, str, str], Series] = {}
        self._probe_series: dict[tuple[int | None, str, str, str], Series] = {}
        self._techniques: list[str | None] = []
        self._probes: dict[int | None, tuple[list[str], dict[str, int]]] = {}
        self.verdicts = 0
        # The rules versions of the verdicts counted.
        self.rules_versions: set[str] = set()

    @property
    def series(self) -> Mapping[tuple[int | None, str, str], Series]:
        """Every series, keyed by SeriesKey (a plain (asn, platform, target) tuple also works)."""
        return self._series

    @property
    def probe_series(self) -> Mapping[tuple[int | None, str, str, str], Series]:
        """Every probe's own series, keyed by ProbeSeriesKey; `Series.probes` is (that probe,)."""
        return self._probe_series

    def probe_groups(self) -> list[tuple[int | None, str, list[Series]]]:
        """(asn, platform, the per-probe series) of each detector network (`network_key`) and
        platform, sorted by network then platform; members sorted by target then probe."""
        groups: dict[tuple[NetworkKey, str], list[Series]] = {}
        for (asn, probe, platform, _), series in self._probe_series.items():
            groups.setdefault((network_key(asn, probe), platform), []).append(series)
        ordered = sorted(
            groups.items(),
            key=lambda item: (isinstance(item[0][0], str), str(item[0][0]).zfill(12), item[0][1]),
        )
        return [
            (
                members[0].asn,
                platform,
                sorted(members, key=lambda s: (s.target or "", s.probes[0])),
            )
            for (_, platform), members in ordered
        ]

    @property
    def techniques(self) -> tuple[str | None, ...]:
        """The technique names seen, by interned index."""
        return tuple(self._techniques)

    def probes(self, asn: int | None) -> tuple[str, ...]:
        """The probe ids seen in network `asn`, in order of appearance (bit order of the masks)."""
        entry = self._probes.get(asn)
        return tuple(entry[0]) if entry else ()

    def networks(self) -> list[tuple[int | None, str]]:
        """The (asn, platform) pairs present, sorted."""
        pairs = {(key[0], key[1]) for key in self._series}
        return sorted(pairs, key=lambda pair: (pair[0] is None, pair[0] or 0, pair[1]))

    def targets(self, asn: int | None, platform: str) -> list[Series]:
        """The series of one platform on one network, sorted by target."""
        found = [s for key, s in self._series.items() if key[0] == asn and key[1] == platform]
        return sorted(found, key=lambda s: s.target or "")

    def aggregate(self, asn: int | None, platform: str) -> Series:
        """One series summing every target of `platform` on network `asn` (target None)."""
        members = self.targets(asn, platform)
        if not members:
            raise KeyError(f"no series for asn={asn!r}, platform={platform!r}")
        probes, bits = self._probes[asn]
        total = Series(asn, platform, None, 0, probes, bits, self._techniques)
        total.country = members[0].country
        for member in members:
            total.cover(member.first_hour)
            total.cover(member.first_hour + len(member) - 1)
        for member in members:
            offset = member.first_hour - total.first_hour
            for index in range(len(member)):
                at = offset + index
                total.ok[at] += member.ok[index]
                total.down[at] += member.down[index]
                total.inconclusive[at] += member.inconclusive[index]
                total.ok_hosts[at] |= member.ok_hosts[index]
                total.blocked_hosts[at] |= member.blocked_hosts[index]
                blocked = member.blocked[index]
                if not blocked:
                    continue
                counts = total.technique_counts(at)
                for technique, count in member.technique_counts(index).items():
                    counts[technique] = counts.get(technique, 0) + count
                total.blocked[at] += blocked
                if len(counts) == 1:
                    total.technique[at] = next(iter(counts))
                    total.mixed.pop(at, None)
                else:
                    total.technique[at] = _MIXED
                    total.mixed[at] = counts
        return total

    def aggregates(self) -> dict[AggregateKey, Series]:
        """Per (asn, platform) aggregate series."""
        return {
            AggregateKey(asn, platform): self.aggregate(asn, platform)
            for asn, platform in self.networks()
        }


def _add_blocked(series: Series, index: int, technique: int) -> None:
    """Count one blocked verdict of interned `technique` in bucket `index`."""
    cell = series.technique[index]
    if cell == _NO_TECHNIQUE:
        series.technique[index] = technique
    elif cell == _MIXED:
        counts = series.mixed[index]
        counts[technique] = counts.get(technique, 0) + 1
    elif cell != technique:
        # Until now every blocked verdict here had technique `cell`.
        series.mixed[index] = {cell: series.blocked[index], technique: 1}
        series.technique[index] = _MIXED
    series.blocked[index] += 1


# Buckets a series grows by at once while the timeline is built (a day of hours): growing by one
# bucket per hour of a month cost a fifth of a report's time; the spare ones are cut at the end.
_GROWTH = 24


def _reserve(series: Series, hour: int) -> int:
    """Series.cover(hour) for the builder: bucket `hour` exists afterwards, and the arrays may
    hold up to _GROWTH - 1 empty buckets past it (_trim cuts them); return its index."""
    size = len(series.ok)
    if size:
        index = hour - series.first_hour
        if index >= size:
            series._grow_back(max(index + 1 - size, _GROWTH))
            return index
    return series.cover(hour)


def _trim(series: Series) -> None:
    """Cut the spare buckets _reserve left after the last one holding a verdict: every verdict
    counts in one of the four counters, so the series ends where Series.cover would end it."""
    ok, blocked, down, inconclusive = series.ok, series.blocked, series.down, series.inconclusive
    size = end = len(ok)
    while end and not (ok[end - 1] or blocked[end - 1] or down[end - 1] or inconclusive[end - 1]):
        end -= 1
    if end < size:
        for counter in (ok, blocked, down, inconclusive, series.technique):
            del counter[end:]
        del series.ok_hosts[end:]
        del series.blocked_hosts[end:]


def build_timeline(verdicts: Iterable[Verdict | VerdictRow]) -> Timeline:
    """Stream `verdicts` (any order; records or rows) into hourly series. Only counts are kept,
    and each series' newest verdict (Series.newest, a row) with the rules versions seen."""
    timeline = Timeline()
    series_map = timeline._series
    techniques = timeline._techniques
    technique_index: dict[str | None, int] = {}
    probes_by_asn = timeline._probes
    probe_series_map = timeline._probe_series
    versions = timeline.rules_versions
    # Per (asn, probe, platform, target): [the target's series, the probe's own series (made at
    # its first ok or blocked verdict), the probe's bit in the network's masks (0: none yet)].
    # One lookup per verdict for both series.
    entries: dict[tuple[int | None, str, str, str], list[Any]] = {}
    blocked_status, ok_status, down_status = Status.BLOCKED, Status.OK, Status.DOWN
    last_moment: datetime | None = None
    hour = 0
    count = 0
    row_type = VerdictRow
    # One tight loop on purpose: a method call per verdict would double the cost at 10^6 verdicts.
    for row in verdicts:
        if type(row) is not row_type:
            row = VerdictRow.of(row)  # type: ignore[arg-type]
        (
            _,
            probe,
            moment,
            asn,
            country,
            platform,
            target,
            status,
            technique,
            _,
            _,
            version,
            _,
            _,
        ) = row
        count += 1
        if moment is not last_moment:  # the verdicts of one run share their datetime
            hour = (moment - _EPOCH) // HOUR
            last_moment = moment
        entry = entries.get((asn, probe, platform, target))
        if entry is None:
            key = (asn, platform, target)
            series = series_map.get(key)
            if series is None:
                network = probes_by_asn.get(asn)
                if network is None:
                    network = probes_by_asn[asn] = ([], {})
                series = Series(asn, platform, target, hour, *network, techniques)
                series_map[SeriesKey(*key)] = series
            entry = entries[(asn, probe, platform, target)] = [series, None, 0]
        else:
            series = entry[0]
        if series.country is None:
            series.country = country
        newest = series.newest
        if newest is None or moment >= newest[2]:  # VerdictRow.measured_at
            series.newest = row
        versions.add(version)
        index = hour - series.first_hour
        if index < 0 or index >= len(series.ok):
            index = _reserve(series, hour)
        if status is blocked_status or status is ok_status:
            own = entry[1]
            bit = entry[2]
            if own is None:
                bit = series.probe_bits.get(probe)
                if bit is None:
                    bit = 1 << len(series.probes)
                    series.probe_bits[probe] = bit
                    series.probes.append(probe)
                own = Series(asn, platform, target, hour, [probe], {probe: 1}, techniques)
                probe_series_map[ProbeSeriesKey(asn, probe, platform, target)] = own
                entry[1], entry[2] = own, bit
            own_index = hour - own.first_hour
            if own_index < 0 or own_index >= len(own.ok):
                own_index = _reserve(own, hour)
            if status is ok_status:
                series.ok[index] += 1
                series.ok_hosts[index] |= bit
                own.ok[own_index] += 1
                own.ok_hosts[own_index] = 1
                continue
            tech = technique_index.get(technique)
            if tech is None:
                tech = technique_index[technique] = len(techniques)
                techniques.append(technique)
            _add_blocked(series, index, tech)
            series.blocked_hosts[index] |= bit
            _add_blocked(own, own_index, tech)
            own.blocked_hosts[own_index] = 1
        elif status is down_status:
            series.down[index] += 1
        else:
            series.inconclusive[index] += 1
    for built in (*series_map.values(), *probe_series_map.values()):
        _trim(built)
    timeline.verdicts = count
    return timeline


def timeline_of_groups(groups: Iterable[VerdictTimes], newest: Iterable[VerdictRow]) -> Timeline:
    """The Timeline build_timeline makes of a stream of verdicts, from those verdicts grouped
    (probe.store.Store.verdict_times) and the newest verdict of each series: the same series
    with the same buckets, probes, bits, techniques, countries and newest rows, each made in the
    order the stream would have made it (by `order`, where each group's first verdict stands)."""
    timeline = Timeline()
    techniques = timeline._techniques
    probes_by_asn = timeline._probes
    ordered = sorted(groups, key=lambda g: g.order)
    evidence = (Status.OK, Status.BLOCKED)
    # What the stream makes at a verdict, made at the first group holding one: a series at any
    # verdict, a probe's own series, its bit and a technique's index at an ok or blocked one.
    spans: dict[tuple[int | None, str, str], list[int]] = {}
    own_spans: dict[tuple[int | None, str, str, str], list[int]] = {}
    technique_index: dict[str | None, int] = {}
    for group in ordered:
        asn, probe, platform, target, status = group[:5]
        low, high = hour_of(min(group.times)), hour_of(max(group.times))
        span = spans.get((asn, platform, target))
        if span is None:
            spans[(asn, platform, target)] = [low, high]
            network = probes_by_asn.get(asn)
            if network is None:
                network = probes_by_asn[asn] = ([], {})
            key = SeriesKey(asn, platform, target)
            timeline._series[key] = Series(asn, platform, target, low, *network, techniques)
        else:
            span[0], span[1] = min(span[0], low), max(span[1], high)
        if status not in evidence:
            continue
        network = probes_by_asn[asn]
        if probe not in network[1]:
            network[1][probe] = 1 << len(network[0])
            network[0].append(probe)
        own_key = ProbeSeriesKey(asn, probe, platform, target)
        own_span = own_spans.get(own_key)
        if own_span is None:
            own_spans[own_key] = [low, high]
            own = Series(asn, platform, target, low, [probe], {probe: 1}, techniques)
            timeline._probe_series[own_key] = own
        else:
            own_span[0], own_span[1] = min(own_span[0], low), max(own_span[1], high)
        if status is Status.BLOCKED and group.technique not in technique_index:
            technique_index[group.technique] = len(techniques)
            techniques.append(group.technique)
    for series_key, (low, high) in spans.items():
        _cover_exactly(timeline._series[series_key], low, high)
    for probe_key, (low, high) in own_spans.items():
        _cover_exactly(timeline._probe_series[probe_key], low, high)
    count = 0
    # The hour of each time: the verdicts of a run share one time object (the store's).
    hours: dict[datetime, int] = {}
    for group in ordered:
        asn, probe, platform, target, status, technique, version, country = group[:8]
        of_group = []
        for moment in group.times:
            hour = hours.get(moment)
            if hour is None:
                hour = hours[moment] = (moment - _EPOCH) // HOUR
            of_group.append(hour)
        count += len(of_group)
        timeline.rules_versions.add(version)
        series = timeline._series[(asn, platform, target)]
        if series.country is None:
            series.country = country
        first = series.first_hour
        if status is Status.DOWN:
            down = series.down
            for hour in of_group:
                down[hour - first] += 1
            continue
        if status is not Status.OK and status is not Status.BLOCKED:
            inconclusive = series.inconclusive
            for hour in of_group:
                inconclusive[hour - first] += 1
            continue
        own = timeline._probe_series[(asn, probe, platform, target)]
        own_first = own.first_hour
        bit = series.probe_bits[probe]
        if status is Status.OK:
            ok, ok_hosts, own_ok, own_hosts = series.ok, series.ok_hosts, own.ok, own.ok_hosts
            for hour in of_group:
                index = hour - first
                ok[index] += 1
                ok_hosts[index] |= bit
                own_ok[hour - own_first] += 1
                own_hosts[hour - own_first] = 1
            continue
        tech = technique_index[technique]
        for hour in of_group:
            index = hour - first
            _add_blocked(series, index, tech)
            series.blocked_hosts[index] |= bit
            _add_blocked(own, hour - own_first, tech)
            own.blocked_hosts[hour - own_first] = 1
    for row in newest:
        timeline._series[(row.asn, row.platform, row.target)].newest = row
    timeline.verdicts = count
    return timeline


def _cover_exactly(series: Series, low: int, high: int) -> None:
    """Give a new, empty series the buckets [low, high]."""
    series.first_hour = low
    series._grow_back(high - low + 1)
