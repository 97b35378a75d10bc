"""The data dictionary and what `probe export` writes beside the data: the columns' types held
to the typed records they come from, docs/data-dictionary.md kept generated, the Frictionless
datapackage.json, the runs table, the role and category_code columns, and the Parquet option's
errors (which need no pyarrow)."""

from __future__ import annotations

import csv
import importlib.util
import json
import types
import typing
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest

from analysis.dictionary import (
    TABLES,
    TIME_FORMAT,
    Column,
    ColumnType,
    markdown,
)
from analysis.export import JSONL_FIELDS, MEASUREMENT_COLUMNS, RUN_COLUMNS, VERDICT_COLUMNS
from probe.model import Role
from tests.cli import REPO, invoke
from tests.export_store import NEWS_URL, RULES_VERSION, ExportData, build_export_store

DICTIONARY = REPO / "docs" / "data-dictionary.md"


@pytest.fixture
def data(tmp_path: Path) -> ExportData:
    return build_export_store(tmp_path)


def export(data: ExportData, what: str, option: str, out: Path, *extra: str) -> str:
    code, _, err = invoke(
        "export", "--what", what, option, str(out), "--db", str(data.db),
        "--test-list", str(data.test_list), *extra,
    )  # fmt: skip
    assert code == 0, err
    return err


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_the_data_dictionary_in_the_repository_is_generated_from_the_tables() -> None:
    assert DICTIONARY.read_text(encoding="utf-8") == markdown(), (
        "docs/data-dictionary.md is stale: python3 -m analysis.dictionary > docs/data-dictionary.md"
    )
    for table in TABLES.values():
        assert f"## {table.name}" in markdown()
        assert all(f"`{name}`" in markdown() for name in table.names)


def _annotation(owner: type, attribute: str) -> Any:
    member = getattr(owner, attribute, None)
    if isinstance(member, property):
        assert member.fget is not None
        return typing.get_type_hints(member.fget)["return"]
    return typing.get_type_hints(owner)[attribute]


def _without_none(annotation: Any) -> Any:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        kept = [a for a in typing.get_args(annotation) if a is not type(None)]
        assert len(kept) == 1, annotation
        return kept[0]
    return annotation


def _expected_type(column: Column, annotation: Any) -> ColumnType:
    annotation = _without_none(annotation)
    if isinstance(annotation, typing.TypeVar):
        return ColumnType.DETAILS  # Observation.details: the layer's record
    if typing.get_origin(annotation) is tuple:
        item = _without_none(typing.get_args(annotation)[0])
        if item is int:
            return ColumnType.INTEGER_LIST
        # A list flattened into one text cell in every format says so.
        flattened = "space-separated" in column.meaning and "in CSV" not in column.meaning
        return ColumnType.TEXT if flattened else ColumnType.TEXT_LIST
    if isinstance(annotation, type) and issubclass(annotation, StrEnum):
        assert column.values == tuple(m.value for m in annotation), column.name
        return ColumnType.TEXT
    simple = {
        str: ColumnType.TEXT,
        int: ColumnType.INTEGER,
        float: ColumnType.NUMBER,
        bool: ColumnType.BOOLEAN,
        datetime: ColumnType.TIME,
    }
    return simple[annotation]


def test_every_column_has_the_type_of_the_record_field_it_is_read_from() -> None:
    checked = 0
    for table in TABLES.values():
        for column in table.columns:
            if column.record is None:
                continue
            owner, attribute = column.record
            annotation = _annotation(owner, attribute)
            assert column.type is _expected_type(column, annotation), (table.name, column.name)
            checked += 1
    assert checked > 50
    assert TABLES["verdicts"].columns[VERDICT_COLUMNS.index("rules_version")].type == "text"


def test_the_export_columns_are_the_dictionarys() -> None:
    assert TABLES["measurements"].names == MEASUREMENT_COLUMNS
    assert MEASUREMENT_COLUMNS[-1] == "details_json" and JSONL_FIELDS[-1] == "details"
    assert TABLES["runs"].names == RUN_COLUMNS
    # Appended, never reordered: the columns researchers' scripts read by position stay put.
    assert MEASUREMENT_COLUMNS[:20] == (
        "measurement_id", "run_id", "probe_id", "asn", "country", "platform", "target",
        "endpoint", "layer", "differential_kind", "started_at", "duration_ms", "failure",
        "failed_operation", "dns_addresses", "tls_version", "http_status", "http_body_length",
        "http_title", "failure_detail",
    )  # fmt: skip
    assert VERDICT_COLUMNS[-1] == "category_code" and VERDICT_COLUMNS[-2] == "detail"


def test_schema_option_prints_the_descriptor_an_export_writes_beside_its_file(
    data: ExportData, tmp_path: Path
) -> None:
    code, printed, _ = invoke("export", "--what", "verdicts", "--schema")
    assert code == 0
    [described] = json.loads(printed)["resources"]
    fields = {f["name"]: f for f in described["schema"]["fields"]}
    assert fields["rules_version"]["type"] == "string"
    assert fields["measured_at"] == {
        "name": "measured_at",
        "type": "datetime",
        "description": "the run's start (UTC)",
        "format": TIME_FORMAT,
    }
    assert fields["status"]["constraints"] == {"enum": ["ok", "blocked", "down", "inconclusive"]}

    export(data, "verdicts", "--csv", tmp_path / "verdicts.csv")
    package = json.loads((tmp_path / "datapackage.json").read_text(encoding="utf-8"))
    [written] = package["resources"]
    assert written["path"] == "verdicts.csv" and written["schema"] == described["schema"]

    code, printed, _ = invoke("export", "--what", "measurements", "--schema", "--jsonl", "x")
    fields = {f["name"]: f for f in json.loads(printed)["resources"][0]["schema"]["fields"]}
    assert fields["details"]["type"] == "object" and "details_json" not in fields
    assert fields["role"]["constraints"] == {"enum": [r.value for r in Role]}


