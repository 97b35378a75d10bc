"""Benchmark: what a researcher runs over a month of data from 50 hosts, on a real SQLite store.

The store: tests.synthetic.month_spec, i.e. 10 networks x 5 hosts, each host running every
hour for 30 days (36,000 runs after the outages), each run testing the 28 targets of the field's
platforms (Telegram's data centres and web, WhatsApp, Facebook/Instagram, Twitter, Signal). Every
target gets one stored measurement (a TCP connect for the data centres, a TLS handshake, a DNS
lookup or an HTTP fetch for the names, with realistic details) and one verdict resting on it,
plus a platform summary per run: 1,003,968 measurements, 1,003,968 verdicts, 180,000 summaries.
One measurement per verdict is the heaviest verdict load for a million measurements (a real run
makes several per target, hence fewer verdicts per million). It is written through the store's
own APIs (start_run, save_verdicts and save_platform_summaries per run, save_measurements in
batches of 50,000), as probes and `probe merge` leave it.

`--details varied` (the default) gives every measurement the timings a real check records (a
TLS handshake's connect_ms and handshake_ms, a DNS response's received_ms and TTLs, an HTTP
fetch's phases and throughput, each drawn from the measurement's id), so nearly every stored
details text is its own, as in a real store. `--details repeated` keeps only what the target
and technique decide: 58 distinct texts across the million, which flatters any cache keyed by
the text. Build both and compare: the varied store is the honest case.

Then, each as its own process (peak RSS measured per process with wait4), pinned to 2 CPUs:
`probe report` over the month (verdicts -> timeline -> events -> tables), the same with --html,
`probe export --what runs|measurements|verdicts|events --csv` of all of it, and the same tables
but events as Parquet (`--parquet DIR`, when pyarrow is installed) beside CSV: time and size.

    python3 benchmarks/analysis_benchmark.py [--db FILE] [--keep] [--days 30] [--seed 7]
        [--details varied|repeated] [--repeat 3] [--only report,measurements-csv]

`--db FILE` reuses a store built before (it is built there when missing). `--repeat N` runs
each command N times and prints the median, min and max of its wall and CPU time (peak RSS: the
largest); `--only` keeps the commands whose key is given (report, report-html, and WHAT-csv or
WHAT-parquet for each table). Goal: every command under 30 s and under 1 GB; issue 16's goals
for a million measurements: `probe report` <= 8 s and the measurements CSV export <= 15 s.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.summaries import summarise
from probe.model import (
    Certificate,
    Details,
    DnsAnswer,
    DnsQuery,
    DnsResponse,
    HttpTimings,
    HttpTransaction,
    Layer,
    Measurement,
    NetworkInfo,
    Observation,
    Operation,
    Run,
    TcpConnect,
    TlsHandshake,
)
from probe.records import Status, Verdict
from probe.store import Store
from tests.synthetic import generate, month_spec

GOAL_SECONDS = 30.0
GOAL_BYTES = 1 << 30
MEASUREMENT_BATCH = 50_000
AS_NAMES = {
    44244: "Irancell",
    197207: "MCI",
    58224: "TCI",
    31549: "Shatel",
    16322: "Pars Online",
    43754: "Asiatech",
    3320: "DTAG",
    7922: "Comcast",
    3215: "Orange",
    2856: "BT",
}


def _timing(seed: int, low: float, spread: float) -> float:
    """A duration in [low, low + spread) ms with 0.1 ms resolution, drawn from `seed`."""
    return round(low + (seed % 100_000) / 100_000 * spread, 1)


def measurement_for(verdict: Verdict, varied: bool = True) -> Measurement:
    """The measurement a verdict rests on (its evidence id), shaped like the real checks'.
    `varied`: with the timings real checks record, drawn from the measurement's id (see the
    module docstring); otherwise the details depend on the target and technique alone."""
    target, technique = verdict.target, verdict.technique
    seed = zlib.crc32(verdict.evidence[0].encode()) if varied else 0
    started = verdict.measured_at + timedelta(milliseconds=7 * (zlib.crc32(target.encode()) % 200))
    failure: str | None = None
    operation: Operation | None = None
    is_address = target[0].isdigit()
    details: Details
    if technique == "dns.bogon":
        layer, endpoint = Layer.DNS, "udp://185.51.200.2:53"
        details = DnsQuery(
            target,
            endpoint,
            "udp",
            rcode="NOERROR",
            addresses=("10.10.34.34",),
            answers=(DnsAnswer("A", "10.10.34.34", 59 - seed % 60 if varied else 59, target),),
            responses=(
                (DnsResponse(_timing(seed, 2.0, 60.0), "NOERROR", ("10.10.34.34",), False, 1),)
                if varied
                else ()
            ),
        )
    elif technique == "http.blockpage":
        layer, endpoint = Layer.HTTP, f"https://{target}/"
        details = HttpTransaction(
            endpoint,
            address="10.10.34.35",
            status=403,
            body_length=312,
            body_sha256="5b3a" * 16,
            title="Blocked",
            headers=(("Content-Type", "text/html"), ("Server", "Peyvandha")),
            body_prefix='<html><iframe src="http://10.10.34.34?type=Invalid Site">',
            timings=(
                HttpTimings(_timing(seed, 20.0, 200.0), _timing(seed >> 7, 30.0, 300.0), None)
                if varied
                else HttpTimings()
            ),
            throughput_kbps=_timing(seed >> 3, 100.0, 9000.0) if varied else None,
        )
    elif is_address or technique == "tcp.timeout":
        layer, endpoint = Layer.TCP, f"{target}:443" if is_address else "157.240.1.35:443"
        details = TcpConnect(endpoint.rsplit(":", 1)[0], 443)
    else:
        layer, endpoint = Layer.TLS, "157.240.1.35:443"
        reset = verdict.status is Status.BLOCKED and technique == "tls.sni_reset"
        details = TlsHandshake(
            "157.240.1.35",
            443,
            target,
            version=None if reset else "TLSv1.3",
            cipher=None if reset else "TLS_AES_128_GCM_SHA256",
            alpn="h2",
            certificates=(Certificate("9f2c" * 16, f"CN={target}", "CN=R3"),),
            verified=True,
            connect_ms=_timing(seed, 10.0, 150.0) if varied else None,
            handshake_ms=_timing(seed >> 9, 20.0, 250.0) if varied and not reset else None,
        )
    if verdict.status is Status.BLOCKED:
        if technique == "tcp.timeout":
            failure, operation = "generic_timeout_error", Operation.CONNECT
        elif technique == "tls.sni_reset":
            failure, operation = "connection_reset", Operation.TLS_HANDSHAKE
    elif verdict.status in (Status.DOWN, Status.INCONCLUSIVE):
        failure, operation = "generic_timeout_error", Operation.CONNECT
    return Measurement(
        run_id=verdict.run_id,
        platform=verdict.platform,
        target=target,
        observation=Observation(
            layer=layer,
            endpoint=endpoint,
            started_at=started,
            duration_ms=(
                5000.0
                if failure == "generic_timeout_error"
                else _timing(seed >> 5, 15.0, 400.0)
                if varied
                else 48.5
            ),
            failure=failure,
            failed_operation=operation,
            details=details,
        ),
        id=verdict.evidence[0],
    )


def build(db: Path, days: int, seed: int, varied: bool = True) -> tuple[int, int, float]:
    """Fill `db` through the store's APIs; return (runs, measurements, seconds)."""
    started = time.perf_counter()
    dataset = generate(month_spec(days=days), seed)
    runs = measurements = 0
    pending: list[Measurement] = []
    with Store.open(db) as store:
        for run_id, group in itertools.groupby(dataset.verdicts, key=lambda v: v.run_id):
            verdicts = list(group)
            first = verdicts[0]
            asn = first.asn or 0
            store.start_run(
                Run(
                    id=run_id,
                    probe_id=first.probe_id,
                    started_at=first.measured_at,
                    software_version="0.1.0",
                    config_digest="benchmark",
                    network=NetworkInfo(
                        asn=asn, as_name=AS_NAMES.get(asn), country=first.country, source="helper"
                    ),
                    finished_at=first.measured_at + timedelta(seconds=40),
                )
            )
            pending.extend(measurement_for(v, varied) for v in verdicts)
            store.save_verdicts(run_id, verdicts)
            store.save_platform_summaries(run_id, summarise(verdicts, [], targets=[]))
            runs += 1
            if len(pending) >= MEASUREMENT_BATCH:
                store.save_measurements(pending)
                measurements += len(pending)
                pending = []
                print(f"  ... {runs:,} runs, {measurements:,} measurements", file=sys.stderr)
        store.save_measurements(pending)
        measurements += len(pending)
    return runs, measurements, time.perf_counter() - started


