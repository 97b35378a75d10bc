"""Every export format loaded the way a researcher loads it, in pandas and in DuckDB, with the
dtypes asserted and no cleaning: CSV and JSON Lines with the types of the datapackage.json
written beside them (the README's recipe), Parquet as it is. rules_version stays text, times are
UTC timestamps, integers stay integers beside empty cells, the VPN flag is a boolean.

pandas, DuckDB and pyarrow are test extras (pyproject.toml); without them these tests skip."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from analysis.dictionary import TABLES, ColumnType, Table
from probe.store import Store
from tests.cli import invoke
from tests.export_store import RULES_VERSION, ExportData, build_export_store
from tests.stored_verdicts import small_spec, store_verdicts
from tests.synthetic import generate

pd = pytest.importorskip("pandas")
duckdb = pytest.importorskip("duckdb")
pytest.importorskip("pyarrow")

# The README's recipe: Table Schema types -> pandas dtypes and DuckDB column types.
PANDAS = {"string": "string", "integer": "Int64", "number": "float64", "boolean": "boolean"}
DUCKDB = {
    "string": "VARCHAR",
    "integer": "BIGINT",
    "number": "DOUBLE",
    "boolean": "BOOLEAN",
    "datetime": "TIMESTAMPTZ",
    "object": "JSON",
}


def read_pandas(path: Path, fields: list[dict[str, Any]]) -> Any:
    dtype = {f["name"]: PANDAS[f["type"]] for f in fields if f["type"] in PANDAS}
    times = [f["name"] for f in fields if f["type"] == "datetime"]
    if path.suffix == ".csv":
        dtype.update({f["name"]: "string" for f in fields if f["type"] == "object"})
        return pd.read_csv(
            path, dtype=dtype, parse_dates=times, keep_default_na=False, na_values=[""]
        )
    return pd.read_json(path, lines=True, dtype=dtype, convert_dates=times)


def duckdb_type(field: dict[str, Any]) -> str:
    if field["type"] == "array":
        return {"string": "VARCHAR[]", "integer": "BIGINT[]"}[field["itemType"]]
    return DUCKDB[field["type"]]


def read_duckdb(path: Path, fields: list[dict[str, Any]]) -> list[tuple[str, str]]:
    columns = {f["name"]: duckdb_type(f) for f in fields}
    reader = "read_csv(?, header = true, columns = ?)"
    if path.suffix == ".jsonl":
        reader = "read_json(?, format = 'newline_delimited', columns = ?)"
    with duckdb.connect() as con:
        described = con.execute(f"DESCRIBE SELECT * FROM {reader}", [str(path), columns])
        return [(row[0], row[1]) for row in described.fetchall()]


# What each dictionary type must arrive as.
PANDAS_DTYPES = {
    ColumnType.TEXT: "string",
    ColumnType.INTEGER: "Int64",
    ColumnType.NUMBER: "float64",
    ColumnType.BOOLEAN: "boolean",
    ColumnType.TIME: "datetime64[us, UTC]",
}
DUCKDB_TYPES = {
    ColumnType.TEXT: "VARCHAR",
    ColumnType.INTEGER: "BIGINT",
    ColumnType.NUMBER: "DOUBLE",
    ColumnType.BOOLEAN: "BOOLEAN",
    ColumnType.TIME: "TIMESTAMP WITH TIME ZONE",
    ColumnType.TEXT_LIST: "VARCHAR[]",
    ColumnType.INTEGER_LIST: "BIGINT[]",
    ColumnType.DETAILS: "JSON",
}


def expected_pandas(table: Table, form: str) -> dict[str, str]:
    expected = {}
    for name, column in zip(table.jsonl_names, table.columns, strict=True):
        if column.type in PANDAS_DTYPES:
            expected[name] = PANDAS_DTYPES[column.type]
        elif form == "csv":
            expected[name] = "string"  # lists space-separated, details as JSON text
        else:
            expected[name] = "object"  # lists and objects as Python lists and dicts
    if form == "csv":
        expected = dict(zip(table.names, expected.values(), strict=True))
    return expected


def expected_duckdb(table: Table, form: str) -> list[tuple[str, str]]:
    names = table.names if form == "csv" else table.jsonl_names
    types = [
        "VARCHAR"
        if form == "csv" and c.type in (ColumnType.TEXT_LIST, ColumnType.INTEGER_LIST)
        else DUCKDB_TYPES[c.type]
        for c in table.columns
    ]
    return list(zip(names, types, strict=True))


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ExportData, Path]]:
    """Every table in every format, exported into one folder (one datapackage.json)."""
    folder = tmp_path_factory.mktemp("exports")
    data = build_export_store(folder)
    events_db = folder / "events.db"
    with Store.open(events_db) as store:
        store_verdicts(store, generate(small_spec(), seed=3).verdicts)
    for what in ("runs", "measurements", "verdicts", "events"):
        db = events_db if what == "events" else data.db
        outputs = [("--csv", f"{what}.csv"), ("--jsonl", f"{what}.jsonl")]
        if what != "events":
            outputs.append(("--parquet", what))
        for option, name in outputs:
            code, _, err = invoke(
                "export", "--what", what, option, str(folder / name), "--db", str(db),
                "--test-list", str(data.test_list), "--all-roles",
            )  # fmt: skip
            assert code == 0, err
    yield data, folder


def fields_of(folder: Path, name: str) -> list[dict[str, Any]]:
    package = json.loads((folder / "datapackage.json").read_text(encoding="utf-8"))
    [resource] = [r for r in package["resources"] if r["path"] == name]
    fields: list[dict[str, Any]] = resource["schema"]["fields"]
    return fields


TEXT_FORMS = [(what, form) for what in TABLES for form in ("csv", "jsonl")]


@pytest.mark.parametrize(("what", "form"), TEXT_FORMS)
def test_pandas_reads_every_text_export_with_the_documented_dtypes(
    exports: tuple[ExportData, Path], what: str, form: str
) -> None:
    _, folder = exports
    name = f"{what}.{form}"
    frame = read_pandas(folder / name, fields_of(folder, name))
    assert dict(frame.dtypes.astype(str)) == expected_pandas(TABLES[what], form)
    assert len(frame) > 0


@pytest.mark.parametrize(("what", "form"), TEXT_FORMS)
def test_duckdb_reads_every_text_export_with_the_documented_types(
    exports: tuple[ExportData, Path], what: str, form: str
) -> None:
    _, folder = exports
    name = f"{what}.{form}"
    assert read_duckdb(folder / name, fields_of(folder, name)) == expected_duckdb(
        TABLES[what], form
    )


@pytest.mark.parametrize("what", ["runs", "measurements", "verdicts"])
def test_parquet_loads_as_it_is_partitioned_by_day(
    exports: tuple[ExportData, Path], what: str
) -> None:
    _, folder = exports
    table = TABLES[what]
    assert sorted(p.name for p in (folder / what).iterdir()) == [
        "day=2025-03-01",
        "day=2025-03-02",
    ]
    frame = pd.read_parquet(folder / what, dtype_backend="numpy_nullable")
    expected = {}
    for name, column in zip(table.jsonl_names, table.columns, strict=True):
        nullable = {ColumnType.NUMBER: "Float64", ColumnType.DETAILS: "string"}
        expected[name] = nullable.get(column.type) or PANDAS_DTYPES.get(column.type, "object")
    assert dict(frame.dtypes.astype(str)) == {**expected, "day": "category"}
    glob = str(folder / what / "**" / "*.parquet")
    with duckdb.connect() as con:
        described = con.execute(
            "DESCRIBE SELECT * FROM read_parquet(?, hive_partitioning = true)", [glob]
        ).fetchall()
    details_as_text = [
        (n, "VARCHAR" if t == "JSON" else t) for n, t in expected_duckdb(table, "parquet")
    ]
    assert [(row[0], row[1]) for row in described] == [*details_as_text, ("day", "DATE")]


def test_loaded_values_are_the_stored_ones_in_every_format(
    exports: tuple[ExportData, Path],
) -> None:
    data, folder = exports
    frames = {
        form: read_pandas(folder / f"verdicts.{form}", fields_of(folder, f"verdicts.{form}"))
        for form in ("csv", "jsonl")
    }
    frames["parquet"] = pd.read_parquet(folder / "verdicts", dtype_backend="numpy_nullable")
    for form, frame in frames.items():
        assert list(frame["rules_version"]) == [RULES_VERSION] * 2, form
        assert list(frame["measured_at"]) == [v.measured_at for v in data.verdicts], form
        assert list(frame["asn"]) == [58224, 3320], form
    runs = pd.read_parquet(folder / "runs", dtype_backend="numpy_nullable")
    assert list(runs["vpn_suspected"]) == [False, True]
    assert runs["finished_at"].isna().tolist() == [False, True]
    # The naive failure count, after keeping the rows the role column names primary.
    measurements = pd.read_parquet(folder / "measurements", dtype_backend="numpy_nullable")
    primary = measurements[measurements["role"] == "primary"]
    assert primary["failure"].notna().sum() == 1
    assert measurements["failure"].notna().sum() == 2  # with the protocol probe's eof_error
    events = read_pandas(folder / "events.jsonl", fields_of(folder, "events.jsonl"))
    assert events["onset"].dt.tz is not None and events["onset"].notna().all()
