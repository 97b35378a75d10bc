"""The probe's own stalls: spans in which its event loop could not run (the machine starved the
process of CPU, swapped it out, or it was stopped), and the measurements they overlapped.

A stall that spans a check's deadline turns an answer into a timeout: the reply lies in the
socket buffer, but when the loop runs again its expired timer cancels the waiting task before
the task sees the reply (asyncio processes I/O and expired timers in one pass and wakes the
task on the next; libuv runs timers first). A volunteer's overloaded machine would then report
DNS, TCP, TLS or HTTP "blocking" of names nobody blocked. The runner watches the loop with a
short timer (StallMonitor: a tick that fires STALL_THRESHOLD late or later is a stall) and
marks every measurement whose span overlapped a stall with `probe_stall_ms` (StallMarking), so
that the analysis does not read such a timeout as censorship (analysis/rules.py,
probe.stalled).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from probe.model import Measurement

# How often the monitor's tick is due (s): a stall shorter than this may go unseen, and every
# check's timeout is far longer.
TICK = 0.05
# A tick this late (s) is a stall: well above a busy loop's ordinary lag (a few milliseconds per
# iteration on the loopback benchmark's 1,000 targets) and below the shortest timeout a check
# would sensibly use (the lab's 1.5 s connect).
STALL_THRESHOLD = 0.25
# Stalls kept for matching (the oldest are forgotten): a run that stalled this often has bigger
# problems, which the run's note reports (StallMonitor.count, .seconds).
MAX_STALLS = 4096


class Recorder(Protocol):
    """Where measurements go (probe.flows.base.Recorder: the runner's writer)."""

    def add(self, measurement: Measurement) -> None: ...


class StallMonitor:
    """Spans of the monotonic clock in which the running loop did not run."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._stalls: deque[tuple[float, float]] = deque(maxlen=MAX_STALLS)
        # When the tick now pending is due (None: not watching). A stall still going on, or
        # just over with the tick not yet run, is the span from then to now: after a stall the
        # loop may run a check's timeout and recording before the tick (the order of callbacks
        # that became due together is the loop's).
        self._due: float | None = None
        self.count = 0
        self.seconds = 0.0

    async def watch(self) -> None:
        """Tick until cancelled, noting each tick that came STALL_THRESHOLD late or later."""
        clock = self._clock
        self._due = due = clock() + TICK
        try:
            while True:
                await asyncio.sleep(TICK)
                now = clock()
                if now - due >= STALL_THRESHOLD:
                    self.note(due, now)
                self._due = due = now + TICK
        finally:
            self._due = None

    def now(self) -> float:
        return self._clock()

    def note(self, start: float, end: float) -> None:
        """A stall from `start` to `end` (monotonic seconds)."""
        self._stalls.append((start, end))
        self.count += 1
        self.seconds += end - start

    def overlap_ms(self, start: float, end: float) -> float:
        """How many milliseconds of [start, end] the loop was stalled (`end` is now or earlier),
        the stall the pending tick has yet to note included."""
        total = 0.0
        due = self._due
        if due is not None and end - due >= STALL_THRESHOLD:
            total += max(0.0, end - max(due, start))
        for stall_start, stall_end in reversed(self._stalls):
            if stall_end <= start:
                break  # the stalls are in order; the rest ended earlier still
            total += max(0.0, min(stall_end, end) - max(stall_start, start))
        return round(total * 1000.0, 1)


class StallMarking:
    """A recorder that sets `probe_stall_ms` on a measurement whose span overlapped a stall, then
    hands it on. A measurement is recorded as its check ends, so its span is taken as the
    `duration_ms` before now: a stall between the check's end and the recording is counted too,
    which only ever makes the analysis more careful."""

    def __init__(self, inner: Recorder, monitor: StallMonitor) -> None:
        self._inner = inner
        self._monitor = monitor

    def add(self, measurement: Measurement) -> None:
        observation = measurement.observation
        end = self._monitor.now()
        stalled = self._monitor.overlap_ms(end - observation.duration_ms / 1000.0, end)
        if stalled > 0:
            observation = dataclasses.replace(observation, probe_stall_ms=stalled)
            measurement = dataclasses.replace(measurement, observation=observation)
        self._inner.add(measurement)
