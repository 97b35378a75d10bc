"""Which databases the probe refuses, judged from their `meta` table and table names alone: the
same judgement whether SQLAlchemy read them (probe.store.migrations, on every open) or the
standard library's sqlite3 did (probe.store.sqlite_file, before `probe run` sends traffic).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from probe.store.errors import NotAProbeDatabaseError, SchemaTooNewError

# Version 1: meta, runs and measurements as first released.
BASELINE_VERSION = 1
# The newest schema version this code writes: the last step of probe.store.migrations, which
# refuses to load when the two disagree.
SCHEMA_VERSION = 4


def refuse_foreign(tables: Iterable[str], location: str) -> None:
    """Refuse a database without our meta table that holds `tables` (never create our tables
    beside someone else's data)."""
    clash = sorted(tables)
    if clash:
        raise NotAProbeDatabaseError(
            f"{location} is not a probe database (it holds other tables: {', '.join(clash)})"
        )


def judge_meta(found: Mapping[str, str], location: str, newest: int = SCHEMA_VERSION) -> int:
    """The schema version of a database whose meta table holds `found`; raises
    NotAProbeDatabaseError for one without a valid version or probe id, and SchemaTooNewError for
    one written by a newer version than `newest`."""
    value = found.get("schema_version")
    if value is None or not value.isdigit() or int(value) < BASELINE_VERSION:
        raise NotAProbeDatabaseError(
            f"{location} is not a probe database (meta.schema_version is {value!r})"
        )
    version = int(value)
    if version > newest:
        raise SchemaTooNewError(
            f"{location} was written by a newer censorprobe (schema version {version}; "
            f"this version reads up to {newest}): upgrade censorprobe to open it"
        )
    if not found.get("probe_id"):
        raise NotAProbeDatabaseError(f"{location} is not a probe database (no probe_id in meta)")
    return version
