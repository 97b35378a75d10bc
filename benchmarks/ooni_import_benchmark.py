"""Benchmark: `probe import ooni` over a ~1 GB JSONL.gz made from the shared real OONI documents.

The file: the 55 documents of ../shared/data/ooni-measurements repeated in turn, each copy with
its own measurement_uid (so each is a distinct measurement to import), one per line, gzip level
6 (OONI's archive compresses its JSONL the same way), until the file reaches --size-mb. It is
written under /tmp (or --file) and never committed.

Then `python3 -m probe import ooni FILE --db NEW.db` runs --repeat times, each as its own process
into a fresh SQLite database (peak RSS measured per process with wait4), pinned to 2 CPUs.
Printed per run and as median (min-max): documents/s, MB/s of JSON read (uncompressed) and of
the file (compressed), peak RSS, CPU time (documents per CPU-second) and the load average
beside each (the machine is shared); beside the peak RSS of the largest process, the peak of the
import's processes together (it parses and judges in worker processes), as RSS and as PSS.
Goal: >= 2,000 documents/s and < 300 MB RSS.

With --floor, first what reading alone costs on the same file, the bound no import can beat:
gzip decompression and line splitting, then that plus parsing each line with the stdlib's json
and with orjson (each in this process, one core, no import work).

    python3 benchmarks/ooni_import_benchmark.py [--size-mb 1024] [--file F] [--repeat 3] [--keep]
        [--floor]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GOAL_DOCUMENTS_PER_S = 2000.0
GOAL_RSS = 300_000_000


def shared_documents() -> Path:
    for candidate in (
        REPO.parent / "shared" / "data" / "ooni-measurements",
        Path("/work/shared/data/ooni-measurements"),
    ):
        if candidate.is_dir():
            return candidate
    raise SystemExit("../shared/data/ooni-measurements is absent: the real OONI documents")


def build(path: Path, size_bytes: int) -> tuple[int, int]:
    """Write the JSONL.gz; return (documents, uncompressed bytes)."""
    templates = []
    for source in sorted(shared_documents().glob("*.json")):
        data = json.loads(source.read_text(encoding="utf-8"))
        data["measurement_uid"] = "@UID@"
        templates.append(json.dumps(data, separators=(",", ":")).encode())
    documents = raw = 0
    with path.open("wb") as sink, gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=6) as out:
        while sink.tell() < size_bytes:
            for template in templates:
                line = template.replace(b"@UID@", f"bench{documents:012d}".encode()) + b"\n"
                out.write(line)
                documents += 1
                raw += len(line)
    return documents, raw


@dataclass(frozen=True, slots=True)
class Figure:
    seconds: float
    peak_rss: int
    cpu_seconds: float
    load: tuple[float, float]  # the 1-minute load average as the run started and ended
    # The import and its worker processes together, sampled every 0.5 s (peak_rss is the
    # largest single process: wait4's ru_maxrss). PSS shares the pages forked workers share.
    tree_rss: int = 0
    tree_pss: int = 0


# The child's own rusage (not this process's, which it was forked from): see
# benchmarks/analysis_benchmark.py.
_LAUNCHER = """
import os, sys
pid = os.posix_spawn(sys.executable, [sys.executable, "-m", "probe", *sys.argv[1:]], os.environ)
_, status, usage = os.wait4(pid, 0)
print("RUSAGE", usage.ru_maxrss, usage.ru_utime + usage.ru_stime, file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _tree_memory(root: int) -> tuple[int, int]:
    """(RSS, PSS) in bytes summed over `root` and its descendants (the import's worker
    processes), from /proc; what cannot be read (a process that just ended) counts 0."""
    rss = pss = 0
    pending = [root]
    while pending:
        pid = pending.pop()
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                pending.extend(int(c) for c in (task / "children").read_text().split())
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith(("Rss:", "Pss:")):
                    kib = int(line.split()[1]) * 1024
                    if line.startswith("Rss:"):
                        rss += kib
                    else:
                        pss += kib
        except (OSError, ValueError):
            continue
    return rss, pss


def measure(args: list[str]) -> Figure:
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    tree_rss = tree_pss = 0
    with tempfile.TemporaryFile() as errors, tempfile.TemporaryFile() as output:
        child = subprocess.Popen(
            [sys.executable, "-S", "-c", _LAUNCHER, *args],
            stdout=output,
            stderr=errors,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"},
        )
        while child.poll() is None:
            rss, pss = _tree_memory(child.pid)
            tree_rss, tree_pss = max(tree_rss, rss), max(tree_pss, pss)
            time.sleep(0.5)
        code = child.returncode
        seconds = time.perf_counter() - started
        errors.seek(0)
        text = errors.read().decode()
        output.seek(0)
        shown = output.read().decode()
    if code != 0:
        raise SystemExit(f"import failed ({code}): {text}{shown}")
    usage = next(line for line in text.splitlines() if line.startswith("RUSAGE ")).split()
    return Figure(
        seconds,
        int(usage[1]) * 1024,
        float(usage[2]),
        (load_before, os.getloadavg()[0]),
        tree_rss,
        tree_pss,
    )


def floor(path: Path, documents: int) -> None:
    """Print the cost of decompressing (and parsing) every line of `path`, with the load."""
    parsers: list[tuple[str, Callable[[bytes], object] | None]] = [
        ("gzip only", None),
        ("gzip + json", json.loads),
    ]
    try:
        import orjson  # not a dependency: the import reads with the stdlib (see the reader)

        parsers.append(("gzip + orjson", orjson.loads))
    except ImportError:
        print("floor: orjson is not installed; its line is left out")
    for name, parse in parsers:
        load = os.getloadavg()[0]
        started, cpu = time.perf_counter(), time.process_time()
        with gzip.open(path, "rb") as stream:
            for line in stream:
                if parse is not None:
                    parse(line)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        print(
            f"floor, {name}: {seconds:.1f} s, {documents / seconds:,.0f} documents/s"
            f" (CPU {cpu:.1f} s, {documents / cpu:,.0f} per CPU-second);"
            f" load {load:.2f} -> {os.getloadavg()[0]:.2f}"
        )


def _spread(values: list[float], unit: str, scale: float = 1.0) -> str:
    shown = [v / scale for v in values]
    return f"{statistics.median(shown):,.1f} {unit} (min {min(shown):,.1f}, max {max(shown):,.1f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="compressed size to build")
    parser.add_argument("--file", type=Path, help="the JSONL.gz to use (built when missing)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the file and databases")
    parser.add_argument("--floor", action="store_true", help="first measure reading alone")
    args = parser.parse_args()

    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > 2:
        os.sched_setaffinity(0, cpus[:2])  # children inherit: the goal is for 2 cores
    print(f"CPUs: {len(os.sched_getaffinity(0))} ({os.cpu_count()} on the machine)")
    folder = Path(tempfile.mkdtemp(prefix="ooni-bench-", dir="/tmp"))
    path = args.file or folder / "ooni.jsonl.gz"
    if not path.exists():
        print(f"building {path} ...", file=sys.stderr)
        started = time.perf_counter()
        documents, raw = build(path, args.size_mb * 1024 * 1024)
        print(f"built in {time.perf_counter() - started:.0f} s")
    else:
        documents = raw = 0
        with gzip.open(path, "rb") as stream:
            for line in stream:
                documents += 1
                raw += len(line)
    compressed = path.stat().st_size
    print(
        f"file: {path} {compressed / 1e6:,.0f} MB compressed, {raw / 1e6:,.0f} MB of JSON, "
        f"{documents:,} documents"
    )
    if args.floor:
        floor(path, documents)
    figures = []
    for attempt in range(1, args.repeat + 1):
        db = folder / f"import-{attempt}.db"
        figure = measure(["import", "ooni", str(path), "--db", str(db)])
        figures.append(figure)
        seconds = figure.seconds
        print(
            f"run {attempt}: {seconds:.1f} s, {documents / seconds:,.0f} documents/s,"
            f" {raw / seconds / 1e6:,.1f} MB/s JSON ({compressed / seconds / 1e6:,.1f} MB/s gz),"
            f" peak RSS {figure.peak_rss / 1e6:,.0f} MB (all processes: RSS"
            f" {figure.tree_rss / 1e6:,.0f} MB, PSS {figure.tree_pss / 1e6:,.0f} MB);"
            f" CPU {figure.cpu_seconds:.1f} s ({documents / figure.cpu_seconds:,.0f} documents"
            f" per CPU-second); load {figure.load[0]:.2f} -> {figure.load[1]:.2f}"
        )
        if not args.keep:
            for leftover in folder.glob(db.name + "*"):
                leftover.unlink()
    rates = [documents / f.seconds for f in figures]
    print(f"documents/s: {_spread(rates, 'docs/s')}")
    print(f"JSON MB/s:   {_spread([raw / f.seconds for f in figures], 'MB/s', 1e6)}")
    print(f"gz MB/s:     {_spread([compressed / f.seconds for f in figures], 'MB/s', 1e6)}")
    print(f"peak RSS:    {_spread([float(f.peak_rss) for f in figures], 'MB', 1e6)}")
    print(f"all, RSS:    {_spread([float(f.tree_rss) for f in figures], 'MB', 1e6)}")
    print(f"all, PSS:    {_spread([float(f.tree_pss) for f in figures], 'MB', 1e6)}")
    cpu_rates = [documents / f.cpu_seconds for f in figures]
    print(f"per CPU-s:   {_spread(cpu_rates, 'docs')} (the machine is shared: see the load)")
    median_rate = statistics.median(rates)
    worst_rss = max(f.peak_rss for f in figures)
    worst_pss = max(f.tree_pss for f in figures)
    print(
        f"goal >= {GOAL_DOCUMENTS_PER_S:,.0f} documents/s: "
        f"{'met' if median_rate >= GOAL_DOCUMENTS_PER_S else 'NOT met'}; "
        f"goal RSS < {GOAL_RSS / 1e6:,.0f} MB: largest process "
        f"{'met' if worst_rss < GOAL_RSS else 'NOT met'}, all processes (PSS) "
        f"{'met' if worst_pss < GOAL_RSS else 'NOT met'}"
    )
    if not args.keep:
        if args.file is None:
            path.unlink()
        folder.rmdir()  # its databases went after each run
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
