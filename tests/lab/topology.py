"""The lab's network namespaces and links: client -- censor -- inet, and ctrl attached to inet.

    client (eth0 100.64.0.2) ==veth== (lan 100.64.0.1) censor (wan 100.64.1.1)
        ==veth== (isp 100.64.1.2) inet (ctrl 100.64.2.1) ==veth== (eth0 100.64.2.2) ctrl

Network safety: every namespace is named `<prefix>-<role>` with a random `cpl` + 6 hex prefix;
veth pairs are created from inside a lab namespace with their peer placed straight into another
lab namespace, so nothing ever appears in the root namespace; commands touching routes, addresses
or firewalls only run through `ip -n <lab ns>` / `ip netns exec <lab ns>`. Each lab records its
namespaces in a state file first, so a lab whose process died (SIGKILL) is swept by the next one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.lab import plan

ROLES = ("client", "censor", "inet", "ctrl")
PREFIX_PATTERN = re.compile(r"^cpl[0-9a-f]{6}$")
NAMESPACE_PATTERN = re.compile(r"^cpl[0-9a-f]{6}-(client|censor|inet|ctrl)$")
NETNS_ETC = Path("/etc/netns")
STATE_DIR = (
    Path("/run/censorprobe-lab")
    if Path("/run").is_dir()
    else Path(tempfile.gettempdir()) / "censorprobe-lab"
)


class LabError(RuntimeError):
    """The lab could not be built or driven (a tool is missing or a command failed)."""


def run(
    argv: Sequence[str],
    *,
    input: str | None = None,
    timeout: float = 30.0,
    check: bool = True,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a lab command; with `check`, a failure raises LabError quoting its stderr."""
    try:
        done = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(env) if env is not None else None,
            check=False,
        )
    except FileNotFoundError as exc:
        raise LabError(f"{argv[0]} is not installed ({exc})") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"{' '.join(argv)} did not finish within {timeout} s") from None
    if check and done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        raise LabError(f"{' '.join(argv[:8])} failed ({done.returncode}): {detail}")
    return done


