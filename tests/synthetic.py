"""Synthetic verdicts with known ground truth, to test and benchmark the event detector.

Test and benchmark data, not part of the product (the package ships none of tests/).

A SyntheticSpec describes networks (each with its hosts), the platforms' targets, censorship
actions (onset, end, technique, targets, a daily window for intermittent blocking, a technique
switch), outages (hosts offline: gaps) and noise (random single-run flips; down/inconclusive
verdicts that are not evidence). `generate(spec, seed)` returns the verdicts, lazily and in time
order (every host runs every target once an hour), and the TruthEvents the detector should find.
Deterministic: the same spec and seed give the same verdicts, however often they are iterated.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from analysis.model import TECHNIQUE_CHANGE_SEPARATOR, Event, EventKind
from probe.catalog import builtin_targets
from probe.records import Confidence, Status, Verdict

HOUR = timedelta(hours=1)

# Telegram's data centres, as the catalog lists them (its group "dc").
TELEGRAM_DCS = tuple(
    t.name for t in builtin_targets() if t.platform == "telegram" and t.group == "dc"
)

# A cut of the catalog's endpoints: 28 targets in all.
DEFAULT_PLATFORMS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "telegram",
        (
            *TELEGRAM_DCS,
            "web.telegram.org",
            "telegram.org",
            "t.me",
        ),
    ),
    (
        "whatsapp",
        (
            "e1.whatsapp.net",
            "e2.whatsapp.net",
            "e3.whatsapp.net",
            "e4.whatsapp.net",
            "v.whatsapp.net",
            "web.whatsapp.com",
        ),
    ),
    (
        "facebook",
        (
            "www.facebook.com",
            "b-api.facebook.com",
            "edge-mqtt.facebook.com",
            "scontent.xx.fbcdn.net",
            "www.instagram.com",
        ),
    ),
    ("twitter", ("twitter.com", "x.com", "abs.twimg.com", "pbs.twimg.com")),
    ("signal", ("chat.signal.org", "storage.signal.org", "cdsi.signal.org", "sfu.voip.signal.org")),
)

# What a noisy blocked verdict blames: the usual suspects of a flaky path.
NOISE_TECHNIQUES = ("tcp.timeout", "tls.sni_reset", "dns.bogon")


@dataclass(frozen=True, slots=True)
class Network:
    """A network (ASN) and how many probes run in it."""

    asn: int
    country: str = "IR"
    hosts: int = 5


@dataclass(frozen=True, slots=True)
class Censorship:
    """A ground-truth blocking action on some networks.

    targets None blocks every target of the platform (a subset is partial blocking).
    daily_hours (from, to) blocks only in those UTC hours of each day, to excluded
    (e.g. (18, 23): 18:00-23:00; (22, 2) wraps midnight): intermittent blocking.
    switch (when, technique): the technique changes at `when` while blocking goes on.
    Times must fall on the hour; end None means the blocking outlasts the data.
    """

    networks: tuple[int, ...]
    platform: str
    technique: str
    onset: datetime
    end: datetime | None = None
    targets: tuple[str, ...] | None = None
    daily_hours: tuple[int, int] | None = None
    switch: tuple[datetime, str] | None = None


@dataclass(frozen=True, slots=True)
class Outage:
    """Hosts of a network offline from start to end (no verdicts at all): a gap.

    hosts: host numbers within the network (0-based); None means every host."""

    asn: int
    start: datetime
    end: datetime
    hosts: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class SyntheticSpec:
    """A dataset: hourly runs from `start` for `days` days.

    noise_rate: probability that a verdict flips (ok <-> blocked) at random.
    not_evidence_rate: probability that a verdict is down or inconclusive instead.
    """

    start: datetime
    days: int
    networks: tuple[Network, ...]
    censorship: tuple[Censorship, ...] = ()
    outages: tuple[Outage, ...] = ()
    platforms: tuple[tuple[str, tuple[str, ...]], ...] = DEFAULT_PLATFORMS
    noise_rate: float = 0.0
    not_evidence_rate: float = 0.0

    @property
    def hours(self) -> int:
        return self.days * 24

    @property
    def end(self) -> datetime:
        return self.start + self.hours * HOUR


@dataclass(frozen=True, slots=True)
class TruthEvent:
    """An event the detector should report, in the detector's terms.

    For blocking and partial events onset is the first blocked hour and end the first hour
    back to ok (None: still blocked when the data ends). For intermittent events they are the
    first blocked hour and the hour after the last one, rate the blocked share of the hours in
    between. A technique_change has onset == end == the switch; technique "<old> -> <new>".
    """

    kind: EventKind
    platform: str
    networks: tuple[int, ...]
    targets: tuple[str, ...]
    technique: str
    onset: datetime
    end: datetime | None
    hosts: int
    rate: float | None = None


class VerdictStream:
    """The dataset's verdicts: re-iterable and lazy (each iteration generates them afresh)."""

    def __init__(self, spec: SyntheticSpec, seed: int) -> None:
        self._spec = spec
        self._seed = seed

    def __iter__(self) -> Iterator[Verdict]:
        return _verdicts(self._spec, self._seed)

    def __len__(self) -> int:
        spec = self._spec
        targets = sum(len(targets) for _, targets in spec.platforms)
        runs = 0
        for network_index, network in enumerate(spec.networks):
            offline = _offline_hours(spec, network_index, network)
            runs += sum(spec.hours - len(hours) for hours in offline)
        return runs * targets


