"""End-to-end runs of the real probe inside the censorship lab: the control test helper served
from the ctrl namespace, `python3 -m probe run` in the client namespace behind the censor, and
what the run stored (measurements, verdicts, the run record) read back from its SQLite file.

    workspace = ProbeWorkspace.create(Path(tmp))
    with ControlHelper.start(lab, workspace) as helper:
        config = workspace.write_config(helper_url=helper.url, token=helper.token)
        lab.apply(get_scenario("sni_reset"))
        run = run_probe(lab, workspace, config, "sni_reset")
        run.verdict("twitter", "https://twitter.com/")

The probe's consent file, run lock and default database live in the workspace (XDG_* point
there), so a lab run never touches the user's own probe state or another engineer's run lock.
Nothing here asserts: tests and benchmarks decide what the figures mean.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from probe.codec import encode_details
from probe.config import load_settings
from probe.model import Layer, Measurement, Run, Target
from probe.records import Verdict
from probe.resolvers import DEFAULT_RESOLVER_TEXTS
from probe.store import Store
from probe.targets import select_targets
from tests.lab import plan as lab_plan
from tests.lab.lab import Lab
from tests.servers.mmdb import write_mmdb

HELPER_PORT = 8080
# The lab's DoH server: the honest Cloudflare address in inet answers /dns-query on 443.
LAB_DOH_RESOLVER = "https://1.1.1.1/dns-query"
HELPER_READY_TIMEOUT = 20.0
# The helper measures the whole catalog before each run; with the short timeouts below a batch
# takes a few seconds, so this deadline only stops a wedged helper.
HELPER_DEADLINE = 60.0


# What explain() shows of each DNS response or raw packet.
RESPONSE_KEYS = ("addresses", "rcode", "received_ms", "ip_ttl")


@dataclass(frozen=True, slots=True)
class LabTimeouts:
    """The probe's [timeouts] and [dns] second_answer_window, in seconds. Short: the lab is one
    machine, where a working exchange takes milliseconds and a blocked one costs a timeout."""

    # A DoH query is a connect, a TLS handshake and a request in this budget, and a run's first
    # names all open theirs at once against the lab's one-process DoH server (at 1 s they timed
    # out on a busy 2-core machine, failing untouched targets). Below the lab resolv.conf's own
    # 2 s (tests/lab/topology.py: timeout:2 attempts:1), so a dropped query stays the probe's
    # timeout, not the C library's EAI_AGAIN.
    dns: float = 1.8
    connect: float = 1.5
    tls: float = 1.5
    http: float = 3.0
    # Longer than the shipped 0.5 s: on a busy 2-core machine the lab's real answer trails the
    # scapy injector's forgery by 150-400 ms (measured), and a window it misses turns a proven
    # injection into a mere blockpage address.
    second_answer_window: float = 1.0
    # A transfer's sample window ([http] transfer_seconds); the fetch's http timeout caps it.
    transfer_seconds: float = 2.0

    def describe(self) -> str:
        return (
            f"dns {self.dns:g} s, connect {self.connect:g} s, tls {self.tls:g} s, "
            f"http {self.http:g} s, second_answer_window {self.second_answer_window:g} s, "
            f"transfer_seconds {self.transfer_seconds:g} s"
        )


def _toml_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(json.dumps(item) for item in items) + "]"


def probe_config_text(
    timeouts: LabTimeouts,
    *,
    resolvers: Sequence[str] = ("system", LAB_DOH_RESOLVER),
    helper_url: str | None = None,
    token: str | None = None,
    extra: str = "",
) -> str:
    """A config.toml for the lab: the built-in catalog, the given timeouts and resolvers, and a
    [helper] table when a helper is given. `extra` is appended verbatim (more tables)."""
    lines = [
        "# written by tests/lab/e2e.py",
        "[timeouts]",
        f"dns = {timeouts.dns}",
        f"connect = {timeouts.connect}",
        f"tls = {timeouts.tls}",
        f"http = {timeouts.http}",
        "",
        "[dns]",
        f"resolvers = {_toml_list(resolvers)}",
        f"second_answer_window = {timeouts.second_answer_window}",
        "",
        "[http]",
        f"transfer_seconds = {timeouts.transfer_seconds}",
    ]
    if helper_url is not None:
        lines += ["", "[helper]", f"url = {json.dumps(helper_url)}"]
        if token is not None:
            lines.append(f"token = {json.dumps(token)}")
    return "\n".join(lines) + "\n" + extra


@dataclass(frozen=True, slots=True)
class ProbeWorkspace:
    """A directory holding the probe's configs, databases and per-user state for lab runs."""

    root: Path
    timeouts: LabTimeouts = field(default_factory=LabTimeouts)

    @classmethod
    def create(cls, root: Path, timeouts: LabTimeouts | None = None) -> ProbeWorkspace:
        root.mkdir(parents=True, exist_ok=True)
        workspace = cls(root, timeouts or LabTimeouts())
        for sub in ("xdg/config", "xdg/state", "xdg/data", "xdg/cache", "db"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        return workspace

    def environment(self) -> dict[str, str]:
        """What the probe's processes get on top of the lab's environment (SSL_CERT_FILE, ...):
        the per-user directories inside the workspace."""
        xdg = self.root / "xdg"
        return {
            "XDG_CONFIG_HOME": str(xdg / "config"),
            "XDG_STATE_HOME": str(xdg / "state"),
            "XDG_DATA_HOME": str(xdg / "data"),
            "XDG_CACHE_HOME": str(xdg / "cache"),
            "PYTHONUNBUFFERED": "1",
            "PROBE_CONFIG": "",
            "NO_COLOR": "1",
            "COLUMNS": "200",
        }

    def write_config(
        self,
        name: str = "probe.toml",
        *,
        helper_url: str | None = None,
        token: str | None = None,
        resolvers: Sequence[str] = ("system", LAB_DOH_RESOLVER),
        extra: str = "",
    ) -> Path:
        path = self.root / name
        path.write_text(
            probe_config_text(
                self.timeouts, resolvers=resolvers, helper_url=helper_url, token=token, extra=extra
            )
        )
        return path

    def database(self, name: str) -> Path:
        """A fresh database path for one run (an old file of that name is removed)."""
        path = self.root / "db" / f"{name}.db"
        for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            stale.unlink(missing_ok=True)
        return path


# The end-to-end config's extra target: plain HTTP to www.instagram.com (the catalog has only its
# HTTPS page, so the http_reset scenario would hit nothing). Throttling is measured with the
# catalog's own transfer targets, which the lab serves at their paths.
INSTAGRAM_PLAIN = "http://www.instagram.com/"
EXTRA_TARGETS = f"""
[[targets]]
platform = "instagram"
url = "{INSTAGRAM_PLAIN}"
"""


def e2e_config(
    lab: Lab,
    workspace: ProbeWorkspace,
    helper: ControlHelper | None,
    *,
    name: str = "probe.toml",
) -> Path:
    """The config the end-to-end tests and the replay recordings run the probe with: the lab's
    timeouts, the control helper (None: none), the system resolver, the ISP resolver over UDP (a
    forged answer racing the real one shows only on a UDP socket), DoH as the control resolver,
    and EXTRA_TARGETS."""
    return workspace.write_config(
        name,
        helper_url=None if helper is None else helper.url,
        token=None if helper is None else helper.token,
        resolvers=("system", f"udp://{lab.isp_resolver}:53", LAB_DOH_RESOLVER),
        extra=EXTRA_TARGETS,
    )


def default_config(workspace: ProbeWorkspace, *, name: str = "probe-default.toml") -> Path:
    """The config a volunteer who changes nothing runs, in the lab: the built-in resolvers
    (probe.resolvers.DEFAULT_RESOLVER_TEXTS: the system's, DoH to 1.1.1.1 and 8.8.8.8, plain
    UDP to 8.8.8.8, all hosted honestly in the lab's inet), no helper; only the lab's timeouts
    and EXTRA_TARGETS added."""
    return workspace.write_config(name, resolvers=DEFAULT_RESOLVER_TEXTS, extra=EXTRA_TARGETS)


# What the helper's ASN file says of the lab client's address.
LAB_CLIENT_NETWORK = {
    "autonomous_system_number": 58224,
    "autonomous_system_organization": "Iran Telecommunication Company PJS",
    "country": {"iso_code": "IR"},
}


class ControlHelper:
    """`probe helper serve --allow-private` in the lab's ctrl namespace (uncensored), listening on
    the control address, which the client reaches through the censor."""

    def __init__(self, lab: Lab, url: str, token: str, process: subprocess.Popen[bytes]) -> None:
        self.lab = lab
        self.url = url
        self.token = token
        self.process = process

    @classmethod
    def start(
        cls, lab: Lab, workspace: ProbeWorkspace, *, port: int = HELPER_PORT
    ) -> ControlHelper:
        token = secrets.token_urlsafe(32)
        token_file = workspace.root / "helper.token"
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
        # The helper measures like the probe (same timeouts), with the system resolver of ctrl:
        # an honest public resolver in inet.
        # Its own IP-to-ASN file says which network the probe's address belongs to (the lab's
        # client address is made to stand for an Iranian operator's): a real helper would carry
        # GeoLite2-ASN; the probe takes the network from the helper's answer.
        mmdb = write_mmdb(
            workspace.root / "helper-asn.mmdb",
            {f"{lab_plan.CLIENT_ADDRESS}/32": LAB_CLIENT_NETWORK},
        )
        config = workspace.write_config(
            "helper.toml", resolvers=("system",), extra=f'[network]\nmmdb = ["{mmdb}"]\n'
        )
        host = lab.control_address
        argv = [
            sys.executable,
            "-m",
            "probe",
            "helper",
            "serve",
            "--listen",
            f"{host}:{port}",
            "--token-file",
            str(token_file),
            "--allow-private",
            "--config",
            str(config),
            "--deadline",
            str(HELPER_DEADLINE),
        ]
        process = lab.spawn("ctrl", argv, env=workspace.environment())
        helper = cls(lab, f"http://{host}:{port}", token, process)
        helper.wait_ready()
        return helper

    def wait_ready(self, timeout: float = HELPER_READY_TIMEOUT) -> None:
        """Wait until /healthz answers from the client namespace (through the censor)."""
        check = json.dumps([{"op": "http", "url": f"{self.url}/healthz", "timeout": 1.0}])
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the test helper exited with status {self.process.returncode}")
            done = self.lab.run_in_client(
                [sys.executable, "-m", "tests.lab.netcheck"], input=check, timeout=30
            )
            if done.returncode == 0:
                result = json.loads(done.stdout)[0]
                if result.get("status") == 200:
                    return
                last = str(result)
            else:
                last = done.stderr[-500:]
            time.sleep(0.2)
        raise RuntimeError(f"the test helper at {self.url} did not answer in {timeout} s: {last}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def __enter__(self) -> ControlHelper:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(frozen=True, slots=True)
class ProbeRun:
    """One `probe run` in the client: its exit, output and what it stored."""

    name: str
    exit_code: int
    stdout: str
    stderr: str
    wall_seconds: float
    spawned_at: datetime  # UTC, just before the process was started
    database: Path
    document: dict[str, Any] | None
    run: Run | None
    measurements: tuple[Measurement, ...]
    verdicts: tuple[Verdict, ...]

    @property
    def measurement_seconds(self) -> float | None:
        """The measurement phase alone: the stored run's started_at -> finished_at."""
        if self.run is None or self.run.finished_at is None:
            return None
        return (self.run.finished_at - self.run.started_at).total_seconds()

    @property
    def before_measuring_seconds(self) -> float | None:
        """Spawn -> the run's started_at: interpreter start, config, the helper, network identity
        (the namespaces share the host's clock)."""
        if self.run is None:
            return None
        return (self.run.started_at - self.spawned_at).total_seconds()

    def of(
        self,
        target: str,
        layer: Layer | None = None,
        *,
        differential: str | None = None,
    ) -> list[Measurement]:
        """The target's measurements (of one layer); `differential` selects an A/B half by its
        kind ("sni", "host", "protocol"), None the target's own measurements only."""
        return [
            m
            for m in self.measurements
            if m.target == target
            and (layer is None or m.layer is layer)
            and m.observation.differential_kind == differential
        ]

    def verdict(self, platform: str, target: str) -> Verdict:
        found = [v for v in self.verdicts if v.platform == platform and v.target == target]
        if len(found) != 1:
            raise LookupError(f"{len(found)} verdicts for {platform} {target} in run {self.name}")
        return found[0]

    def blocked(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.status.value == "blocked"]

    def explain(self, target: str | None = None) -> str:
        """A compact dump for assertion messages: the exit, stderr's tail, the verdicts (of one
        target, with its measurements)."""
        lines = [f"run {self.name}: exit {self.exit_code}", self.stderr[-1500:]]
        for v in self.verdicts:
            if target is None or v.target == target:
                lines.append(
                    f"  verdict {v.platform} {v.target}: {v.status.value} {v.technique} "
                    f"{v.confidence} ({v.rule_id}: {v.detail})"
                )
        if target is not None:
            for m in self.measurements:
                if m.target == target:
                    o = m.observation
                    kind = o.differential_kind
                    lines.append(
                        f"  {o.layer.value} {o.endpoint} {kind or ''} -> {o.failure} "
                        f"{o.failed_operation} {o.duration_ms:.0f} ms"
                    )
                    # The JSON view: DNS answers and raw captures both keep `responses` there.
                    responses = encode_details(o.details).get("responses")
                    for r in responses if isinstance(responses, list) else ():
                        if not isinstance(r, dict):
                            continue
                        # DNS answers as they arrived, or raw packets: what a race looked like.
                        shown = {k: r.get(k) for k in RESPONSE_KEYS}
                        lines.append(f"    response {shown}")
        return "\n".join(lines)


def planned_targets(config: Path) -> tuple[Target, ...]:
    """The targets (not the control sites) a `probe run --config config` measures."""
    return select_targets(load_settings(config)).targets


def run_probe(
    lab: Lab,
    workspace: ProbeWorkspace,
    config: Path,
    name: str,
    *,
    platforms: Sequence[str] = (),
    timeout: float = 180.0,
) -> ProbeRun:
    """`python3 -m probe run --json` in the client namespace into a fresh database named `name`,
    then everything that run stored, read back."""
    database = workspace.database(name)
    argv = [
        sys.executable,
        "-m",
        "probe",
        "run",
        "--config",
        str(config),
        "--db",
        str(database),
        "--json",
        "--i-understand-the-risks",
    ]
    for platform in platforms:
        argv += ["--platform", platform]
    spawned_at = datetime.now(UTC)
    started = time.monotonic()
    done = lab.run_in_client(argv, env=workspace.environment(), timeout=timeout)
    wall = time.monotonic() - started
    document: dict[str, Any] | None
    try:
        document = json.loads(done.stdout)
    except ValueError:
        document = None
    run: Run | None = None
    measurements: tuple[Measurement, ...] = ()
    verdicts: tuple[Verdict, ...] = ()
    if database.exists():
        with Store.open(database) as store:
            newest = [r.id for r in store.runs(newest_first=True, limit=1)]
            run_id = document.get("run_id") if document else next(iter(newest), None)
            if isinstance(run_id, str):
                run = store.get_run(run_id)
                measurements = tuple(store.measurements(run_id=run_id))
                verdicts = tuple(store.verdicts(run_id=run_id))
    return ProbeRun(
        name=name,
        exit_code=done.returncode,
        stdout=done.stdout,
        stderr=done.stderr,
        wall_seconds=wall,
        spawned_at=spawned_at,
        database=database,
        document=document,
        run=run,
        measurements=measurements,
        verdicts=verdicts,
    )
