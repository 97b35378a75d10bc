"""Benchmark: single-measurement transactions into a SQLite store, as the runner writes whatever
completed (often one measurement per transaction).

    python3 -m benchmarks.store_benchmark [--batches 500]

Goal: > 500 single-measurement batches/s (a probe makes at most a few hundred measurements a
second).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from probe.store import Store
from tests.store_rows import make_measurement, make_run

GOAL = 500.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, Store.open(str(Path(folder) / "b.db")) as store:
        run = make_run(store.probe_id())
        store.start_run(run)
        began = time.perf_counter()
        for i in range(args.batches):
            store.save_measurements([make_measurement(run.id, target=f"t{i}")])
        rate = args.batches / (time.perf_counter() - began)
        stored = sum(1 for _ in store.measurements())
    print(f"{stored} single-measurement batches stored, {rate:.0f} batches/s (goal > {GOAL:.0f})")
    return 0 if rate > GOAL and stored == args.batches else 1


if __name__ == "__main__":
    raise SystemExit(main())
