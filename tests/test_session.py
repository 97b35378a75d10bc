"""probe.session: one run as a library call (run_once), its notes, and Ctrl-C handling."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest

from probe.checks import Timeouts
from probe.config import Settings
from probe.model import Connectivity
from probe.records import Status
from probe.resolvers import parse_resolver
from probe.session import Note, NoteKind, interruptible, run_once
from probe.store import Store
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
