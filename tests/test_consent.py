"""Informed consent: asked once, recorded with a date and the text's version in the user's config
dir; without it and without a terminal, the probe refuses and records nothing."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from probe.config import user_config_path
from probe.consent import (
    CONSENT_TEXT,
    CONSENT_VERSION,
    REFUSAL_MESSAGE,
    ask_line,
    default_consent_path,
    has_consent,
    read_consent,
    require_consent,
)


class Screen:
    """Collects what the consent flow shows, and answers its question."""

    def __init__(self, answer: str | None = None) -> None:
        self.shown: list[str] = []
        self.answer = answer
        self.asked = 0

    def show(self, text: str) -> None:
        self.shown.append(text)

    def ask(self, prompt: str) -> str:
        self.asked += 1
        if self.answer is None:
            raise EOFError
        return self.answer


def test_no_consent_and_no_terminal_refuses_without_asking(tmp_path: Path) -> None:
    path = tmp_path / "consent.toml"
    screen = Screen("yes")
    assert not require_consent(False, False, path, ask=screen.ask, show=screen.show)
    assert screen.asked == 0
    assert screen.shown == [REFUSAL_MESSAGE]
    assert "no measurement was taken" in REFUSAL_MESSAGE
    assert "--i-understand-the-risks" in REFUSAL_MESSAGE
    assert not path.exists()


def test_flag_records_consent_with_its_date_and_text_version(tmp_path: Path) -> None:
    path = tmp_path / "config" / "consent.toml"
    screen = Screen()
    assert require_consent(False, True, path, ask=screen.ask, show=screen.show)
    assert screen.asked == 0
    assert CONSENT_TEXT in screen.shown  # shown even when accepted by flag
    data = tomllib.loads(path.read_text())
    assert data["version"] == CONSENT_VERSION
    assert data["how"] == "flag"
    accepted = data["accepted_at"]
    assert isinstance(accepted, datetime) and accepted.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - accepted) < timedelta(minutes=1)
    # Later unattended runs find it and go ahead silently.
    later = Screen()
    assert require_consent(False, False, path, ask=later.ask, show=later.show)
    assert later.shown == []


def test_terminal_user_reads_the_text_and_accepts(tmp_path: Path) -> None:
    path = tmp_path / "consent.toml"
    screen = Screen(" YES ")
    assert require_consent(True, False, path, ask=screen.ask, show=screen.show)
    text = screen.shown[0]
    assert text == CONSENT_TEXT
    for point in ("can see", "legal", "Iran", "IP address is not stored", "AS number"):
        assert point in text
    record = read_consent(path)
    assert record is not None and record.how == "prompt"


@pytest.mark.parametrize("answer", ["no", "", "y", None])
def test_anything_but_yes_records_nothing(tmp_path: Path, answer: str | None) -> None:
    path = tmp_path / "consent.toml"
    screen = Screen(answer)
    assert not require_consent(True, False, path, ask=screen.ask, show=screen.show)
    assert screen.shown[-1] == "Not accepted: no measurement was taken."
    assert not path.exists()


def test_consent_to_an_older_text_asks_again(tmp_path: Path) -> None:
    path = tmp_path / "consent.toml"
    path.write_text(
        f'version = {CONSENT_VERSION - 1}\naccepted_at = 2020-01-01T00:00:00Z\nhow = "flag"\n'
    )
    assert read_consent(path) is not None
    assert not has_consent(path)
    assert not require_consent(False, False, path, show=lambda _: None)


def test_damaged_consent_file_counts_as_no_consent(tmp_path: Path) -> None:
    path = tmp_path / "consent.toml"
    path.write_text("version = [")
    assert not has_consent(path)


def test_consent_lives_beside_the_user_config_not_the_projects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    assert default_consent_path() == tmp_path / "xdg" / "censorprobe" / "consent.toml"
    assert default_consent_path().parent == user_config_path().parent


@pytest.fixture
def typed(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """stdin a pipe the test writes to (its write end)."""
    read_end, write_end = os.pipe()
    reader = os.fdopen(read_end, "r", encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", reader)
    try:
        yield write_end
    finally:
        reader.close()
        with contextlib.suppress(OSError):
            os.close(write_end)


def test_the_prompt_is_shown_and_the_typed_line_is_the_answer(
    typed: int, capsys: pytest.CaptureFixture[str]
) -> None:
    os.write(typed, b"yes\n")
    assert ask_line("Type 'yes': ") == "yes"
    assert capsys.readouterr().out == "Type 'yes': "


def test_the_end_of_input_at_the_prompt_is_eof_as_with_input(typed: int) -> None:
    os.close(typed)
    with pytest.raises(EOFError):
        ask_line("Type 'yes': ")


def test_a_ctrl_c_pending_before_the_wait_interrupts_it(typed: int) -> None:
    # input()'s lost signal: SIGINT delivered while nothing is typed. The handler only notes it
    # (as Python's C-level handler does) and the wait must still end with KeyboardInterrupt.
    seen: list[int] = []

    def note(signum: int, _frame: object) -> None:
        seen.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, note)
    timer = threading.Timer(0.3, signal.raise_signal, (signal.SIGINT,))
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            ask_line("Type 'yes': ")
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert seen == [signal.SIGINT]
