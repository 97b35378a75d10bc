"""Files the commands write (an export, an HTML report): never a database, and always whole.

An output path that is the database being read (the same file under another name, a symlink or a
hard link included) or any other SQLite file is refused before anything is opened: `probe export
--csv probe.db` must not turn a volunteer's measurements into a CSV. The output is written to a
temporary file in the same folder and renamed over the path only once complete (rename(2) is
atomic within a file system), so a failure or a Ctrl-C part way leaves the old file as it was
and no partial one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from probe.store import is_sqlite_file

# The database's own files: the main file and SQLite's journals beside it.
_DATABASE_SUFFIXES = ("", "-wal", "-shm", "-journal")


class OutputRefusedError(Exception):
    """The output path names a database; nothing was written."""


def refuse_database(path: Path, database: Path | None) -> None:
    """Raise OutputRefusedError when writing `path` would overwrite `database` (or its journals)
    or any other SQLite file."""
    if not path.exists():
        return
    if database is not None:
        for suffix in _DATABASE_SUFFIXES:
            own = database.with_name(database.name + suffix)
            if own.exists() and os.path.samefile(path, own):
                raise OutputRefusedError(
                    f"{path} is the database being read ({database}): name another output file"
                )
    if is_sqlite_file(path):
        raise OutputRefusedError(
            f"{path} is a SQLite database: it is not overwritten (name another output file)"
        )


@contextmanager
def atomic_output(path: Path, database: Path | None = None) -> Iterator[TextIO]:
    """A text file to write `path` through: refused if it is a database (refuse_database), and
    renamed into place only when the block ends without an exception. A symlink at `path` keeps
    pointing where it did: the file it names is replaced."""
    refuse_database(path, database)
    final = Path(os.path.realpath(path))
    mode = _mode_for(final)
    fd, temporary = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, final)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _mode_for(path: Path) -> int:
    """The permissions the output gets: those of the file it replaces, else what open(2) would
    give a new file under the umask (mkstemp's own 0600 would hide a shared report)."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """A temporary folder to build the folder `path` in (a Parquet export), renamed into place
    only when the block ends without an exception. `path` must not exist yet, or be an empty
    folder: an export never merges into or deletes what is there."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise OutputRefusedError(f"{path} exists and is not a folder: name a new folder")
    if path.is_dir() and any(path.iterdir()):
        raise OutputRefusedError(f"{path} is not empty: name a new folder (nothing was written)")
    final = Path(os.path.abspath(path))
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        yield temporary
        os.chmod(temporary, 0o777 & ~_umask())
        if final.is_dir():
            final.rmdir()
        os.replace(temporary, final)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask
