"""Benchmark: a month of hourly runs from 50 hosts (about a million verdicts) through the timeline
and the event detector. Prints wall times, peak RSS and how the events compare with the truth.

    python3 benchmarks/events_benchmark.py [--days 30] [--seed 7]

Goal: timeline + detection under 30 s and under 1 GB on 2 cores.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.events import detect_events_in
from analysis.timeline import build_timeline
from probe.config import DetectorParams
from tests.synthetic import generate, month_spec, score


def peak_rss_mb() -> float:
    # Linux reports ru_maxrss in kilobytes.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    dataset = generate(month_spec(days=args.days), args.seed)
    baseline = peak_rss_mb()

    # 1. Streaming, as from a store cursor: verdicts are generated, counted and dropped.
    started = time.perf_counter()
    timeline = build_timeline(dataset.verdicts)
    streamed = time.perf_counter() - started
    started = time.perf_counter()
    events = detect_events_in(timeline, DetectorParams())
    detection = time.perf_counter() - started
    streaming_rss = peak_rss_mb()

    # 2. The generator alone, and 3. the timeline alone over verdicts already in memory (this
    # holds every verdict at once, so its RSS is the list's, not the timeline's).
    started = time.perf_counter()
    generated = sum(1 for _ in dataset.verdicts)
    generation = time.perf_counter() - started
    verdicts = list(dataset.verdicts)
    started = time.perf_counter()
    build_timeline(verdicts)
    timeline_alone = time.perf_counter() - started
    del verdicts

    result = score(dataset.truth, events)
    print(f"verdicts:                     {timeline.verdicts:,} ({len(timeline.series)} series)")
    print(f"generate + timeline, streamed: {streamed:6.2f} s")
    print(f"event detection:               {detection:6.2f} s")
    print(f"end to end:                    {streamed + detection:6.2f} s")
    print(
        f"peak RSS, streamed:            {streaming_rss:6.1f} MB (after imports {baseline:.1f} MB)"
    )
    print(f"generation alone:              {generation:6.2f} s")
    print(f"timeline alone (from a list):  {timeline_alone:6.2f} s")
    print(f"timeline + detection alone:    {timeline_alone + detection:6.2f} s")
    print(f"peak RSS with the list:        {peak_rss_mb():6.1f} MB")
    print(
        f"events: {len(events)}; truth: {len(dataset.truth)}; matched within one run: "
        f"{len(result.matched)}; missed: {len(result.missed)}; spurious: {len(result.spurious)}"
    )
    for event in events:
        end = event.end.isoformat() if event.end else "ongoing"
        print(
            f"  {event.kind:<16} {event.platform:<9} {event.technique or '-':<27} "
            f"{event.onset.isoformat()} -> {end}  networks={event.networks} hosts={event.hosts}"
        )
    assert generated == timeline.verdicts
    return 0 if not result.missed and not result.spurious else 1


if __name__ == "__main__":
    raise SystemExit(main())
