"""Every test gets its own home: the user config, data and state directories (consent record,
run lock, default database, unattended log) point into a temporary folder, never the real ones."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import probe.checks.dns
from probe.resolvers import ResolverSpec
from tests.loops import pytest_asyncio_loop_factories  # noqa: F401  (a pytest hook)

if TYPE_CHECKING:
    from tests.servers.postgres import PostgresServer

# Fixtures shared by several test modules, registered once instead of imported by each.
pytest_plugins = ["tests.sites"]


@pytest.fixture(autouse=True)
def isolated_user_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        for variable, folder in (
            ("XDG_CONFIG_HOME", "config"),
            ("XDG_DATA_HOME", "data"),
            ("XDG_STATE_HOME", "state"),
            ("XDG_CACHE_HOME", "cache"),
        ):
            (home / folder).mkdir()
            patch.setenv(variable, str(home / folder))
        patch.delenv("PROBE_CONFIG", raising=False)
        yield home


class OffMachineResolver(AssertionError):
    """A test asked a resolver that is not on loopback: tests send traffic only to loopback (or
    to the lab's own namespaces, from the probe processes the lab starts there)."""


def _on_loopback(spec: ResolverSpec) -> bool:
    try:
        return spec.address is not None and ipaddress.ip_address(spec.address).is_loopback
    except ValueError:
        return spec.address == "localhost"


@pytest.fixture(autouse=True)
def loopback_resolvers_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every UDP, TCP or DoH query a test makes goes to loopback: one to any other address (the
    default config's public resolvers, 1.1.1.1 or 8.8.8.8) is refused before a packet leaves and
    fails the test, so a test that runs the default config must point its resolvers at local
    servers. (The lab runs the probe in its own namespaces, in processes of their own.)"""
    refused: list[str] = []
    exchange = probe.checks.dns._exchange_all

    async def guarded(qname: Any, resolver: ResolverSpec, *args: Any) -> Any:
        if not _on_loopback(resolver):
            refused.append(resolver.spec)
            raise OffMachineResolver(f"a test queried the resolver {resolver.spec}")
        return await exchange(qname, resolver, *args)

    monkeypatch.setattr(probe.checks.dns, "_exchange_all", guarded)
    yield refused
    assert not refused, (
        f"the test queried resolvers off this machine: {sorted(set(refused))}; point the "
        "config's [dns] resolvers at loopback servers (tests/servers/dns_server.py)"
    )


def _ooni_measurements_dir() -> Path | None:
    """The shared real OONI documents: beside the clone (CI), else the machine's shared folder."""
    for candidate in (
        Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ooni-measurements",
        Path("/work/shared/data/ooni-measurements"),
    ):
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The suite's one PostgreSQL server (tests.servers.postgres), shared by every module that
    asks for it; skipped where the binaries are missing."""
    from tests.servers.postgres import release_shared_server, shared_server

    server = shared_server()
    if server is None:
        pytest.skip("PostgreSQL binaries not found (Debian 12: apt-get install postgresql-15)")
    try:
        yield server
    finally:
        release_shared_server()


@pytest.fixture
def ooni_dir() -> Path:
    """The folder of real OONI measurement documents (read in place, never copied)."""
    found = _ooni_measurements_dir()
    if found is None:
        pytest.skip(
            "../shared/data/ooni-measurements is absent: the real OONI documents are needed"
        )
    return found
