"""How often a schedule runs: durations ("30m", "1h30m"), and the Cadence (period, random minute
offset, jitter) in the two calendars that express it, systemd's OnCalendar= and cron's fields.

The start sits at a random minute offset inside the period, so probes do not all fire at :00
(kinder to the helper, and a less regular pattern on the wire).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from probe.schedule.tools import ScheduleError

MIN_INTERVAL_S = 5 * 60
DAY_S = 24 * 3600
DEFAULT_JITTER_S = 10 * 60

_DURATION = re.compile(r"(\d+)([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": DAY_S}


def parse_duration(text: str) -> int:
    """Seconds in a duration such as "30m", "1h", "6h", "1d", "1h30m" or "0"."""
    value = text.strip().lower()
    if value == "0":
        return 0
    if not value or _DURATION.sub("", value):
        raise ScheduleError(
            f"invalid duration {text!r}: write a number and a unit (s, m, h, d), e.g. 30m, 1h, 1d"
        )
    return sum(int(n) * _UNIT_S[unit] for n, unit in _DURATION.findall(value))


def format_duration(seconds: int) -> str:
    """The shortest text parse_duration reads back to `seconds` ("1h30m", "10m", "0")."""
    if seconds == 0:
        return "0"
    parts = []
    for unit in ("d", "h", "m", "s"):
        count, seconds = divmod(seconds, _UNIT_S[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class Cadence:
    """Every `every` seconds, at `offset` seconds into each period, plus up to `jitter` seconds.

    `every` divides an hour (in whole minutes) or a day (in whole hours), or is a day: the only
    periods that both cron and systemd calendars express exactly.
    """

    every: int
    jitter: int
    offset: int

    @classmethod
    def make(
        cls, every: int, jitter: int | None = None, rng: random.Random | None = None
    ) -> Cadence:
        """A cadence with a random offset; `jitter` None picks min(10m, every / 4)."""
        if every < MIN_INTERVAL_S:
            raise ScheduleError(
                f"--every {format_duration(every)} is too often: the shortest is "
                f"{format_duration(MIN_INTERVAL_S)}"
            )
        if not _expressible(every):
            raise ScheduleError(
                f"--every {format_duration(every)}: the interval must divide an hour "
                "(5m, 10m, 15m, 20m, 30m) or a day (1h, 2h, 3h, 4h, 6h, 8h, 12h), or be 1d"
            )
        if jitter is None:
            jitter = min(DEFAULT_JITTER_S, every // 4)
        if jitter < 0 or jitter >= every:
            raise ScheduleError(
                f"--jitter {format_duration(jitter)} must be shorter than --every "
                f"{format_duration(every)}"
            )
        rng = rng or random.SystemRandom()
        offset = rng.randrange(every // 60) * 60
        return cls(every, jitter, offset)

    def on_calendar(self) -> str:
        """The systemd OnCalendar= expression."""
        minute, hour = (self.offset // 60) % 60, self.offset // 3600
        if self.every < 3600:
            return f"*-*-* *:{minute:02d}/{self.every // 60}:00"
        if self.every < DAY_S:
            return f"*-*-* {hour:02d}/{self.every // 3600}:{minute:02d}:00"
        return f"*-*-* {hour:02d}:{minute:02d}:00"

    def cron_times(self) -> str:
        """The five time fields of a crontab line."""
        minute, hour = (self.offset // 60) % 60, self.offset // 3600
        if self.every < 3600:
            return f"{minute}-59/{self.every // 60} * * * *"
        if self.every < DAY_S:
            return f"{minute} {hour}-23/{self.every // 3600} * * *"
        return f"{minute} {hour} * * *"

    def describe(self) -> str:
        jitter = f" + up to {format_duration(self.jitter)} random delay" if self.jitter else ""
        return f"every {format_duration(self.every)}{jitter}"


def _expressible(every: int) -> bool:
    if every % 60:
        return False
    if every < 3600:
        return 3600 % every == 0
    if every < DAY_S:
        return every % 3600 == 0 and DAY_S % every == 0
    return every == DAY_S
