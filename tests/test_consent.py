"""Informed consent: asked once, recorded with a date and the text's version in the user's config
dir; without it and without a terminal, the probe refuses and records nothing."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from probe.config import user_config_path
from probe.consent import (
    CONSENT_TEXT,
    CONSENT_VERSION,
    REFUSAL_MESSAGE,
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
