"""The unattended log: where scheduled runs write their output (the user state directory), kept
under a size limit, and its newest line for `probe schedule status`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TypedDict

import platformdirs

from probe.config import APP_NAME

# The unattended log is trimmed to its newest half when it grows past this.
LOG_MAX_BYTES = 1 << 20


def unattended_log_path() -> Path:
    """Where unattended runs write their output (the user state dir)."""
    return Path(platformdirs.user_state_dir(APP_NAME)) / "unattended.log"


def trim_log(path: Path | None = None, max_bytes: int = LOG_MAX_BYTES) -> None:
    """Keep the unattended log under max_bytes: past it, keep the newest half, from a line start.
    In place, so a writer that holds the file open in append mode (cron's >>, systemd's
    append:) goes on writing at its new end."""
    path = path or unattended_log_path()
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size <= max_bytes:
        return
    with path.open("r+b") as handle:
        handle.seek(size - max_bytes // 2)
        tail = handle.read()
        newline = tail.find(b"\n")
        tail = tail[newline + 1 :] if newline >= 0 else tail
        handle.seek(0)
        handle.write(tail)
        handle.truncate()


class LogSummary(TypedDict):
    log_path: Path
    log_updated: datetime | None
    log_last_line: str | None


def log_summary(path: Path) -> LogSummary:
    try:
        updated = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 4096))
            lines = handle.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return {"log_path": path, "log_updated": None, "log_last_line": None}
    last = next((line.strip() for line in reversed(lines) if line.strip()), None)
    return {"log_path": path, "log_updated": updated, "log_last_line": last}
