"""probe.session: one run as a library call (run_once), its notes, and Ctrl-C handling."""

from __future__ import annotations

import signal
import socket
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from probe.checks import Timeouts
from probe.config import Settings
from probe.model import Connectivity
from probe.records import Status
from probe.resolvers import parse_resolver
from probe.session import Note, NoteKind, interruptible, run_once
from probe.store import SchemaTooNewError, Store, StoreError
from tests.servers.dns_server import Behaviour, FakeNameserver


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_run_once_stores_a_run_and_reports_its_notes_without_printing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run whose helper is down and whose control cannot be reached: the report carries the
    notes (also given to the callback, in order), the run is stored with its verdicts, and the
    library printed nothing."""
    closed = _closed_port()
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "lo.toml").write_text(
        'platform = "lo"\n[[targets]]\nkind = "dns"\nhost = "gone.lo.test"\n'
    )
    (catalog / "controls.toml").write_text(
        f'platform = "control"\ncontrol = true\n[[targets]]\nurl = "https://127.0.0.1:{closed}/"\n'
    )
    seen: list[Note] = []
    with FakeNameserver({"gone.lo.test": Behaviour.nxdomain()}) as ns:
        settings = Settings(
            platforms=("lo",),
            catalog_dir=catalog,
            resolvers=(parse_resolver(ns.udp_spec),),
            timeouts=Timeouts(dns=1.0, connect=1.0, tls=1.0, http=1.0),
            dns_second_answer_window=0.05,
            helper_url=f"http://127.0.0.1:{closed}/",
            helper_token="t" * 32,
        )
        report = run_once(settings, db=str(tmp_path / "s.db"), notes=seen.append)
    assert capsys.readouterr() == ("", "")
    assert report.notes == tuple(seen)
    kinds = [n.kind for n in report.notes]
    assert NoteKind.NO_HELPER in kinds and NoteKind.ADDRESS_UNKNOWN in kinds
    assert kinds.index(NoteKind.NO_HELPER) < kinds.index(NoteKind.ADDRESS_UNKNOWN)
    assert report.outcome.connectivity is Connectivity.NONE and not report.outcome.interrupted
    with Store.open(str(tmp_path / "s.db")) as store:
        stored = store.get_run(report.run.id)
        verdicts = list(store.verdicts(run_id=report.run.id))
    assert stored is not None and stored.connectivity is Connectivity.NONE
    assert verdicts == report.analysis.verdicts
    assert all(v.status is not Status.BLOCKED for v in verdicts)  # no network: nothing blocked


def test_interruptible_restores_an_ignored_sigint_to_keyboard_interrupt_and_back() -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interruptible():
            assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_interruptible_leaves_a_handler_installed_on_purpose() -> None:
    calls: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        calls.append(signum)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        with interruptible():
            assert signal.getsignal(signal.SIGINT) is handler
            signal.raise_signal(signal.SIGINT)
        assert calls == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)


def _lo_settings(tmp_path: Path, nameserver: FakeNameserver, control_port: int) -> Settings:
    """One DNS target and one control reached over TCP (a listener that never speaks TLS)."""
    catalog = tmp_path / "catalog"
    catalog.mkdir(exist_ok=True)
    (catalog / "lo.toml").write_text(
        'platform = "lo"\n[[targets]]\nkind = "dns"\nhost = "gone.lo.test"\n'
    )
    (catalog / "controls.toml").write_text(
        'platform = "control"\ncontrol = true\n[[targets]]\n'
        f'url = "https://127.0.0.1:{control_port}/"\n'
    )
    return Settings(
        platforms=("lo",),
        catalog_dir=catalog,
        resolvers=(parse_resolver(nameserver.udp_spec),),
        timeouts=Timeouts(dns=1.0, connect=1.0, tls=0.5, http=0.5),
        dns_second_answer_window=0.05,
    )


def test_measurements_taken_before_the_database_opened_are_all_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database opens in a thread while the checks run: held closed until every target has
    been measured, every measurement still reaches it, none is lost or counted twice."""
    gate = threading.Event()
    entered: list[str] = []
    real_open = Store.open.__func__  # type: ignore[attr-defined]

    def held_open(cls: type[Store], *args: Any, **kwargs: Any) -> Store:
        entered.append(threading.current_thread().name)
        assert gate.wait(60), "the run never finished measuring"
        return real_open(cls, *args, **kwargs)  # type: ignore[no-any-return]

    def progress(done: int, total: int) -> None:
        if done == total:
            gate.set()  # every target is measured; the database is still closed

    monkeypatch.setattr(Store, "open", classmethod(held_open))
    with socket.socket() as control, FakeNameserver({"gone.lo.test": Behaviour.nxdomain()}) as ns:
        control.bind(("127.0.0.1", 0))
        control.listen()
        settings = _lo_settings(tmp_path, ns, control.getsockname()[1])
        report = run_once(settings, db=str(tmp_path / "s.db"), progress=progress)
    assert entered and all(name != threading.main_thread().name for name in entered)
    outcome = report.outcome
    assert outcome.connectivity is Connectivity.OK  # the target was measured too
    taken = sum(r.measurements for r in (*outcome.controls, *outcome.results))
    assert taken >= 3 and outcome.measurements == taken and outcome.unsaved == 0
    with real_open(Store, str(tmp_path / "s.db")) as store:
        stored = list(store.measurements(run_id=report.run.id))
        run = store.get_run(report.run.id)
    assert len(stored) == taken
    assert {m.platform for m in stored} == {"lo", "control"}
    assert run is not None and run.probe_id == store.probe_id() == report.run.probe_id


def test_a_database_that_fails_to_open_while_measuring_stops_the_run_with_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What only the open itself meets (a write lock held past the busy timeout) is known after
    the first checks started: the run stops, and its error is raised (the CLI's one line)."""
    refused = StoreError(f"cannot open {tmp_path / 's.db'}: database is locked")

    def locked_open(cls: type[Store], *args: Any, **kwargs: Any) -> Store:
        raise refused

    monkeypatch.setattr(Store, "open", classmethod(locked_open))
    with socket.socket() as control, FakeNameserver({"gone.lo.test": Behaviour.nxdomain()}) as ns:
        control.bind(("127.0.0.1", 0))
        control.listen()
        settings = _lo_settings(tmp_path, ns, control.getsockname()[1])
        with pytest.raises(StoreError) as raised:
            run_once(settings, db=str(tmp_path / "s.db"))
    assert raised.value is refused
    assert [t.name for t in threading.enumerate() if t.name == "probe-store-open"] == []


def test_a_run_into_a_file_the_store_refuses_sends_no_traffic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A probe database of a newer schema is refused before the first check (the database's
    own open, in its thread, would know only after traffic started)."""
    path = tmp_path / "newer.db"
    Store.open(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    conn.close()
    with socket.socket() as control, FakeNameserver({"gone.lo.test": Behaviour.nxdomain()}) as ns:
        control.bind(("127.0.0.1", 0))
        control.listen()
        control.setblocking(False)
        settings = _lo_settings(tmp_path, ns, control.getsockname()[1])
        with pytest.raises(SchemaTooNewError, match="written by a newer censorprobe"):
            run_once(settings, db=str(path))
        with pytest.raises(BlockingIOError):
            control.accept()  # the control was never connected to
        assert ns.queries == []
