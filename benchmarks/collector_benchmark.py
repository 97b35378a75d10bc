"""Benchmark: upload ingest into PostgreSQL from many probes at once, and the collector's peak RSS.

A throwaway PostgreSQL server (tests/servers/postgres.py: 127.0.0.1, fsync and synchronous_commit
off, as the tests run it, so the figures are an upper bound for a durable server) and one
`--instances` collector processes sharing one port with SO_REUSEPORT (`probe.collector.server.
serve`, the code of `probe collector serve --reuse-port`; default 2, one per core of a 2-core
host, as the collector is stateless), with the per-token rate limit lifted so that the benchmark
measures ingest, not throttling. 50 probes,
each with its own token, upload concurrently from a second process: every probe sends `--batches`
gzip batches of `--batch-size` measurements (TLS handshakes with realistic details) and one
verdict per 4 measurements, as the uploader builds them. The batches are encoded before the clock
starts; the figure is measurements stored per second of wall time from the first request to the
last acknowledgement, checked against the rows in PostgreSQL afterwards. Peak RSS is each
collector process's VmHWM (/proc/PID/status). Each of `--repeat` trials uploads everything into a
new database through new collector processes; the median rate is shown with the minimum and
maximum, and the machine's load average beside each trial (the host is shared). CPU per
measurement: the collectors' (/proc/PID/stat) and PostgreSQL's (the postmaster, the backends it
reaped and the live ones) over each trial.

    python3 benchmarks/collector_benchmark.py [--probes 50] [--batches 20] [--batch-size 1000]
        [--instances 2] [--repeat 3] [--concurrent-batches N [N ...]]

Default scale: 50 probes x 20 batches x 1,000 = 1,000,000 measurements (and 250,000 verdicts).
Goals: >= 20,000 measurements/s; collector peak RSS < 300 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import textwrap
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from probe.collector.batch import compress, encode_batch
from probe.collector.server import BATCHES_PATH
from probe.model import (
    Certificate,
    Connectivity,
    Layer,
    Measurement,
    NetworkInfo,
    Observation,
    Operation,
    Run,
    TlsHandshake,
)
from probe.records import Status, Verdict
from probe.store import Store
from probe.store.uploads import Batch, add_token
from tests.servers.postgres import PostgresServer, find_binaries

GOAL_RATE = 20_000.0
GOAL_RSS = 300 * 1024 * 1024

_COLLECTOR = textwrap.dedent(
    """
    import sys
    from probe.collector.server import CollectorLimits, serve
    limits = CollectorLimits(rate_per_s=1e6, burst=1_000_000)
    if len(sys.argv) > 3:
        limits = CollectorLimits(
            rate_per_s=1e6, burst=1_000_000, concurrent_batches=int(sys.argv[3])
        )
    def ready(port):
        print(port, flush=True)
    serve(sys.argv[1], "127.0.0.1", int(sys.argv[2]), limits=limits, reuse_port=True, ready=ready)
    """
)


def _id() -> str:
    return uuid.uuid4().hex


def probe_batches(probe: int, batches: int, size: int, start: datetime) -> list[bytes]:
    """One probe's upload bodies: a run per batch, `size` measurements, size/4 verdicts."""
    probe_id = _id()
    bodies = []
    for b in range(batches):
        began = start + timedelta(minutes=b)
        run = Run(
            id=_id(),
            probe_id=probe_id,
            started_at=began,
            software_version="0.1.0",
            config_digest="bench",
            network=NetworkInfo(asn=10_000 + probe, country="IR", source="helper"),
            finished_at=began + timedelta(seconds=50),
            connectivity=Connectivity.OK,
        )
        measurements = [
            Measurement(
                run_id=run.id,
                platform="telegram",
                target=f"target-{i % 40}",
                id=_id(),
                observation=Observation(
                    layer=Layer.TLS,
                    endpoint=f"149.154.{i % 200}.{i % 250}:443",
                    started_at=began + timedelta(milliseconds=i),
                    duration_ms=31.25 + i % 17,
                    failure="connection_reset" if i % 3 else None,
                    failed_operation=Operation.TLS_HANDSHAKE if i % 3 else None,
                    details=TlsHandshake(
                        f"149.154.{i % 200}.{i % 250}",
                        443,
                        f"t{i % 40}.example.org",
                        version=None if i % 3 else "TLSv1.3",
                        cipher=None if i % 3 else "TLS_AES_128_GCM_SHA256",
                        certificates=()
                        if i % 3
                        else (Certificate("ab" * 32, subject="CN=example.org"),),
                    ),
                ),
            )
            for i in range(size)
        ]
        verdicts = [
            Verdict(
                run_id=run.id,
                probe_id=probe_id,
                measured_at=began,
                asn=run.network.asn,
                country="IR",
                platform="telegram",
                target=f"target-{t}",
                status=Status.BLOCKED,
                technique="tls.sni_reset",
                confidence=None,
                rule_id="tls.sni_reset",
                rules_version="2025.4",
                evidence=tuple(m.id for m in measurements[t::40][:5]),
                detail="",
            )
            for t in range(size // 4 if size >= 4 else 0)
        ]
        bodies.append(compress(encode_batch(Batch((run,), tuple(measurements), tuple(verdicts)))))
    return bodies


async def upload_all(url: str, tokens: list[str], bodies: list[list[bytes]]) -> float:
    async def one(token: str, mine: list[bytes], session: aiohttp.ClientSession) -> None:
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Encoding": "gzip",
            "Content-Type": "application/json",
        }
        for body in mine:
            async with session.post(url + BATCHES_PATH, data=body, headers=headers) as response:
                text = await response.text()
                if response.status != 200:
                    raise RuntimeError(f"upload failed: {response.status} {text}")

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        began = time.perf_counter()
        await asyncio.gather(*(one(t, b, session) for t, b in zip(tokens, bodies, strict=True)))
        return time.perf_counter() - began


