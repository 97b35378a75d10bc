"""Informed consent: no measurement before the volunteer has read what running the probe means.

Like OONI Probe, the first run is gated behind consent (https://ooni.org/about/risks/): the
network operator can see the probe's traffic, and running it can carry legal risk (Iran is a
high-risk place). Consent is recorded once per user, with its date and the version of the text,
in consent.toml in the user's config directory (beside the user's config.toml, never in a
project's). Changing CONSENT_TEXT in substance means raising CONSENT_VERSION, which asks again.
"""

from __future__ import annotations

import os
import select
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import platformdirs

from probe.config import APP_NAME
from probe.model import to_the_second, utcnow

CONSENT_VERSION = 1

CONSENT_TEXT = """\
Before you run this censorship probe, please read this.

* Your Internet provider, and anyone who watches your connection, can see that this computer
  connects to the sites and apps the probe tests, and may be able to tell that it is a
  measurement tool.
* Running network measurements, or trying to reach blocked sites, may carry legal or other risk
  in some countries. Iran is among them. Only you can judge the risk where you are.
* What is stored, on this computer only: the measurements (which sites and servers answered and
  how), and the network's AS number, AS name and country. Your IP address is not stored: the
  probe removes it from everything it saves, wherever it knows it from (its test helper, your
  configuration, or this computer's own public addresses).
* What is shared: nothing, unless you export the data or send it to someone yourself.
* If you run the probe on a schedule, it keeps doing this without asking again until you run
  `probe schedule remove`.
"""

ACCEPT_WORD = "yes"

REFUSAL_MESSAGE = (
    "no measurement was taken: the probe needs your informed consent first. Run `probe run` "
    "once in a terminal to read what running it means and accept, or pass "
    "--i-understand-the-risks. In short: your provider can see the probe's traffic, and in some "
    "countries, Iran among them, running it may carry legal risk."
)


def default_consent_path() -> Path:
    """consent.toml in the user's config directory (beside the user's config.toml)."""
    return Path(platformdirs.user_config_dir(APP_NAME)) / "consent.toml"


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """A recorded consent: when, to which version of the text, and how it was given."""

    version: int
    accepted_at: datetime
    how: str


def read_consent(path: Path) -> ConsentRecord | None:
    """The recorded consent, or None when there is none (or it is unreadable: ask again)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    version, accepted_at, how = data.get("version"), data.get("accepted_at"), data.get("how")
    if not isinstance(version, int) or not isinstance(accepted_at, datetime):
        return None
    return ConsentRecord(version, accepted_at, how if isinstance(how, str) else "unknown")


def has_consent(path: Path) -> bool:
    """Whether consent to the current version of the text is recorded."""
    record = read_consent(path)
    return record is not None and record.version >= CONSENT_VERSION


def record_consent(path: Path, how: str) -> ConsentRecord:
    """Write consent to the current text, now, atomically (a crash never leaves half a file)."""
    record = ConsentRecord(CONSENT_VERSION, to_the_second(utcnow()), how)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = (
        "# Informed consent to run the censorprobe measurement probe.\n"
        "# Delete this file to be asked again.\n"
        f"version = {record.version}\n"
        f"accepted_at = {record.accepted_at.isoformat().replace('+00:00', 'Z')}\n"
        f'how = "{how}"\n'
    )
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(body, encoding="utf-8")
    temporary.replace(path)
    return record


def require_consent(
    interactive: bool,
    flag: bool,
    path: Path,
    *,
    ask: Callable[[str], str] | None = None,
    show: Callable[[str], None] | None = None,
) -> bool:
    """True when the probe may measure: consent is on record, or is given now.

    `flag` (--i-understand-the-risks) records consent without a prompt. Otherwise, `interactive`
    (a terminal is attached) shows CONSENT_TEXT and asks; without a terminal nothing is asked:
    REFUSAL_MESSAGE is shown and the answer is False, so no measurement is taken.
    """
    say = show or _stderr
    if has_consent(path):
        return True
    if flag:
        # Shown anyway, so that the text is on screen (or in the log) when consent is recorded.
        say(CONSENT_TEXT)
        say("Accepted with --i-understand-the-risks.")
        record_consent(path, "flag")
        return True
    if not interactive:
        say(REFUSAL_MESSAGE)
        return False
    say(CONSENT_TEXT)
    try:
        answer = (ask or ask_line)(f"Type {ACCEPT_WORD!r} to accept and run the probe: ")
    except EOFError:
        answer = ""
    if answer.strip().lower() != ACCEPT_WORD:
        say("Not accepted: no measurement was taken.")
        return False
    record_consent(path, "prompt")
    return True


# How often a wait for the answer wakes up to let a pending Ctrl-C through (see ask_line).
_SIGNAL_POLL_S = 0.2


def ask_line(prompt: str) -> str:
    """input(), without its lost Ctrl-C: the prompt on stdout, then one line from stdin.

    input() blocks in the C library's read; a SIGINT that lands after the prompt is written and
    before that read starts only sets Python's flag, and the read then waits for a line, so the
    volunteer's Ctrl-C is ignored (seen in 2 of 6 tries in tests/test_signals.py). Here the wait
    is a select that wakes every _SIGNAL_POLL_S, and Python runs the pending handler between
    waits: KeyboardInterrupt within that time. EOFError at the end of input, as input() does.
    """
    sys.stdout.write(prompt)
    sys.stdout.flush()
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], _SIGNAL_POLL_S)
        if ready:
            break
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.removesuffix("\n")


def _stderr(text: str) -> None:
    print(text, file=sys.stderr)