def test_exports_into_one_folder_make_one_package(data: ExportData, tmp_path: Path) -> None:
    export(data, "runs", "--csv", tmp_path / "runs.csv")
    export(data, "verdicts", "--jsonl", tmp_path / "verdicts.jsonl")
    export(data, "runs", "--csv", tmp_path / "runs.csv")  # again: replaced, not added
    package = json.loads((tmp_path / "datapackage.json").read_text(encoding="utf-8"))
    assert [(r["name"], r["path"], r["format"]) for r in package["resources"]] == [
        ("verdicts.jsonl", "verdicts.jsonl", "jsonl"),
        ("runs.csv", "runs.csv", "csv"),
    ]


def test_a_datapackage_json_that_is_not_one_is_named_and_left_alone(
    data: ExportData, tmp_path: Path
) -> None:
    (tmp_path / "datapackage.json").write_text("[1, 2", encoding="utf-8")
    code, _, err = invoke(
        "export", "--what", "runs", "--csv", str(tmp_path / "runs.csv"), "--db", str(data.db)
    )
    assert code == 1 and "datapackage.json: not a readable Data Package" in err
    assert len(err.strip().splitlines()) == 1
    assert (tmp_path / "datapackage.json").read_text(encoding="utf-8") == "[1, 2"


def test_runs_export_has_the_network_vpn_flag_versions_and_counts(
    data: ExportData, tmp_path: Path
) -> None:
    err = export(data, "runs", "--csv", tmp_path / "runs.csv")
    assert "exported 2 runs" in err
    iran, germany = read_csv(tmp_path / "runs.csv")
    assert tuple(iran) == RUN_COLUMNS
    assert (iran["run_id"], iran["asn"], iran["as_name"], iran["country"]) == (
        data.iran.id, "58224", "TCI", "IR",
    )  # fmt: skip
    assert (iran["vpn_suspected"], germany["vpn_suspected"]) == ("false", "true")
    assert (iran["started_at"], iran["finished_at"]) == (
        "2025-03-01T21:30:00.000000Z",
        "2025-03-01T21:32:00.000000Z",
    )
    assert (germany["finished_at"], germany["interrupted"]) == ("", "true")
    assert iran["rules_version"] == germany["rules_version"] == RULES_VERSION
    assert iran["software_version"] == "0.1.0" and iran["config_digest"] == "sha256:1234"
    assert (iran["blocked"], iran["ok"], germany["ok"]) == ("1", "0", "1")
    assert iran["connectivity"] == "ok" and iran["network_source"] == "helper"

    export(data, "runs", "--jsonl", tmp_path / "runs.jsonl", "--network", "AS3320")
    [record] = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert (record["run_id"], record["vpn_suspected"], record["asn"]) == (
        data.germany.id, True, 3320,
    )  # fmt: skip


def test_measurements_are_the_targets_own_checks_unless_all_roles_are_asked_for(
    data: ExportData, tmp_path: Path
) -> None:
    err = export(data, "measurements", "--csv", tmp_path / "own.csv")
    assert "--all-roles" in err
    own = read_csv(tmp_path / "own.csv")
    assert [r["measurement_id"] for r in own] == [m.id for m in data.primary]
    assert {r["role"] for r in own} == {"primary"}
    # The naive count: one TCP timeout, not the protocol probe's eof_error beside it.
    assert [r["failure"] for r in own if r["failure"]] == ["generic_timeout_error"]

    export(data, "measurements", "--csv", tmp_path / "all.csv", "--all-roles")
    roles = {r["measurement_id"]: r["role"] for r in read_csv(tmp_path / "all.csv")}
    assert roles == {
        "m-own": "primary",
        "m-ab": "ab_control",
        "m-probe": "protocol_probe",
        "m-raw": "raw_capture",
        "m-news": "primary",
    }


def test_category_code_travels_into_the_measurement_and_verdict_exports(
    data: ExportData, tmp_path: Path
) -> None:
    export(data, "measurements", "--csv", tmp_path / "m.csv")
    export(data, "verdicts", "--jsonl", tmp_path / "v.jsonl")
    categories = {r["target"]: r["category_code"] for r in read_csv(tmp_path / "m.csv")}
    assert categories == {"dc1": "", NEWS_URL: "NEWS"}
    lines = (tmp_path / "v.jsonl").read_text().splitlines()
    assert {r["target"]: r["category_code"] for r in map(json.loads, lines)} == {
        "dc1": None,
        NEWS_URL: "NEWS",
    }


def test_parquet_without_pyarrow_is_a_one_line_error(
    data: ExportData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name)
    )
    out = tmp_path / "parquet"
    code, _, err = invoke("export", "--parquet", str(out), "--db", str(data.db))
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "pyarrow" in err and ".[parquet]" in err
    assert not out.exists() and not list(tmp_path.glob(".parquet*"))


def test_parquet_never_writes_into_a_folder_that_has_files(
    data: ExportData, tmp_path: Path
) -> None:
    out = tmp_path / "old"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    code, _, err = invoke("export", "--parquet", str(out), "--db", str(data.db))
    assert code == 1 and "is not empty" in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    code, _, err = invoke("export", "--what", "events", "--parquet", str(tmp_path / "e"))
    assert code == 2 and "--parquet writes runs, measurements or verdicts" in err
