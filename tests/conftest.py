"""Every test gets its own home: the user config, data and state directories (consent record,
run lock, default database, unattended log) point into a temporary folder, never the real ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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


def _ooni_measurements_dir() -> Path | None:
    """The shared real OONI documents: beside the clone (CI), else the machine's shared folder."""
    for candidate in (
        Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ooni-measurements",
        Path("/work/shared/data/ooni-measurements"),
    ):
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture
def ooni_dir() -> Path:
    """The folder of real OONI measurement documents (read in place, never copied)."""
    found = _ooni_measurements_dir()
    if found is None:
        pytest.skip(
            "../shared/data/ooni-measurements is absent: the real OONI documents are needed"
        )
    return found
