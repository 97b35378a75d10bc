"""Stream OONI measurement documents out of files and folders with bounded memory.

OONI's archive stores one JSON document per line in `.jsonl.gz` files (ooni/data, the S3
"jsonl" buckets); the OONI API returns one document per request (`/api/v1/raw_measurement`), and
`/api/v1/measurement_meta?full=true` wraps it as a JSON string under `raw_measurement`. All three
are read here, one document at a time: a multi-GB file never sits in memory, and a line longer
than the bound is skipped (read through in chunks) and reported, never loaded.

A document that does not parse is a ReadProblem naming its file and line; reading goes on.
`read_raw` leaves each line of a `.jsonl` file unparsed (a RawLine, parsed by `parse_line`), so
that an import can parse lines in other processes than the one reading the file.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

# The largest document read (bytes of one JSON line or one .json file). OONI's own documents stay
# well under this (web_connectivity bodies are capped by the probe: ooni/probe-cli
# model.HTTPMaxBodySnapshotSize is 1 << 17 per body); anything bigger is hostile or broken.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024

# File names the reader takes from a folder (and accepts when named directly).
SUFFIXES = (".jsonl.gz", ".json.gz", ".jsonl", ".json")

_CHUNK = 1024 * 1024


class ReaderError(ValueError):
    """A path given to the reader does not exist or is not a readable OONI file."""


@dataclass(frozen=True, slots=True)
class Location:
    """Where a document came from: the file and its line (1 for a single-document file)."""

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True, slots=True)
class RawDocument:
    """One decoded JSON object and the number of bytes it took in the file."""

    location: Location
    data: dict[str, Any]
    size: int


@dataclass(frozen=True, slots=True)
class RawLine:
    """One line of a `.jsonl` file, not parsed yet (`parse_line` parses it)."""

    location: Location
    raw: bytes


@dataclass(frozen=True, slots=True)
class ReadProblem:
    """A document that could not be read: where, and why (one line)."""

    location: Location
    message: str


def _loads(raw: bytes) -> Any:
    return json.loads(raw)


def expand_paths(paths: Iterable[Path]) -> list[Path]:
    """The files to read: each file as given, each folder's OONI files (recursively, sorted).
    Checked before anything is read, so a mistyped path fails at once, not mid-import."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(
                sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))
            )
        elif path.is_file():
            if not path.name.endswith(SUFFIXES):
                raise ReaderError(f"{path}: not an OONI file (expected {', '.join(SUFFIXES)})")
            files.append(path)
        else:
            raise ReaderError(f"{path}: no such file or folder")
    return files


def _open(path: Path) -> IO[bytes]:
    if path.name.endswith(".gz"):
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")


def _document(raw: bytes, location: Location) -> RawDocument | ReadProblem:
    try:
        data = _loads(raw)
    except (ValueError, RecursionError) as exc:
        return ReadProblem(location, f"not JSON ({_first_line(str(exc))})")
    if isinstance(data, dict) and isinstance(data.get("raw_measurement"), str):
        # An OONI API measurement_meta answer: the document is a JSON string inside it.
        try:
            data = _loads(data["raw_measurement"].encode("utf-8", "surrogatepass"))
        except (ValueError, RecursionError) as exc:
            return ReadProblem(location, f"raw_measurement is not JSON ({_first_line(str(exc))})")
    if not isinstance(data, dict):
        return ReadProblem(location, f"a JSON {type(data).__name__}, not an object")
    return RawDocument(location, data, len(raw))


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else text


class _Cursor:
    """The line being read, so that a stream that breaks mid-file is reported where it broke."""

    __slots__ = ("line",)

    def __init__(self) -> None:
        self.line = 0


def parse_line(line: RawLine) -> RawDocument | ReadProblem:
    """The document of one line (a ReadProblem naming the line when it does not parse)."""
    return _document(line.raw, line.location)


def _read_lines(
    stream: IO[bytes], name: str, limit: int, cursor: _Cursor
) -> Iterator[RawLine | ReadProblem]:
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        cursor.line += 1
        number = cursor.line
        if len(line) > limit and not line.endswith(b"\n"):
            # Too long: skip the rest of the line without holding it.
            while True:
                rest = stream.readline(_CHUNK)
                if not rest or rest.endswith(b"\n"):
                    break
            yield ReadProblem(Location(name, number), f"document larger than {limit} bytes")
            continue
        if not line.strip():
            continue
        yield RawLine(Location(name, number), line)


def _read_single(stream: IO[bytes], name: str, limit: int) -> Iterator[RawDocument | ReadProblem]:
    raw = stream.read(limit + 1)
    if len(raw) > limit:
        yield ReadProblem(Location(name, 1), f"document larger than {limit} bytes")
        return
    if raw.lstrip()[:1] == b"[":
        # A JSON array of documents (what a researcher saves from several API answers).
        try:
            items = _loads(raw)
        except (ValueError, RecursionError) as exc:
            yield ReadProblem(Location(name, 1), f"not JSON ({_first_line(str(exc))})")
            return
        for index, item in enumerate(items if isinstance(items, list) else (), start=1):
            location = Location(name, index)
            if isinstance(item, dict):
                yield RawDocument(location, item, len(raw) // max(1, len(items)))
            else:
                yield ReadProblem(location, f"a JSON {type(item).__name__}, not an object")
        return
    if raw.strip():
        yield _document(raw, Location(name, 1))


def read_file(
    path: Path, *, limit: int = MAX_DOCUMENT_BYTES
) -> Iterator[RawDocument | ReadProblem]:
    """Every document of one file, in order. `.json` (and `.json.gz`) hold one document (or a
    JSON array of them); `.jsonl` and `.jsonl.gz` one per line."""
    for item in read_raw_file(path, limit=limit):
        yield parse_line(item) if isinstance(item, RawLine) else item


def read_raw_file(
    path: Path, *, limit: int = MAX_DOCUMENT_BYTES
) -> Iterator[RawLine | RawDocument | ReadProblem]:
    """What read_file reads, each line of a `.jsonl` file left unparsed (a RawLine)."""
    name = str(path)
    cursor = _Cursor()
    try:
        with _open(path) as stream:
            if path.name.endswith((".jsonl", ".jsonl.gz")):
                yield from _read_lines(stream, name, limit, cursor)
            else:
                yield from _read_single(stream, name, limit)
    except (OSError, EOFError, zlib.error) as exc:
        # A truncated or corrupt gzip stream ends the file, not the import.
        yield ReadProblem(
            Location(name, cursor.line + 1), f"unreadable from here on ({_first_line(str(exc))})"
        )


def read_documents(
    paths: Iterable[Path], *, limit: int = MAX_DOCUMENT_BYTES
) -> Iterator[RawDocument | ReadProblem]:
    """Every document of every file under `paths`; ReaderError when a path does not exist."""
    for path in expand_paths(paths):
        yield from read_file(path, limit=limit)


def read_raw(
    paths: Iterable[Path], *, limit: int = MAX_DOCUMENT_BYTES
) -> Iterator[RawLine | RawDocument | ReadProblem]:
    """What read_documents reads, each line of a `.jsonl` file left unparsed (a RawLine);
    ReaderError when a path does not exist."""
    for path in expand_paths(paths):
        yield from read_raw_file(path, limit=limit)
