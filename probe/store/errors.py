"""The store's exceptions: what the CLI shows when a database cannot be used.

    StoreError ................... any failure to open, read or write the store
      NotAProbeDatabaseError ..... the file or database holds something else (or is corrupt)
      SchemaTooNewError .......... written by a newer censorprobe than this one

Each carries a human message naming the database (passwords redacted); the driver's exception is
chained as `__cause__` for debugging, never shown as a raw traceback by the CLI.
"""

from __future__ import annotations


class StoreError(Exception):
    """The probe database could not be opened, read or written."""


class NotAProbeDatabaseError(StoreError):
    """The file or database is not a censorprobe database (or is corrupt)."""


class SchemaTooNewError(StoreError):
    """The database was written by a newer censorprobe; this version cannot read it."""
