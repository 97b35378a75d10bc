"""The censorship lab: network namespaces where real packets cross a real censor.

    with Lab.create() as lab:
        lab.apply(get_scenario("sni_reset"))
        done = lab.run_in_client(["python3", "-m", "probe", "run"])
        lab.clear()

`Lab.create()` builds the topology (see topology.py), issues the lab's certificates, starts the
servers (inet: honest resolvers and sites; censor: ISP resolver, blockpage, interception) and
waits until they listen. `apply()` makes the censor match the given scenarios/techniques,
replacing whatever was on; `clear()` switches everything off. Commands run in the client (behind
the censor) or in the control vantage (attached to inet directly) with SSL_CERT_FILE set to the
lab CA.

Teardown (close, also on exceptions, atexit, SIGINT/SIGTERM/SIGHUP) kills the lab's processes by
PID, deletes its namespaces and /etc/netns files and its temporary directory.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from probe.model import Target
from tests.lab import plan as lab_plan
from tests.lab.pki import LabPki, make_pki
from tests.lab.plan import AddressPlan, build_plan, default_targets
from tests.lab.scenarios import Scenario
from tests.lab.servers.common import READY_LINE
from tests.lab.techniques import (
    CLIENT_IFACE,
    UPLINK_IFACE,
    CensorState,
    Technique,
    compile_state,
)
from tests.lab.topology import LabError, Namespace, Topology, new_prefix, sweep_stale

REPO_ROOT = Path(__file__).resolve().parents[2]
BIG_BYTES = 2 * 1024 * 1024
READY_TIMEOUT = 20.0
_STOP_GRACE = 2.0
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def unavailable_reason() -> str | None:
    """Why the lab cannot run here (None when it can): it needs root, iproute2 and iptables."""
    if os.geteuid() != 0:
        return "the censorship lab needs root (network namespaces, iptables, tc)"
    for tool, package in (("ip", "iproute2"), ("tc", "iproute2"), ("iptables-restore", "iptables")):
        if shutil.which(tool) is None:
            return f"the censorship lab needs {tool} (apt-get install {package})"
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return f"`ip netns` is unavailable: {done.stderr.strip()}"
    return None


# Live labs, torn down by atexit and by the signal handlers below; each with the signals that
# tear it down (Lab.create's `signals`).
_LIVE: dict[int, Lab] = {}
_SIGNALS_OF: dict[int, frozenset[int]] = {}
_PREVIOUS_HANDLERS: dict[int, Any] = {}
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_atexit_registered = False
# A signal that arrives while a teardown runs waits for it to finish, then is delivered.
_teardowns_running = 0
_pending_signals: list[int] = []


def _teardown_all(signum: int | None = None) -> None:
    """Tear down every live lab (`signum`: only those it tears down)."""
    for key, lab in list(_LIVE.items()):
        if signum is None or signum in _SIGNALS_OF.get(key, frozenset()):
            lab.close()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """Tear down every lab this signal is for, then let the signal do what it would have done.
    A lab that left the signal to its caller (the pytest session's, SIGINT) stays up: a lab made
    with it beside that one installed this handler, which outlives it while the other lives."""
    if _teardowns_running:
        _pending_signals.append(signum)
        return
    previous = _PREVIOUS_HANDLERS.get(signum, signal.SIG_DFL)
    _teardown_all(signum)
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _register(lab: Lab, signals: Sequence[int]) -> None:
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(_teardown_all)
        _atexit_registered = True
    if threading.current_thread() is threading.main_thread():
        for signum in signals:
            if signum not in _PREVIOUS_HANDLERS:
                _PREVIOUS_HANDLERS[signum] = signal.signal(signum, _on_signal)
    _LIVE[id(lab)] = lab
    _SIGNALS_OF[id(lab)] = frozenset(signals)


def _unregister(lab: Lab) -> None:
    _LIVE.pop(id(lab), None)
    _SIGNALS_OF.pop(id(lab), None)
    if threading.current_thread() is not threading.main_thread():
        return
    wanted = frozenset().union(*_SIGNALS_OF.values())
    for signum, previous in list(_PREVIOUS_HANDLERS.items()):
        if signum in wanted:
            continue
        if signal.getsignal(signum) is _on_signal:
            signal.signal(signum, previous)
        del _PREVIOUS_HANDLERS[signum]


class Lab:
    """A running lab. Build it with `Lab.create()`; use it as a context manager."""

    def __init__(self, topology: Topology, address_plan: AddressPlan, workdir: Path) -> None:
        self.topology = topology
        self.plan = address_plan
        self.workdir = workdir
        self.pki: LabPki | None = None
        self.active: tuple[Scenario | Technique, ...] = ()
        self.bring_up_seconds: float | None = None
        self.teardown_seconds: float | None = None
        self._servers: dict[str, subprocess.Popen[str]] = {}
        self._spawned: list[subprocess.Popen[Any]] = []
        self._realised: dict[str, object] = {}
        self._closed = False

    # -- life cycle -------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        targets: Sequence[Target] | None = None,
        *,
        extra_hosts: Sequence[str] = (),
        ready_timeout: float = READY_TIMEOUT,
        signals: Sequence[int] = HANDLED_SIGNALS,
    ) -> Lab:
        """Build and start a lab hosting `targets` (default: the probe's built-in catalog).
        Any of `signals` that reaches the process tears every live lab down before it does what
        it would have done; leave out one the caller turns into a teardown of its own (pytest's
        KeyboardInterrupt unwinds the fixture that holds the lab)."""
        reason = unavailable_reason()
        if reason is not None:
            raise LabError(reason)
        started = time.monotonic()
        sweep_stale()
        address_plan = build_plan(default_targets() if targets is None else targets, extra_hosts)
        prefix = new_prefix()
        workdir = Path(tempfile.mkdtemp(prefix=f"censorprobe-lab-{prefix}-"))
        lab = cls(Topology(prefix), address_plan, workdir)
        _register(lab, signals)
        try:
            lab._bring_up(ready_timeout)
        except BaseException:
            lab.close()
            raise
        lab.bring_up_seconds = round(time.monotonic() - started, 3)
        return lab

    def _bring_up(self, ready_timeout: float) -> None:
        self.topology.build(self.plan, self.workdir)
        self.pki = make_pki(
            self.workdir / "pki", self.plan.tls_identities, other_site=lab_plan.OTHER_SITE_NAME
        )
        inet_config = {
            "records": {name: list(addrs) for name, addrs in self.plan.records.items()},
            "resolvers": list(self.plan.resolvers),
            "listeners": [[s.address, s.port, str(s.service)] for s in self.plan.listeners],
            "server_chain": str(self.pki.server_chain),
            "other_site": [lab_plan.OTHER_SITE_ADDRESS, str(self.pki.other_site_chain)],
            "big_bytes": BIG_BYTES,
            "bulk_paths": list(self.plan.bulk_paths),
            "rules_file": str(self.inet_rules_path),
            "delay_exempt_network": f"{lab_plan.CONTROL_ADDRESS}/32",
        }
        self._write_atomic(self.inet_rules_path, CensorState().inet_rules())
        self._write_atomic(self.resolver_rules_path, CensorState().resolver_rules())
        isp_config = {
            "resolver": lab_plan.ISP_RESOLVER,
            "upstream": self.plan.resolvers[0],
            "rules_file": str(self.resolver_rules_path),
            "blockpage_addresses": list(lab_plan.BLOCKPAGE_ADDRESSES),
            "interception": {
                "address": lab_plan.CENSOR_CLIENT_SIDE,
                "port": lab_plan.INTERCEPTION_PORT,
                "chain": str(self.pki.interception_chain),
            },
        }
        deadline = time.monotonic() + ready_timeout
        self._start_server("inet", self.topology.inet, "tests.lab.servers.inet", inet_config)
        self._start_server("isp", self.topology.censor, "tests.lab.servers.isp", isp_config)
        for role in ("inet", "isp"):
            self._wait_ready(role, deadline)
        self._realise(CensorState())

    def close(self) -> None:
        """Tear everything down; safe to call twice. Never raises, except that a signal which
        arrived during the teardown is delivered once it is done."""
        global _teardowns_running
        if self._closed:
            return
        self._closed = True
        _teardowns_running += 1
        try:
            self._teardown()
        finally:
            _teardowns_running -= 1
            _unregister(self)
        if not _teardowns_running and _pending_signals:
            pending = list(dict.fromkeys(_pending_signals))
            _pending_signals.clear()
            for signum in pending:
                os.kill(os.getpid(), signum)

    def _teardown(self) -> None:
        started = time.monotonic()
        problems: list[str] = []
        processes = [*self._spawned, *self._servers.values()]
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=_STOP_GRACE)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=_STOP_GRACE)
            if process.stdout is not None:
                process.stdout.close()
        try:
            problems += self.topology.destroy()
        except Exception as exc:  # teardown must go on whatever happens
            problems.append(f"destroying namespaces: {exc!r}")
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.teardown_seconds = round(time.monotonic() - started, 3)
        if problems:
            warnings.warn(f"lab {self.prefix} teardown: {'; '.join(problems)}", stacklevel=2)

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- what it is ----------------------------------------------------------------------------

    @property
    def prefix(self) -> str:
        return self.topology.prefix

    @property
    def client_ns(self) -> str:
        return self.topology.client.name

    @property
    def censor_ns(self) -> str:
        return self.topology.censor.name

    @property
    def inet_ns(self) -> str:
        return self.topology.inet.name

    @property
    def control_ns(self) -> str:
        return self.topology.ctrl.name

    @property
    def namespaces(self) -> tuple[str, ...]:
        return tuple(ns.name for ns in self.topology.namespaces)

    @property
    def ca_file(self) -> Path:
        """The lab CA (PEM): what the probe must trust (SSL_CERT_FILE)."""
        assert self.pki is not None
        return self.pki.ca_file

    @property
    def interception_ca_file(self) -> Path:
        assert self.pki is not None
        return self.pki.interception_ca_file

    @property
    def isp_resolver(self) -> str:
        return lab_plan.ISP_RESOLVER

    @property
    def public_resolvers(self) -> tuple[str, ...]:
        return self.plan.resolvers

    @property
    def control_address(self) -> str:
        """The control vantage's address (reachable from the client, through the censor)."""
        return lab_plan.CONTROL_ADDRESS

    @property
    def resolver_rules_path(self) -> Path:
        return self.workdir / "isp-rules.json"

    @property
    def inet_rules_path(self) -> Path:
        return self.workdir / "inet-rules.json"

    def hits(self, scenario: Scenario) -> list[tuple[str, tuple[str, ...]]]:
        """What each technique of the scenario hits here (names, or addresses)."""
        return scenario.hits(self.plan)

    def address_of(self, host: str) -> str:
        """The honest address of a served host name (what the control resolves)."""
        return self.plan.address_of(host)

    def cdn_address_of(self, host: str) -> str:
        return self.plan.cdn_address_of(host)

    def log(self, role: str) -> str:
        """A server's log so far (inet, isp, onpath)."""
        path = self.workdir / f"{role}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- censorship ----------------------------------------------------------------------------

    def apply(self, *items: Scenario | Technique) -> None:
        """Switch the censor to exactly these scenarios/techniques (composed, in order)."""
        self._check_open()
        techniques: list[Technique] = []
        for item in items:
            techniques.extend(item.techniques if isinstance(item, Scenario) else (item,))
        self._realise(compile_state(techniques, self.plan))
        self.active = tuple(items)

    def clear(self) -> None:
        """Switch every technique off: the clean network."""
        self.apply()

    def _realise(self, state: CensorState) -> None:
        censor, inet = self.topology.censor, self.topology.inet
        self._once("uplink", state.uplink_down, lambda: self._set_uplink(not state.uplink_down))
        ruleset = state.censor_ruleset()
        self._once("censor", ruleset, lambda: censor.run(["iptables-restore"], input=ruleset))
        inet_rules = state.inet_ruleset()
        self._once("inet", inet_rules, lambda: inet.run(["iptables-restore"], input=inet_rules))
        tc = state.tc_commands()
        self._once("tc", tc, lambda: self._set_shaping(tc))
        rules = state.resolver_rules()
        self._once("rules", rules, lambda: self._write_atomic(self.resolver_rules_path, rules))
        delay = state.inet_rules()
        self._once("delay", delay, lambda: self._write_atomic(self.inet_rules_path, delay))
        injector = state.injector_config()
        self._once("injector", json.dumps(injector), lambda: self._switch_injector(injector))

    def _once(self, key: str, desired: object, action: Callable[[], object]) -> None:
        """Run `action` unless `desired` is what was realised last time."""
        if key in self._realised and self._realised[key] == desired:
            return
        self._realised.pop(key, None)
        action()
        self._realised[key] = desired

    def _set_shaping(self, commands: list[str]) -> None:
        censor = self.topology.censor
        for dev in (CLIENT_IFACE, UPLINK_IFACE):
            censor.run(["tc", "qdisc", "del", "dev", dev, "root"], check=False)
        if commands:
            censor.run(["tc", "-batch", "-"], input="\n".join(commands) + "\n")

    def _set_uplink(self, up: bool) -> None:
        # The censor's side goes down: the client keeps its address and routes but loses carrier.
        self.topology.censor.ip_batch([f"link set {CLIENT_IFACE} {'up' if up else 'down'}"])
        if up:
            # Neighbour entries that failed while the link was dead would keep the client
            # unreachable for seconds more.
            self.topology.client.ip_batch(["neigh flush dev eth0"])
            self.topology.censor.ip_batch([f"neigh flush dev {CLIENT_IFACE}"])

    def _switch_injector(self, config: dict[str, object] | None) -> None:
        self._stop_server("onpath")
        if config is not None:
            self._start_server("onpath", self.topology.censor, "tests.lab.servers.onpath", config)
            self._wait_ready("onpath", time.monotonic() + READY_TIMEOUT)

    # -- processes -----------------------------------------------------------------------------

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment lab commands get: the lab CA as SSL_CERT_FILE, the repository on
        PYTHONPATH, no proxy variables."""
        env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARIABLES}
        python_path = [str(REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(":"))]
        env["PYTHONPATH"] = ":".join(dict.fromkeys(python_path))
        if self.pki is not None:
            env["SSL_CERT_FILE"] = str(self.pki.ca_file)
        env.update(extra or {})
        return env

    def run_in(
        self,
        namespace: Namespace,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 120.0,
        input: str | None = None,
        capture: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        self._check_open()
        return subprocess.run(
            namespace.exec_argv(argv),
            env=self.environment(env),
            input=input,
            capture_output=capture,
            text=True,
            timeout=timeout,
            cwd=REPO_ROOT,
            check=False,
        )

    def run_in_client(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 120.0,
        input: str | None = None,
        capture: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the client namespace (behind the censor)."""
        return self.run_in(
            self.topology.client, argv, env=env, timeout=timeout, input=input, capture=capture
        )

    def run_in_control(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 120.0,
        input: str | None = None,
        capture: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the control vantage (uncensored, attached to inet)."""
        return self.run_in(
            self.topology.ctrl, argv, env=env, timeout=timeout, input=input, capture=capture
        )

    def spawn(
        self, vantage: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start a background process in a lab namespace ("client", "ctrl", "inet", "censor");
        the lab kills it (by PID) on teardown."""
        self._check_open()
        process = subprocess.Popen(
            self.topology.namespace(vantage).exec_argv(argv),
            env=self.environment(env),
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._spawned.append(process)
        return process

    def _start_server(self, role: str, ns: Namespace, module: str, config: object) -> None:
        config_path = self.workdir / f"{role}.json"
        config_path.write_text(json.dumps(config))
        with open(self.workdir / f"{role}.log", "a") as log:
            # Own session: a Ctrl-C at the terminal reaches the lab, which stops servers itself.
            self._servers[role] = subprocess.Popen(
                ns.exec_argv([sys.executable, "-m", module, str(config_path)]),
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                cwd=REPO_ROOT,
                env=self.environment({"PYTHONUNBUFFERED": "1"}),
                start_new_session=True,
                text=True,
            )

    def _wait_ready(self, role: str, deadline: float) -> None:
        process = self._servers[role]
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    raise LabError(
                        f"lab server {role} not ready in time:\n{self.log(role)[-2000:]}"
                    )
                line = process.stdout.readline()
                if line.strip() == READY_LINE:
                    return
                if not line:
                    process.wait(timeout=_STOP_GRACE)
                    raise LabError(
                        f"lab server {role} exited ({process.returncode}):\n"
                        f"{self.log(role)[-2000:]}"
                    )

    def _stop_server(self, role: str) -> None:
        process = self._servers.pop(role, None)
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            process.wait(timeout=_STOP_GRACE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=_STOP_GRACE)
        if process.stdout is not None:
            process.stdout.close()

    @staticmethod
    def _write_atomic(path: Path, text: str) -> None:
        temporary = path.with_suffix(".tmp")
        temporary.write_text(text)
        os.replace(temporary, path)

    def _check_open(self) -> None:
        if self._closed:
            raise LabError(f"lab {self.prefix} is closed")