@dataclass(frozen=True, slots=True)
class Namespace:
    """One lab network namespace."""

    name: str

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """`argv` wrapped to run inside this namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        timeout: float = 30.0,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        return run(self.exec_argv(argv), input=input, timeout=timeout, check=check)

    def ip_batch(self, commands: Sequence[str]) -> None:
        """Run `ip` commands inside the namespace in one process."""
        if commands:
            run(["ip", "-n", self.name, "-force", "-batch", "-"], input="\n".join(commands) + "\n")

    def sysctl(self, settings: Mapping[str, str]) -> None:
        script = "".join(
            f"echo {value} > /proc/sys/{key.replace('.', '/')}\n" for key, value in settings.items()
        )
        self.run(["sh", "-ec", script])

    def pids(self) -> list[int]:
        done = run(["ip", "netns", "pids", self.name], check=False)
        return [int(word) for word in done.stdout.split() if word.isdigit()]

    @property
    def etc_dir(self) -> Path:
        """Files here are bind-mounted over /etc by `ip netns exec` (resolv.conf)."""
        return NETNS_ETC / self.name


def new_prefix() -> str:
    return "cpl" + secrets.token_hex(3)


def existing_namespaces() -> set[str]:
    done = run(["ip", "netns", "list"], check=False)
    return {line.split()[0] for line in done.stdout.splitlines() if line.strip()}


@dataclass(frozen=True, slots=True)
class Topology:
    """The four namespaces of one lab."""

    prefix: str

    def __post_init__(self) -> None:
        if not PREFIX_PATTERN.match(self.prefix):
            raise ValueError(f"not a lab prefix: {self.prefix!r}")

    def namespace(self, role: str) -> Namespace:
        if role not in ROLES:
            raise ValueError(f"unknown lab role {role!r}")
        return Namespace(f"{self.prefix}-{role}")

    @property
    def client(self) -> Namespace:
        return self.namespace("client")

    @property
    def censor(self) -> Namespace:
        return self.namespace("censor")

    @property
    def inet(self) -> Namespace:
        return self.namespace("inet")

    @property
    def ctrl(self) -> Namespace:
        return self.namespace("ctrl")

    @property
    def namespaces(self) -> tuple[Namespace, ...]:
        return tuple(self.namespace(role) for role in ROLES)

    def build(self, address_plan: plan.AddressPlan, workdir: Path) -> None:
        """Create the namespaces, links, addresses, routes and resolv.conf files."""
        record_state(self, workdir)
        for ns in self.namespaces:
            run(["ip", "netns", "add", ns.name])
        client, censor, inet, ctrl = self.client, self.censor, self.inet, self.ctrl
        n = plan.PREFIX_LENGTH
        # Links are made from inside a lab namespace, the peer placed straight into another one.
        client.ip_batch(
            [
                "link set lo up",
                f"link add eth0 type veth peer name lan netns {censor.name}",
                f"addr add {plan.CLIENT_ADDRESS}/{n} dev eth0",
                "link set eth0 up",
            ]
        )
        censor.ip_batch(
            [
                "link set lo up",
                f"link add wan type veth peer name isp netns {inet.name}",
                f"addr add {plan.CENSOR_CLIENT_SIDE}/{n} dev lan",
                f"addr add {plan.CENSOR_INET_SIDE}/{n} dev wan",
                f"addr add {plan.ISP_RESOLVER}/32 dev lo",
                *(f"addr add {address}/32 dev lo" for address in plan.BLOCKPAGE_ADDRESSES),
                "link set lan up",
                "link set wan up",
            ]
        )
        inet.ip_batch(
            [
                "link set lo up",
                f"link add ctrl type veth peer name eth0 netns {ctrl.name}",
                f"addr add {plan.INET_CENSOR_SIDE}/{n} dev isp",
                f"addr add {plan.INET_CONTROL_SIDE}/{n} dev ctrl",
                *(f"addr add {address}/32 dev lo" for address in address_plan.inet_addresses),
                "link set isp up",
                "link set ctrl up",
            ]
        )
        ctrl.ip_batch(
            [
                "link set lo up",
                f"addr add {plan.CONTROL_ADDRESS}/{n} dev eth0",
                "link set eth0 up",
            ]
        )
        # No reverse-path filtering: the censor forges packets with other hosts' addresses.
        quiet = {"net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.default.rp_filter": "0"}
        forwarding = {**quiet, "net.ipv4.ip_forward": "1"}
        client.sysctl(quiet)
        censor.sysctl(forwarding)
        inet.sysctl(forwarding)
        ctrl.sysctl(quiet)
        client.ip_batch([f"route add default via {plan.CENSOR_CLIENT_SIDE}"])
        censor.ip_batch([f"route add default via {plan.INET_CENSOR_SIDE}"])
        inet.ip_batch(
            [
                f"route add {plan.CLIENT_NETWORK} via {plan.CENSOR_INET_SIDE}",
                f"route add {plan.ISP_RESOLVER}/32 via {plan.CENSOR_INET_SIDE}",
            ]
        )
        ctrl.ip_batch([f"route add default via {plan.INET_CONTROL_SIDE}"])
        first_resolver = address_plan.resolvers[0]
        write_resolv_conf(client, plan.ISP_RESOLVER)
        write_resolv_conf(censor, first_resolver)
        write_resolv_conf(inet, first_resolver)
        write_resolv_conf(ctrl, first_resolver)

    def destroy(self) -> list[str]:
        """Remove everything this lab made; returns the problems met (never raises)."""
        return destroy_namespaces([ns.name for ns in self.namespaces], self.prefix)


def write_resolv_conf(ns: Namespace, resolver: str) -> None:
    # Short timeouts: a dropped query should cost a test seconds, not glibc's 5 s x 2 attempts.
    ns.etc_dir.mkdir(parents=True, exist_ok=True)
    (ns.etc_dir / "resolv.conf").write_text(
        f"# censorprobe lab ({ns.name})\nnameserver {resolver}\noptions timeout:2 attempts:1\n"
    )


def destroy_namespaces(names: Sequence[str], prefix: str) -> list[str]:
    """Kill what still runs in the lab namespaces (by PID), delete them and their /etc/netns
    files, and drop the state file. Only names of the lab pattern are ever touched."""
    problems: list[str] = []
    present = existing_namespaces()
    for name in names:
        if not NAMESPACE_PATTERN.match(name):
            problems.append(f"refusing to touch {name!r}: not a lab namespace")
            continue
        ns = Namespace(name)
        if name in present:
            for pid in ns.pids():
                if pid == os.getpid():
                    continue
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            done = run(["ip", "netns", "del", name], check=False)
            if done.returncode != 0:
                problems.append(f"ip netns del {name}: {done.stderr.strip()}")
        if ns.etc_dir.exists():
            shutil.rmtree(ns.etc_dir, ignore_errors=True)
    if _read_state(prefix).get("created_etc_netns"):
        with contextlib.suppress(OSError):
            NETNS_ETC.rmdir()  # ours, and only if nothing else put files there meanwhile
    with contextlib.suppress(FileNotFoundError):
        state_file(prefix).unlink()
    with contextlib.suppress(OSError):
        STATE_DIR.rmdir()
    return problems


def _read_state(prefix: str) -> dict[str, object]:
    try:
        state = json.loads(state_file(prefix).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def state_file(prefix: str) -> Path:
    return STATE_DIR / f"{prefix}.json"


def record_state(topology: Topology, workdir: Path) -> None:
    """Write who owns these namespaces before creating them, so a crash can be swept later."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    state = {
        "pid": os.getpid(),
        "namespaces": [ns.name for ns in topology.namespaces],
        "workdir": str(workdir),
        # /etc/netns is removed on teardown only by the lab that created it.
        "created_etc_netns": not NETNS_ETC.exists(),
    }
    state_file(topology.prefix).write_text(json.dumps(state))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale() -> list[str]:
    """Remove labs left behind by processes that died without tearing down; returns prefixes."""
    swept: list[str] = []
    if not STATE_DIR.is_dir():
        return swept
    for path in sorted(STATE_DIR.glob("cpl*.json")):
        prefix = path.stem
        if not PREFIX_PATTERN.match(prefix):
            continue
        try:
            state = json.loads(path.read_text())
            pid = int(state["pid"])
            names = [str(name) for name in state["namespaces"]]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if _alive(pid):
            continue
        workdir = Path(str(state.get("workdir", "")))
        destroy_namespaces([n for n in names if n.startswith(f"{prefix}-")], prefix)
        if workdir.name.startswith(f"censorprobe-lab-{prefix}-"):
            shutil.rmtree(workdir, ignore_errors=True)
        swept.append(prefix)
    return swept
