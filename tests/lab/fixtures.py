"""pytest fixtures for the censorship lab. Load them in a test module (or in tests/conftest.py):

    pytest_plugins = ("tests.lab.fixtures",)

`lab_session` is one lab for the whole session (bring-up costs about a second); `lab` hands it to
a test with every technique switched off before and after. Both skip, saying why, when the
machine cannot run the lab (not root, no `ip netns`, no iptables).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from tests.lab.lab import HANDLED_SIGNALS, Lab, unavailable_reason

# Ctrl-C is pytest's: its KeyboardInterrupt unwinds the session and this fixture closes the lab.
# Were the lab to catch SIGINT too, a test that raises SIGINT inside the test process (the
# event-loop and consent tests do) would tear the session's lab down under every lab test after
# it (CI, stop 24: 28 lab tests errored with "lab ... is closed").
SESSION_SIGNALS = tuple(s for s in HANDLED_SIGNALS if s != signal.SIGINT)


@pytest.fixture(scope="session")
def lab_session() -> Iterator[Lab]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with Lab.create(signals=SESSION_SIGNALS) as running:
        yield running


@pytest.fixture
def lab(lab_session: Lab) -> Iterator[Lab]:
    lab_session.clear()
    yield lab_session
    lab_session.clear()