@dataclass(frozen=True, slots=True)
class SyntheticDataset:
    verdicts: VerdictStream
    truth: tuple[TruthEvent, ...]


@dataclass(frozen=True, slots=True)
class Score:
    """How detected events compare with the truth."""

    matched: tuple[tuple[TruthEvent, Event], ...]
    missed: tuple[TruthEvent, ...]
    spurious: tuple[Event, ...]


def generate(spec: SyntheticSpec, seed: int) -> SyntheticDataset:
    """The spec's verdicts (lazy, re-iterable, in time order) and its ground-truth events."""
    _validate(spec)
    return SyntheticDataset(VerdictStream(spec, seed), tuple(_truth(spec)))


def matches(truth: TruthEvent, event: Event, tolerance: timedelta = HOUR) -> bool:
    """Whether `event` reports `truth`: same kind, platform, technique, networks and targets,
    onset and end within `tolerance` (one run interval by default)."""
    if (
        event.kind is not truth.kind
        or event.platform != truth.platform
        or event.technique != truth.technique
        or set(event.networks) != set(truth.networks)
        or set(event.targets) != set(truth.targets)
        or abs(event.onset - truth.onset) > tolerance
    ):
        return False
    if event.end is None or truth.end is None:
        return event.end is None and truth.end is None
    return abs(event.end - truth.end) <= tolerance


def score(
    truth: tuple[TruthEvent, ...] | list[TruthEvent],
    events: list[Event],
    tolerance: timedelta = HOUR,
) -> Score:
    """Pair each truth event with a detected event that matches it (each used once)."""
    unused = list(events)
    matched: list[tuple[TruthEvent, Event]] = []
    missed: list[TruthEvent] = []
    for expected in truth:
        for event in unused:
            if matches(expected, event, tolerance):
                matched.append((expected, event))
                unused.remove(event)
                break
        else:
            missed.append(expected)
    return Score(tuple(matched), tuple(missed), tuple(unused))


def _validate(spec: SyntheticSpec) -> None:
    if spec.start.utcoffset() != timedelta(0) or spec.start != _floor_hour(spec.start):
        raise ValueError(f"SyntheticSpec.start must be UTC and on the hour, got {spec.start!r}")
    if spec.days < 1:
        raise ValueError(f"SyntheticSpec.days must be >= 1, got {spec.days}")
    for rate_name in ("noise_rate", "not_evidence_rate"):
        rate = getattr(spec, rate_name)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"SyntheticSpec.{rate_name} must be in [0, 1], got {rate}")
    asns = [n.asn for n in spec.networks]
    if len(set(asns)) != len(asns):
        raise ValueError(f"SyntheticSpec.networks repeat an ASN: {asns}")
    platforms = dict(spec.platforms)
    for action in spec.censorship:
        if action.platform not in platforms:
            raise ValueError(f"censorship on unknown platform {action.platform!r}")
        unknown = set(action.targets or ()) - set(platforms[action.platform])
        if unknown:
            raise ValueError(f"censorship on unknown {action.platform} targets {sorted(unknown)}")
        if set(action.networks) - set(asns):
            raise ValueError(f"censorship on unknown networks {action.networks}")
        moments = [action.onset, action.end, action.switch[0] if action.switch else None]
        for moment in moments:
            if moment is not None and moment != _floor_hour(moment):
                raise ValueError(f"censorship times must fall on the hour, got {moment!r}")
    for outage in spec.outages:
        if outage.asn not in asns:
            raise ValueError(f"outage on unknown network {outage.asn}")