def cpu_seconds(pid: int, *, reaped: bool = False) -> float:
    """User + system CPU of a live process (/proc/PID/stat fields 14 and 15, in clock ticks);
    `reaped`: with that of its children it has waited for (fields 16 and 17)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    used = sum(int(f) for f in fields[11 : 15 if reaped else 13])
    return used / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds(postmaster: int) -> float:
    """CPU of a PostgreSQL server so far: the postmaster, the backends it has reaped and those
    still running (its live children)."""
    used = cpu_seconds(postmaster, reaped=True)
    for task in Path("/proc").iterdir():
        if not task.name.isdigit():
            continue
        try:
            stat = (task / "stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == postmaster:
                used += cpu_seconds(int(task.name))
        except (OSError, ValueError):
            continue  # exited meanwhile
    return used


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages (/proc/loadavg), to print beside every figure."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@dataclass(frozen=True, slots=True)
class Trial:
    """One measured upload of every batch into a fresh database."""

    seconds: float
    stored: int
    verdicts: int
    collector_cpu: float
    postgres_cpu: float
    rss: list[int]
    load_before: str
    load_after: str


def trial(
    server: PostgresServer, bodies: list[list[bytes]], instances: int, slots: int | None
) -> Trial:
    """Start `instances` collectors on a new database, upload everything, count what arrived."""
    url = server.create_database()
    with Store.open(url) as store:
        tokens = [add_token(store, f"probe-{p}")[1] for p in range(len(bodies))]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    collectors: list[subprocess.Popen[str]] = []
    try:
        port = 0
        for _ in range(instances):
            collector = subprocess.Popen(
                [sys.executable, "-c", _COLLECTOR, url, str(port)]
                + ([] if slots is None else [str(slots)]),
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            collectors.append(collector)
            assert collector.stdout is not None
            port = int(collector.stdout.readline())
        postmaster = server.pid
        load_before = load_average()
        collector_before = sum(cpu_seconds(c.pid) for c in collectors)
        postgres_before = postgres_cpu_seconds(postmaster)
        seconds = asyncio.run(upload_all(f"http://127.0.0.1:{port}", tokens, bodies))
        postgres_cpu = postgres_cpu_seconds(postmaster) - postgres_before
        collector_cpu = sum(cpu_seconds(c.pid) for c in collectors) - collector_before
        load_after = load_average()
        rss = [peak_rss(collector.pid) for collector in collectors]
        with Store.open(url) as store, store._transaction() as conn:
            stored = conn.exec_driver_sql("SELECT count(*) FROM measurements").scalar_one()
            verdicts = conn.exec_driver_sql("SELECT count(*) FROM verdicts").scalar_one()
    finally:
        for collector in collectors:
            collector.terminate()
            collector.wait()
    return Trial(
        seconds, stored, verdicts, collector_cpu, postgres_cpu, rss, load_before, load_after
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=50)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument(
        "--instances", type=int, default=2, help="collector processes sharing the port"
    )
    parser.add_argument(
        "--concurrent-batches",
        type=int,
        nargs="*",
        help="CollectorLimits.concurrent_batches (default: its default); several values are "
        "tried in turn, each --repeat times, interleaved",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="trials (each into a new database); median shown"
    )
    args = parser.parse_args()
    bindir = find_binaries()
    if bindir is None:
        print("PostgreSQL binaries not found")
        return 2
    total = args.probes * args.batches * args.batch_size
    print(
        f"scale: {args.probes} probes x {args.batches} batches x {args.batch_size} "
        f"measurements = {total:,} measurements, {total // 4:,} verdicts; "
        f"{args.instances} collector(s), {args.repeat} trial(s)"
    )
    began = time.perf_counter()
    start = datetime.now(UTC) - timedelta(days=2)
    bodies = [probe_batches(p, args.batches, args.batch_size, start) for p in range(args.probes)]
    size = sum(len(b) for probe in bodies for b in probe)
    print(f"encoded in {time.perf_counter() - began:.1f} s: {size / 1e6:.1f} MB gzip on the wire")

    server = PostgresServer(bindir)
    server.start()
    settings: list[int | None] = list(args.concurrent_batches or [None])
    trials: dict[int | None, list[Trial]] = {setting: [] for setting in settings}
    try:
        for number in range(1, args.repeat + 1):
            for setting in settings:
                one = trial(server, bodies, args.instances, setting)
                trials[setting].append(one)
                shown = ", ".join(f"{r / 2**20:.0f}" for r in one.rss)
                print(
                    f"trial {number}{_label(setting)}: {total / one.seconds:,.0f} "
                    f"measurements/s ({one.seconds:.1f} s); CPU per measurement: collectors "
                    f"{one.collector_cpu / total * 1e6:.0f} us, PostgreSQL "
                    f"{one.postgres_cpu / total * 1e6:.0f} us; peak RSS {shown} MB; "
                    f"load {one.load_before} -> {one.load_after}",
                    flush=True,
                )
    finally:
        server.stop()
    results = [summarise(setting, trials[setting], total) for setting in settings]
    ok = all(results)
    print("goals met" if ok else "goals NOT met")
    return 0 if ok else 1


def _label(setting: int | None) -> str:
    return "" if setting is None else f" (concurrent_batches={setting})"


def summarise(setting: int | None, trials: list[Trial], total: int) -> bool:
    """Print the median and range of one setting's trials; whether they met the goals."""
    rates = sorted(total / t.seconds for t in trials)
    median = statistics.median(rates)
    rss = max(max(t.rss) for t in trials)
    stored = all(t.stored == total and t.verdicts == total // 4 for t in trials)
    collector_us = statistics.median(t.collector_cpu / total * 1e6 for t in trials)
    postgres_us = statistics.median(t.postgres_cpu / total * 1e6 for t in trials)
    print(f"--{_label(setting)}")
    print(f"stored every measurement and verdict in every trial: {'yes' if stored else 'NO'}")
    print(
        f"ingest: median {median:,.0f} measurements/s (min {rates[0]:,.0f}, max {rates[-1]:,.0f}"
        f", {len(rates)} trials; goal >= {GOAL_RATE:,.0f})"
    )
    print(
        f"CPU per measurement (median): collectors {collector_us:.0f} us, PostgreSQL "
        f"{postgres_us:.0f} us, on {os.cpu_count()} cores"
    )
    print(
        f"collector peak RSS (largest instance, any trial): {rss / 2**20:.0f} MB "
        f"(goal < {GOAL_RSS / 2**20:.0f} MB)"
    )
    return stored and median >= GOAL_RATE and rss < GOAL_RSS


if __name__ == "__main__":
    sys.exit(main())
