"""What every lab server process does: die with the lab, read its JSON config, say "ready" on
stdout once listening (the lab waits for that line), then log to stderr only.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

READY_LINE = "ready"
_PR_SET_PDEATHSIG = 1


def prepare_process() -> None:
    """Ask the kernel to SIGTERM this process when the lab process dies, even by SIGKILL, so a
    server never outlives its lab; then set up logging to stderr (the lab's log file)."""
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the lab died before prctl took effect
        sys.exit(1)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )


def load_config(path: str) -> dict[str, Any]:
    config = json.loads(Path(path).read_text())
    if not isinstance(config, dict):
        raise SystemExit(f"{path}: a JSON object is expected")
    return config


class RulesFile:
    """A JSON rules file the lab replaces atomically; `current()` re-reads it when it changed
    (inode, mtime or size), so a change is seen by the very next request."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        self._rules: dict[str, Any] = {}

    def current(self) -> dict[str, Any]:
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            self._stamp, self._rules = None, {}
            return self._rules
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            rules = json.loads(self._path.read_text())
            self._rules = rules if isinstance(rules, dict) else {}
            self._stamp = stamp
            logging.getLogger("lab.rules").info("%s: %s", self._path.name, self._rules)
        return self._rules


def announce_ready() -> None:
    """Tell the lab this server listens; later prints go to stderr, never into the lab's pipe."""
    sys.stdout.write(READY_LINE + "\n")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