@dataclass(frozen=True, slots=True)
class Figure:
    label: str
    walls: tuple[float, ...]  # wall clock, one per repetition
    cpus: tuple[float, ...]  # user + system, one per repetition
    peak_rss: int  # bytes, the largest of the repetitions
    output_bytes: int

    @property
    def seconds(self) -> float:
        return statistics.median(self.walls)

    @property
    def cpu_seconds(self) -> float:
        return statistics.median(self.cpus)


# Linux charges a child the peak RSS of the memory it was forked (or vforked) from until its
# exec: measured straight from this process, every command would "peak" at this process's size.
# A minimal interpreter starts each command instead and reports its child's own rusage.
_LAUNCHER = """
import os, sys
pid = os.posix_spawn(sys.executable, [sys.executable, "-m", "probe", *sys.argv[1:]], os.environ)
_, status, usage = os.wait4(pid, 0)
print("RUSAGE", usage.ru_maxrss, usage.ru_utime + usage.ru_stime, file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def measure(label: str, args: list[str], output: Path | None, repeat: int = 1) -> Figure:
    """Run `python3 -m probe ARGS` as its own process `repeat` times: wall time, CPU time and
    peak RSS of each."""
    walls: list[float] = []
    cpus: list[float] = []
    peak = 0
    for _ in range(repeat):
        started = time.perf_counter()
        with open(os.devnull, "wb") as devnull, tempfile.TemporaryFile() as errors:
            code = subprocess.call(
                [sys.executable, "-S", "-c", _LAUNCHER, *args],
                stdout=devnull,
                stderr=errors,
                env={**os.environ, "COLUMNS": "200"},
            )
            walls.append(time.perf_counter() - started)
            errors.seek(0)
            text = errors.read().decode()
        if code != 0:
            raise SystemExit(f"{label} failed ({code}): {text}")
        usage = next(line for line in text.splitlines() if line.startswith("RUSAGE "))
        _, max_rss_kb, cpu = usage.split()
        cpus.append(float(cpu))
        peak = max(peak, int(max_rss_kb) * 1024)
    size = 0
    if output is not None:
        files = output.rglob("*") if output.is_dir() else [output]
        size = sum(p.stat().st_size for p in files if p.is_file())
    return Figure(label, tuple(walls), tuple(cpus), peak, size)


def _spread(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, help="store to reuse (built there when missing)")
    parser.add_argument("--keep", action="store_true", help="keep the exports (and store)")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--details",
        choices=("varied", "repeated"),
        default="varied",
        help="timings in every measurement's details (varied), or none (repeated: 58 texts)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of each command")
    parser.add_argument("--only", help="comma-separated command keys (report, events-csv, ...)")
    args = parser.parse_args()
    only = None if args.only is None else set(args.only.split(","))

    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > 2:
        os.sched_setaffinity(0, cpus[:2])  # children inherit: the goal is for 2 cores
    print(f"CPUs: {len(os.sched_getaffinity(0))} ({os.cpu_count()} on the machine)")

    folder = Path(tempfile.mkdtemp(prefix="analysis-bench-"))
    db = args.db or folder / "month.db"
    if not db.exists():
        print(f"building {db} ({args.details} details) ...", file=sys.stderr)
        runs, measurements, seconds = build(db, args.days, args.seed, args.details == "varied")
        print(
            f"built: {runs:,} runs, {measurements:,} measurements and verdicts in {seconds:.0f} s"
        )
    with Store.open(db) as store:
        first = next(store.runs(), None)
        last = next(store.runs(newest_first=True), None)
    if first is None or last is None:
        raise SystemExit(f"{db} holds no runs")
    size = sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))
    print(f"store: {db} ({size / 1e6:,.0f} MB), runs {first.started_at:%Y-%m-%d} to "
          f"{last.started_at:%Y-%m-%d}")  # fmt: skip

    since = first.started_at.strftime("%Y-%m-%dT%H:%MZ")
    until = (last.started_at + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%MZ")
    period = ["--since", since, "--until", until, "--db", str(db)]
    html = folder / "report.html"
    tables = ("runs", "measurements", "verdicts", "events")
    exports = {(what, "csv"): folder / f"{what}.csv" for what in tables}
    if importlib.util.find_spec("pyarrow") is not None:
        exports.update({(w, "parquet"): folder / w for w in tables if w != "events"})
    else:
        print("pyarrow is not installed: no Parquet figures (pip install '.[parquet]')")
    commands: dict[str, tuple[str, list[str], Path | None]] = {
        "report": ("probe report (the month)", ["report", *period], None),
        "report-html": ("probe report --html", ["report", *period, "--html", str(html)], html),
        **{
            f"{what}-{form}": (
                f"probe export --what {what} --{form}",
                ["export", "--what", what, f"--{form}", str(path), "--db", str(db)],
                path,
            )
            for (what, form), path in exports.items()
        },
    }
    if only is not None and not only <= commands.keys():
        raise SystemExit(f"--only takes {', '.join(commands)}")
    print(f"load average (1 min) at the start: {os.getloadavg()[0]:.2f}")
    figures = [
        measure(label, command, output, args.repeat)
        for key, (label, command, output) in commands.items()
        if only is None or key in only
    ]
    print(f"\n{'command':<43} {'wall':>7} {'CPU':>7} {'peak RSS':>9} {'output':>9}  goal: < "
          f"{GOAL_SECONDS:.0f} s, < {GOAL_BYTES >> 20} MB")  # fmt: skip
    within = True
    for f in figures:
        ok = f.seconds < GOAL_SECONDS and f.peak_rss < GOAL_BYTES
        within &= ok
        output = f"{f.output_bytes / 1e6:,.1f} MB" if f.output_bytes else "-"
        rss = f.peak_rss / 2**20
        print(f"{f.label:<43} {f.seconds:>5.1f} s {f.cpu_seconds:>5.1f} s {rss:>6.0f} MB "
              f"{output:>9}  {'ok' if ok else 'OVER'}")  # fmt: skip
    if args.repeat > 1:
        print(f"\nmedian (min-max) of {args.repeat} runs, seconds:")
        for f in figures:
            print(f"  {f.label:<43} wall {_spread(f.walls)}  CPU {_spread(f.cpus)}")
    load = os.getloadavg()[0]
    print(f"load average (1 min) at the end: {load:.2f} on {len(os.sched_getaffinity(0))} CPUs")
    if exports["measurements", "csv"].exists():
        with exports["measurements", "csv"].open() as handle:
            rows = sum(1 for _ in handle) - 1
        print(f"\nmeasurement rows exported: {rows:,}")
    if args.keep:
        print(f"kept: {folder}")
    else:  # the exports, and the store unless it was given with --db
        shutil.rmtree(folder)
    return 0 if within else 1


if __name__ == "__main__":
    raise SystemExit(main())
