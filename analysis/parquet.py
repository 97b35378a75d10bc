"""Exports as Apache Parquet, partitioned by UTC day: the only module that imports pyarrow.

A table's rows (analysis.export's *_rows, the same values the CSV and JSON Lines writers get)
become DIR/day=YYYY-MM-DD/part-0.parquet, Hive-style partitions that DuckDB
(`read_parquet('DIR/**/*.parquet', hive_partitioning = true)`), Spark, BigQuery and pandas read
with a `day` column. Column types come from the data dictionary (analysis.dictionary): times are
UTC timestamps in microseconds, lists are lists, text stays text; `details_json` stays JSON text.
Rows are buffered per day and written in row groups as the stream leaves a day (or a batch
fills), so memory holds about one batch, not the export. pyarrow is the optional extra `parquet` (https://arrow.apache.org/docs/python/parquet.html).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.dictionary import ColumnType, Table
from analysis.export import compact_json

# Rows per row group: large enough for column compression, small enough to stay in memory
# for each day open at once.
BATCH_ROWS = 65_536
PART = "part-0.parquet"


class ParquetUnavailableError(Exception):
    """Parquet export needs pyarrow: install the parquet extra (pip install '.[parquet]')."""


def parquet_unavailable() -> str | None:
    """Why Parquet cannot be written here (None: it can)."""
    if importlib.util.find_spec("pyarrow") is None:
        return str(ParquetUnavailableError.__doc__)
    return None


@dataclass(frozen=True, slots=True)
class ParquetExport:
    """What write_parquet wrote: rows, and the part files relative to the directory."""

    rows: int
    paths: tuple[str, ...]


def write_parquet(
    table: Table, rows: Iterable[list[Any]], directory: Path, *, batch_rows: int = BATCH_ROWS
) -> ParquetExport:
    """Write `rows` (in `table.jsonl_names` order) under `directory`, one partition per UTC day
    of the table's `day_of` column. `directory` exists and is empty."""
    if parquet_unavailable() is not None:
        raise ParquetUnavailableError(parquet_unavailable())
    import pyarrow as pa
    import pyarrow.parquet as pq

    if table.day_of is None:
        raise ValueError(f"the {table.name} table has no time to partition by")
    schema = _arrow_schema(pa, table)
    day_index = table.names.index(table.day_of)
    times = [i for i, c in enumerate(table.columns) if c.type is ColumnType.TIME]
    details = [i for i, c in enumerate(table.columns) if c.type is ColumnType.DETAILS]
    writers: dict[str, Any] = {}
    buffers: dict[str, list[list[Any]]] = {}
    count = 0

    def flush(day: str) -> None:
        batch = buffers.pop(day)
        columns = [list(values) for values in zip(*batch, strict=True)]
        for i in details:
            columns[i] = [None if d is None else compact_json(d) for d in columns[i]]
        arrays = []
        for i, field in enumerate(schema):
            if i in times:
                # ISO-8601 text with Z, parsed by Arrow's own parser (vectorised).
                arrays.append(pa.array(columns[i], pa.string()).cast(field.type))
            else:
                arrays.append(pa.array(columns[i], field.type))
        writer = writers.get(day)
        if writer is None:
            folder = directory / f"day={day}"
            folder.mkdir()
            writer = writers[day] = pq.ParquetWriter(folder / PART, schema, compression="zstd")
        writer.write_table(pa.Table.from_arrays(arrays, schema=schema))

    try:
        previous: str | None = None
        for values in rows:
            day = values[day_index][:10]
            if previous is not None and day != previous and previous in buffers:
                # Rows come in time order: a day the stream has left is written out now, so
                # memory holds one batch, not every day's remainder until the end.
                flush(previous)
            previous = day
            buffer = buffers.setdefault(day, [])
            buffer.append(values)
            count += 1
            if len(buffer) >= batch_rows:
                flush(day)
        for day in list(buffers):
            flush(day)
    finally:
        for writer in writers.values():
            writer.close()
    return ParquetExport(count, tuple(f"day={day}/{PART}" for day in sorted(writers)))


def _arrow_schema(pa: Any, table: Table) -> Any:
    types = {
        ColumnType.TEXT: pa.string(),
        ColumnType.INTEGER: pa.int64(),
        ColumnType.NUMBER: pa.float64(),
        ColumnType.BOOLEAN: pa.bool_(),
        ColumnType.TIME: pa.timestamp("us", tz="UTC"),
        ColumnType.TEXT_LIST: pa.list_(pa.string()),
        ColumnType.INTEGER_LIST: pa.list_(pa.int64()),
        ColumnType.DETAILS: pa.string(),
    }
    return pa.schema(
        [
            pa.field(name, types[column.type])
            for name, column in zip(table.jsonl_names, table.columns, strict=True)
        ]
    )
