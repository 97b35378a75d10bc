"""Peak memory and wall time of one run over a huge test list: N loopback targets (default
200,000, as a big Citizen Lab list merged with others) whose connects are refused at once, and a
control that answers, measured into a sink that only counts. Prints peak RSS and wall time.

    python3 -m benchmarks.targets_benchmark [N] [CONCURRENCY]

Run it from a checkout before and after a change to the runner's scheduling.
"""

from __future__ import annotations

import asyncio
import resource
import socket
import sys
import time
from collections.abc import Sequence

from probe.model import Measurement, Target, TargetKind
from probe.resolvers import parse_resolver
from probe.runner import RunPlan, execute


class CountingSink:
    def __init__(self) -> None:
        self.count = 0

    def save_measurements(self, batch: Sequence[Measurement]) -> None:
        self.count += len(batch)


def main(count: int, concurrency: int) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused = closed.getsockname()[1]
    closed.close()  # nothing listens there now: every connect is refused at once
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)  # the control: the kernel completes its handshake
    control = Target(
        "control", "c", TargetKind.TCP, "127.0.0.1", (listener.getsockname()[1],), control=True
    )
    targets = [
        Target("testlist", f"t{i}", TargetKind.TCP, "127.0.0.1", (refused,)) for i in range(count)
    ]
    plan = RunPlan(targets, [control], [parse_resolver("system")], concurrency=concurrency)
    sink = CountingSink()
    began = time.perf_counter()
    outcome = asyncio.run(execute(plan, "benchmark", sink))
    wall = time.perf_counter() - began
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    listener.close()
    print(
        f"{count} targets, concurrency {concurrency}: connectivity {outcome.connectivity.value}, "
        f"{sink.count} measurements, peak RSS {peak_mb:.0f} MB, wall {wall:.1f} s"
    )


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 200_000,
        int(sys.argv[2]) if len(sys.argv) > 2 else 256,
    )
