"""The probe's storage: runs and measurements in SQLite (default) or PostgreSQL.

The only package that speaks SQL or imports SQLAlchemy. Everything else uses `Store`:

    with Store.open("~/.local/share/censorprobe/probe.db") as store:
        store.start_run(run)
        store.save_measurements(batch)
        for measurement in store.measurements(since=...):
            ...
"""

from probe.store.database import Store, is_sqlite_file
from probe.store.errors import NotAProbeDatabaseError, SchemaTooNewError, StoreError
from probe.store.migrations import latest_version

__all__ = [
    "NotAProbeDatabaseError",
    "SchemaTooNewError",
    "Store",
    "StoreError",
    "is_sqlite_file",
    "latest_version",
]
