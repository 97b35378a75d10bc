"""The probe's storage: runs and measurements in SQLite (default) or PostgreSQL.

The only package that speaks SQL or imports SQLAlchemy. Everything else uses `Store`:

    with Store.open("~/.local/share/censorprobe/probe.db") as store:
        store.start_run(run)
        store.save_measurements(batch)
        for measurement in store.measurements(since=...):
            ...

`Store` and `latest_version` are loaded on first use (PEP 562 module __getattr__): importing the
package for its exceptions, or probe.store.sqlite_file for its file checks, does not load
SQLAlchemy, so a command loads it only when it opens a database (`probe run` in a thread of its
own, while its first checks start).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from probe.store.errors import NotAProbeDatabaseError, SchemaTooNewError, StoreError
from probe.store.sqlite_file import is_sqlite_file

if TYPE_CHECKING:
    from probe.store.database import Store
    from probe.store.migrations import latest_version

__all__ = [
    "NotAProbeDatabaseError",
    "SchemaTooNewError",
    "Store",
    "StoreError",
    "is_sqlite_file",
    "latest_version",
]

# What is loaded on first use, and from which module.
_LAZY = {"Store": "probe.store.database", "latest_version": "probe.store.migrations"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