def _floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _index(spec: SyntheticSpec, moment: datetime | None) -> int:
    """Hour index of `moment` in the dataset, clamped to [0, hours]; None -> hours."""
    if moment is None:
        return spec.hours
    return max(0, min(spec.hours, (moment - spec.start) // HOUR))


def _blocked_hours(spec: SyntheticSpec, action: Censorship) -> list[int]:
    first, stop = _index(spec, action.onset), _index(spec, action.end)
    if action.daily_hours is None:
        return list(range(first, stop))
    start_hour = spec.start.hour
    low, high = action.daily_hours
    found = []
    for hour in range(first, stop):
        of_day = (start_hour + hour) % 24
        inside = low <= of_day < high if low <= high else of_day >= low or of_day < high
        if inside:
            found.append(hour)
    return found


def _truth(spec: SyntheticSpec) -> list[TruthEvent]:
    platforms = dict(spec.platforms)
    hosts_of = {n.asn: n.hosts for n in spec.networks}
    truth: list[TruthEvent] = []
    for action in spec.censorship:
        targets = action.targets or platforms[action.platform]
        hosts = sum(hosts_of[asn] for asn in action.networks)
        blocked = _blocked_hours(spec, action)
        if not blocked:
            continue
        first, last = blocked[0], blocked[-1]
        if action.daily_hours is not None:
            # A pattern still running when the data ends is ongoing, even between episodes.
            ongoing = _index(spec, action.end) == spec.hours
        else:
            ongoing = last == spec.hours - 1
        end = None if ongoing else spec.start + (last + 1) * HOUR
        rate = None
        if action.daily_hours is not None:
            kind = EventKind.INTERMITTENT
            rate = len(blocked) / (last + 1 - first)
        elif set(targets) != set(platforms[action.platform]):
            kind = EventKind.PARTIAL
        else:
            kind = EventKind.BLOCKING
        truth.append(
            TruthEvent(
                kind=kind,
                platform=action.platform,
                networks=action.networks,
                targets=tuple(targets),
                technique=action.technique,
                onset=spec.start + first * HOUR,
                end=end,
                hosts=hosts,
                rate=rate,
            )
        )
        if action.switch is not None and first < _index(spec, action.switch[0]) <= last:
            when, new = action.switch
            truth.append(
                TruthEvent(
                    kind=EventKind.TECHNIQUE_CHANGE,
                    platform=action.platform,
                    networks=action.networks,
                    targets=tuple(targets),
                    technique=f"{action.technique}{TECHNIQUE_CHANGE_SEPARATOR}{new}",
                    onset=when,
                    end=when,
                    hosts=hosts,
                )
            )
    truth.sort(key=lambda t: (t.onset, t.kind, t.platform, t.networks))
    return truth


def _offline_hours(spec: SyntheticSpec, network_index: int, network: Network) -> list[set[int]]:
    """Per host of the network, the hour indices it is offline."""
    offline: list[set[int]] = [set() for _ in range(network.hosts)]
    for outage in spec.outages:
        if outage.asn != network.asn:
            continue
        hours = range(_index(spec, outage.start), _index(spec, outage.end))
        for host in outage.hosts if outage.hosts is not None else range(network.hosts):
            if 0 <= host < network.hosts:
                offline[host].update(hours)
    return offline


def _verdicts(spec: SyntheticSpec, seed: int) -> Iterator[Verdict]:
    rng = random.Random(seed)
    platforms = dict(spec.platforms)
    targets = [(platform, target) for platform, names in spec.platforms for target in names]
    target_index = {pair: i for i, pair in enumerate(targets)}
    techniques: list[str | None] = [None]
    technique_code: dict[str, int] = {}

    def code(technique: str) -> int:
        if technique not in technique_code:
            technique_code[technique] = len(techniques)
            techniques.append(technique)
        return technique_code[technique]

    # plan[network][target][hour]: technique code blocking it then (0 = not blocked). Compact:
    # 28 targets x 720 hours is 20 kB a network.
    plan = [[bytearray(spec.hours) for _ in targets] for _ in spec.networks]
    network_index = {n.asn: i for i, n in enumerate(spec.networks)}
    for action in spec.censorship:
        switch_at = _index(spec, action.switch[0]) if action.switch else spec.hours
        before = code(action.technique)
        after = code(action.switch[1]) if action.switch else before
        hours = _blocked_hours(spec, action)
        for asn in action.networks:
            for target in action.targets or platforms[action.platform]:
                row = plan[network_index[asn]][target_index[(action.platform, target)]]
                for hour in hours:
                    row[hour] = before if hour < switch_at else after
    noise_codes = [code(t) for t in NOISE_TECHNIQUES]

    # Each host starts its hourly run at its own minute, as real probes do.
    hosts = []
    for n_index, network in enumerate(spec.networks):
        offline_by_host = _offline_hours(spec, n_index, network)
        for host in range(network.hosts):
            probe_id = f"probe-as{network.asn}-{host:02d}"
            minute = rng.randrange(0, 55)
            hosts.append((n_index, network, probe_id, minute, offline_by_host[host]))

    statuses = (Status.OK, Status.BLOCKED)
    not_evidence = spec.not_evidence_rate
    flip_below = not_evidence + spec.noise_rate
    blockpage = code("http.blockpage")
    for hour in range(spec.hours):
        run_start = spec.start + hour * HOUR
        for n_index, network, probe_id, minute, offline in hosts:
            if hour in offline:
                continue
            measured_at = run_start + timedelta(minutes=minute)
            run_id = f"{probe_id}-{run_start:%Y%m%dT%H}"
            rows = plan[n_index]
            for t_index, (platform, target) in enumerate(targets):
                planned = rows[t_index][hour]
                draw = rng.random()
                technique_id = planned
                if draw < not_evidence:
                    status = Status.DOWN if draw < not_evidence / 2 else Status.INCONCLUSIVE
                    technique_id = 0
                elif draw < flip_below:
                    blocked = not planned
                    status = statuses[blocked]
                    technique_id = noise_codes[t_index % len(noise_codes)] if blocked else 0
                else:
                    status = statuses[planned != 0]
                technique = techniques[technique_id] if status is Status.BLOCKED else None
                confidence = None
                if status is Status.BLOCKED:
                    confidence = (
                        Confidence.CONFIRMED if technique_id == blockpage else Confidence.ANOMALY
                    )
                yield Verdict(
                    run_id=run_id,
                    probe_id=probe_id,
                    measured_at=measured_at,
                    asn=network.asn,
                    country=network.country,
                    platform=platform,
                    target=target,
                    status=status,
                    technique=technique,
                    confidence=confidence,
                    rule_id=f"synthetic.{status}",
                    rules_version="synthetic-1",
                    evidence=(f"{run_id}-{t_index}",),
                )


def month_spec(start: datetime | None = None, days: int = 30) -> SyntheticSpec:
    """A benchmark-sized dataset: 10 networks x 5 hosts x 28 targets, hourly for `days` days
    (30 days: 1,003,968 verdicts after the outages), with every kind of event, gaps, noise and
    clean control networks."""
    start = start or datetime(2024, 3, 1, tzinfo=UTC)

    def day(number: float) -> datetime:
        return start + timedelta(hours=round(number * 24))

    networks = (
        Network(44244, "IR"),  # Irancell
        Network(197207, "IR"),  # MCI
        Network(58224, "IR"),  # TCI
        Network(31549, "IR"),  # Shatel
        Network(16322, "IR"),  # Pars Online
        Network(43754, "IR"),  # Asiatech
        Network(3320, "DE"),  # control networks from here on
        Network(7922, "US"),
        Network(3215, "FR"),
        Network(2856, "GB"),
    )
    return SyntheticSpec(
        start=start,
        days=days,
        networks=networks,
        censorship=(
            Censorship((44244, 197207), "telegram", "tcp.timeout", day(3), day(10.5)),
            Censorship(
                (58224,), "whatsapp", "tls.sni_reset", day(5), day(13), daily_hours=(18, 23)
            ),
            Censorship(
                (31549,),
                "telegram",
                "tcp.timeout",
                day(8.25),
                None,
                targets=("149.154.175.50", "149.154.167.51"),
            ),
            Censorship(
                (16322,),
                "twitter",
                "dns.bogon",
                day(2),
                day(20),
                switch=(day(9.5), "tls.sni_reset"),
            ),
            Censorship((43754,), "signal", "http.blockpage", day(25.5), None),
        ),
        outages=(
            Outage(44244, day(14), day(15)),  # the whole network offline a day
            Outage(16322, day(11), day(12), hosts=(0,)),  # one host offline a day
        ),
        noise_rate=0.01,
        not_evidence_rate=0.02,
    )
