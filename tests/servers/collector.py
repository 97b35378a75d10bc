"""A collector for tests and benchmarks: `probe collector serve` as a child process (so it can be
killed with SIGKILL), and probe databases filled with runs, measurements and verdicts to upload."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from probe.model import (
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

START_TIMEOUT_S = 30.0
_LISTENING = re.compile(rb"collector listening on https?://[^:]+:(\d+)")


class CollectorProcess:
    """`python3 -m probe collector serve` on 127.0.0.1 (port 0: the OS picks one)."""

    def __init__(self, database: str, port: int = 0, log: Path | None = None) -> None:
        self.database = database
        self.port = port
        self.log = log
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> CollectorProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "probe",
                "collector",
                "serve",
                "--db",
                self.database,
                "--listen",
                f"127.0.0.1:{self.port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        assert self._process.stderr is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        seen = b""
        while time.monotonic() < deadline:
            line = self._process.stderr.readline()
            if not line:
                break
            seen += line
            found = _LISTENING.search(line)
            if found:
                self.port = int(found.group(1))
                return self
        self.kill()
        raise RuntimeError(f"the collector did not start: {seen.decode(errors='replace')}")

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flushing (an open transaction is rolled back by the server)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
        if process is not None and process.stderr is not None:
            process.stderr.close()

    def stop(self) -> str:
        """SIGINT, as Ctrl-C or systemd would; returns what the collector wrote to stderr."""
        process, self._process = self._process, None
        if process is None:
            return ""
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        assert process.stderr is not None
        rest = process.stderr.read()
        process.stderr.close()
        return rest.decode(errors="replace")

    def __enter__(self) -> CollectorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def new_id() -> str:
    return uuid.uuid4().hex


def fill_probe(
    store: Store,
    *,
    runs: int = 2,
    measurements: int = 10,
    asn: int | None = 44244,
    start: datetime | None = None,
    platform: str = "telegram",
    failure: str | None = "connection_reset",
    with_verdicts: bool = True,
) -> list[Run]:
    """Finished runs of this store's probe, each with `measurements` TLS measurements of
    distinct targets and one verdict per target."""
    start = start or datetime.now(UTC) - timedelta(hours=runs + 1)
    made = []
    for r in range(runs):
        began = start + timedelta(hours=r)
        run = Run(
            id=new_id(),
            probe_id=store.probe_id(),
            started_at=began,
            software_version="0.1.0",
            config_digest="test",
            network=NetworkInfo(asn=asn, country="IR", source="helper"),
            finished_at=began + timedelta(minutes=2),
            connectivity=Connectivity.OK,
        )
        store.start_run(run)
        batch = [
            Measurement(
                run_id=run.id,
                platform=platform,
                target=f"target-{i}",
                id=new_id(),
                observation=Observation(
                    layer=Layer.TLS,
                    endpoint=f"192.0.2.{i % 250 + 1}:443",
                    started_at=began + timedelta(seconds=1 + i / 1000),
                    duration_ms=12.5,
                    failure=failure,
                    failed_operation=None if failure is None else Operation.TLS_HANDSHAKE,
                    details=TlsHandshake(f"192.0.2.{i % 250 + 1}", 443, f"t{i}.example"),
                ),
            )
            for i in range(measurements)
        ]
        store.save_measurements(batch)
        if with_verdicts:
            store.save_verdicts(
                run.id,
                [
                    Verdict(
                        run_id=run.id,
                        probe_id=run.probe_id,
                        measured_at=began,
                        asn=asn,
                        country="IR",
                        platform=platform,
                        target=m.target,
                        status=Status.INCONCLUSIVE,
                        technique=None,
                        confidence=None,
                        rule_id="control.missing",
                        rules_version="2025.4",
                        evidence=(m.id,),
                        detail="the target failed and no control measured it",
                    )
                    for m in batch
                ],
            )
        made.append(run)
    return made
