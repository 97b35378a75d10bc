"""The data dictionary: every column of every export, its type, its meaning and the typed record
it comes from, as data.

The exports' column orders (analysis.export), the Frictionless Data Package descriptor written
beside each export (https://specs.frictionlessdata.io/data-package/, Table Schema:
https://specs.frictionlessdata.io/table-schema/), `probe export --schema` and
docs/data-dictionary.md are all made from the tables here, so they cannot disagree. The columns
are a contract with researchers' scripts: new ones are appended (before `details_json` in the
measurements), never renamed or reordered.
"""

from __future__ import annotations

import builtins
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from analysis.model import Event, EventKind
from probe.model import (
    Connectivity,
    DifferentialKind,
    DnsQuery,
    HttpTransaction,
    Layer,
    Measurement,
    NetworkInfo,
    Observation,
    Operation,
    Role,
    Run,
    TlsHandshake,
)
from probe.outputs import atomic_output
from probe.records import Confidence, Status, Verdict

# The text form of every exported time: UTC, microseconds, Z (fixed width, so it sorts).
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class ColumnType(StrEnum):
    """A column's type, as the dictionary names it (each format spells it its own way)."""

    TEXT = "text"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    TIME = "time"
    TEXT_LIST = "text list"
    INTEGER_LIST = "integer list"
    DETAILS = "JSON object"


class Format(StrEnum):
    """The export formats."""

    CSV = "csv"
    JSONL = "jsonl"
    PARQUET = "parquet"


@dataclass(frozen=True, slots=True)
class Column:
    """One exported column.

    `values`: the closed set of values it takes (empty: open); `record`: the typed record and
    field it is read from, so a test can hold the type to the record's annotation.
    """

    name: str
    type: ColumnType
    meaning: str
    values: tuple[str, ...] = ()
    record: tuple[builtins.type, str] | None = None
    jsonl_name: str | None = None  # its key in JSON Lines and its Parquet name, when not `name`


@dataclass(frozen=True, slots=True)
class Table:
    """One kind of export: what a row is, its columns in order, and the time it is filed under
    (a Parquet export is partitioned by that column's UTC day)."""

    name: str
    rows: str
    columns: tuple[Column, ...]
    day_of: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """The CSV header."""
        return tuple(c.name for c in self.columns)

    @property
    def jsonl_names(self) -> tuple[str, ...]:
        """The JSON Lines keys (and Parquet column names)."""
        return tuple(c.jsonl_name or c.name for c in self.columns)


def _values(enum: type[StrEnum]) -> tuple[str, ...]:
    return tuple(member.value for member in enum)


_CATEGORY = (
    "the Citizen Lab test-list category (e.g. NEWS, HUMR, COMT) of a target from a configured "
    "test list; empty for catalog and config targets"
)

MEASUREMENTS = Table(
    name="measurements",
    rows="One row per measurement (one check of one endpoint), in time order.",
    day_of="started_at",
    columns=(
        Column(
            "measurement_id",
            ColumnType.TEXT,
            "32 hex digits, unique across probes and databases (older rows: uuid4 hex); within a "
            "run, in the order the measurements were made",
            record=(Measurement, "id"),
        ),
        Column(
            "run_id",
            ColumnType.TEXT,
            "the run that made the measurement",
            record=(Measurement, "run_id"),
        ),
        Column(
            "probe_id",
            ColumnType.TEXT,
            "the probe (random; never derived from the host)",
            record=(Run, "probe_id"),
        ),
        Column(
            "asn",
            ColumnType.INTEGER,
            "the probe network's AS number, from the run; empty if unknown",
            record=(NetworkInfo, "asn"),
        ),
        Column(
            "country",
            ColumnType.TEXT,
            "the probe network's ISO 3166 country code, from the run; empty if unknown",
            record=(NetworkInfo, "country"),
        ),
        Column(
            "platform",
            ColumnType.TEXT,
            "catalog platform (telegram, whatsapp, ...) or testlist",
            record=(Measurement, "platform"),
        ),
        Column(
            "target",
            ColumnType.TEXT,
            "the target's name within the platform",
            record=(Measurement, "target"),
        ),
        Column(
            "endpoint",
            ColumnType.TEXT,
            "what was tested: the resolver (dns), address:port (tcp, tls) or the URL (http)",
            record=(Observation, "endpoint"),
        ),
        Column(
            "layer",
            ColumnType.TEXT,
            "the layer tested",
            values=_values(Layer),
            record=(Observation, "layer"),
        ),
        Column(
            "differential_kind",
            ColumnType.TEXT,
            "empty for the target's own checks; sni "
            "or host: the harmless half of an A/B test on the same address; protocol: a "
            "protocol probe; raw: a packet capture (see role)",
            values=_values(DifferentialKind),
            record=(Observation, "differential_kind"),
        ),
        Column(
            "started_at",
            ColumnType.TIME,
            "when the check started (UTC), to the second (older rows: microseconds); rows of one "
            "second are ordered by measurement_id",
            record=(Observation, "started_at"),
        ),
        Column(
            "duration_ms",
            ColumnType.NUMBER,
            "how long it took, monotonic clock",
            record=(Observation, "duration_ms"),
        ),
        Column(
            "failure",
            ColumnType.TEXT,
            "OONI failure string (df-007); empty on success. Count failures of role primary only",
            record=(Observation, "failure"),
        ),
        Column(
            "failed_operation",
            ColumnType.TEXT,
            "the operation that failed; empty on success",
            values=_values(Operation),
            record=(Observation, "failed_operation"),
        ),
        Column(
            "dns_addresses",
            ColumnType.TEXT,
            "dns: the answers (A then AAAA), space-separated",
            record=(DnsQuery, "addresses"),
        ),
        Column(
            "tls_version",
            ColumnType.TEXT,
            "tls: the negotiated version, e.g. TLSv1.3",
            record=(TlsHandshake, "version"),
        ),
        Column(
            "http_status",
            ColumnType.INTEGER,
            "http: the final status code",
            record=(HttpTransaction, "status"),
        ),
        Column(
            "http_body_length",
            ColumnType.INTEGER,
            "http: body bytes read (capped; see details.body_truncated)",
            record=(HttpTransaction, "body_length"),
        ),
        Column(
            "http_title",
            ColumnType.TEXT,
            "http: the page title, whitespace collapsed",
            record=(HttpTransaction, "title"),
        ),
        Column(
            "failure_detail",
            ColumnType.TEXT,
            "unknown_failure only: the error's free text "
            "(a dependency's message, which may change: join on failure, never on this)",
            record=(Observation, "failure_detail"),
        ),
        Column(
            "role",
            ColumnType.TEXT,
            "what the measurement is for: primary is the target's "
            "own check; ab_control (the harmless half of an A/B test), protocol_probe, "
            "raw_capture and redirect_lookup are controls and evidence beside it, not tests "
            "of the target (a protocol probe usually ends in eof_error on an open network)",
            values=_values(Role),
            record=(Observation, "role"),
        ),
        Column("category_code", ColumnType.TEXT, _CATEGORY),
        Column(
            "details_json",
            ColumnType.DETAILS,
            "every detail recorded, compact JSON: one "
            "typed record per layer, its keys in docs/details.md",
            record=(Observation, "details"),
            jsonl_name="details",
        ),
    ),
)

VERDICTS = Table(
    name="verdicts",
    rows="One row per (run, platform, target): the verdict of the rules in analysis/rules.py, "
    "in time order.",
    day_of="measured_at",
    columns=(
        Column(
            "run_id", ColumnType.TEXT, "the run the verdict belongs to", record=(Verdict, "run_id")
        ),
        Column("probe_id", ColumnType.TEXT, "the probe that ran it", record=(Verdict, "probe_id")),
        Column(
            "measured_at", ColumnType.TIME, "the run's start (UTC)", record=(Verdict, "measured_at")
        ),
        Column(
            "asn",
            ColumnType.INTEGER,
            "the probe's network at the time; empty if unknown",
            record=(Verdict, "asn"),
        ),
        Column(
            "country",
            ColumnType.TEXT,
            "its ISO 3166 country code; empty if unknown",
            record=(Verdict, "country"),
        ),
        Column("platform", ColumnType.TEXT, "the platform judged", record=(Verdict, "platform")),
        Column("target", ColumnType.TEXT, "the target judged", record=(Verdict, "target")),
        Column(
            "status",
            ColumnType.TEXT,
            "ok; blocked; down (the control fails too); "
            "inconclusive (no working control: never counted as blocked)",
            values=_values(Status),
            record=(Verdict, "status"),
        ),
        Column(
            "technique",
            ColumnType.TEXT,
            "how it was blocked (dns.bogon, tcp.timeout, "
            "tls.sni_reset, http.blockpage, throttling, ...); blocked only",
            record=(Verdict, "technique"),
        ),
        Column(
            "confidence",
            ColumnType.TEXT,
            "confirmed (fingerprint or A/B proof) or anomaly; blocked only",
            values=_values(Confidence),
            record=(Verdict, "confidence"),
        ),
        Column(
            "rule_id",
            ColumnType.TEXT,
            "the rule that decided (ids are never renamed)",
            record=(Verdict, "rule_id"),
        ),
        Column(
            "rules_version",
            ColumnType.TEXT,
            "the rules version that wrote the row (text: 2025.10 is not 2025.1)",
            record=(Verdict, "rules_version"),
        ),
        Column(
            "evidence",
            ColumnType.TEXT_LIST,
            "the ids of the measurements the rule read (space-separated in CSV)",
            record=(Verdict, "evidence"),
        ),
        Column("detail", ColumnType.TEXT, "why, in a sentence", record=(Verdict, "detail")),
        Column("category_code", ColumnType.TEXT, _CATEGORY),
    ),
)

EVENTS = Table(
    name="events",
    rows="One row per event the detector finds in the exported verdicts (same filters), "
    "sorted by onset.",
    columns=(
        Column(
            "kind",
            ColumnType.TEXT,
            "blocking; intermittent (comes and goes); partial "
            "(some targets blocked, others ok); technique_change",
            values=_values(EventKind),
            record=(Event, "kind"),
        ),
        Column("platform", ColumnType.TEXT, "the platform affected", record=(Event, "platform")),
        Column(
            "asn",
            ColumnType.INTEGER,
            "the network when the event is confined to one; empty when it spans several",
            record=(Event, "asn"),
        ),
        Column(
            "networks",
            ColumnType.INTEGER_LIST,
            "every network in scope (space-separated "
            "in CSV, 'unknown' for verdicts without one; null in a list)",
            record=(Event, "networks"),
        ),
        Column(
            "technique",
            ColumnType.TEXT,
            "dominant technique at onset; 'old -> new' for a technique change",
            record=(Event, "technique"),
        ),
        Column(
            "onset",
            ColumnType.TIME,
            "start of the first hour of the evidence (UTC)",
            record=(Event, "onset"),
        ),
        Column(
            "end",
            ColumnType.TIME,
            "start of the first hour back to ok; empty while ongoing "
            "(a technique change: its moment)",
            record=(Event, "end"),
        ),
        Column("ongoing", ColumnType.BOOLEAN, "still going on at the end of the data"),
        Column(
            "targets",
            ColumnType.TEXT_LIST,
            "the targets affected (space-separated in CSV)",
            record=(Event, "targets"),
        ),
        Column(
            "hosts",
            ColumnType.INTEGER,
            "distinct probes whose verdicts agree",
            record=(Event, "hosts"),
        ),
        Column(
            "rate",
            ColumnType.NUMBER,
            "share of runs blocked during an intermittent event (0..1); empty for other kinds",
            record=(Event, "rate"),
        ),
        Column(
            "runs",
            ColumnType.INTEGER,
            "runs that judged the event's targets ok or blocked during it (each run once, however"
            " many targets it judged)",
            record=(Event, "runs"),
        ),
        Column("detail", ColumnType.TEXT, "the event in a sentence", record=(Event, "detail")),
    ),
)

RUNS = Table(
    name="runs",
    rows="One row per run (one execution of the probe, or one imported OONI report), in time "
    "order: filter VPN-suspected or offline runs out before counting.",
    day_of="started_at",
    columns=(
        Column("run_id", ColumnType.TEXT, "uuid4 hex", record=(Run, "id")),
        Column("probe_id", ColumnType.TEXT, "the probe that ran it", record=(Run, "probe_id")),
        Column(
            "started_at",
            ColumnType.TIME,
            "when it started (UTC, to the second)",
            record=(Run, "started_at"),
        ),
        Column(
            "finished_at",
            ColumnType.TIME,
            "when it finished; empty for a run that never did",
            record=(Run, "finished_at"),
        ),
        Column(
            "asn",
            ColumnType.INTEGER,
            "the probe network's AS number; empty if unknown",
            record=(NetworkInfo, "asn"),
        ),
        Column("as_name", ColumnType.TEXT, "its AS name", record=(NetworkInfo, "as_name")),
        Column(
            "country", ColumnType.TEXT, "its ISO 3166 country code", record=(NetworkInfo, "country")
        ),
        Column(
            "resolver_asn",
            ColumnType.INTEGER,
            "the AS of the resolver the system uses",
            record=(NetworkInfo, "resolver_asn"),
        ),
        Column(
            "resolver_as_name",
            ColumnType.TEXT,
            "that AS's name",
            record=(NetworkInfo, "resolver_as_name"),
        ),
        Column(
            "resolver_country",
            ColumnType.TEXT,
            "that AS's country",
            record=(NetworkInfo, "resolver_country"),
        ),
        Column(
            "network_source",
            ColumnType.TEXT,
            "where the network fields came from (helper, config, mmdb, ooni, unknown)",
            record=(NetworkInfo, "source"),
        ),
        Column(
            "vpn_suspected",
            ColumnType.BOOLEAN,
            "true: the network looked like a VPN or "
            "proxy (its results may not be the ISP's); empty: not checked",
            record=(NetworkInfo, "vpn_suspected"),
        ),
        Column(
            "connectivity",
            ColumnType.TEXT,
            "whether the control sites showed a working network",
            values=_values(Connectivity),
            record=(Run, "connectivity"),
        ),
        Column(
            "interrupted",
            ColumnType.BOOLEAN,
            "stopped before it measured everything",
            record=(Run, "interrupted"),
        ),
        Column(
            "software_version",
            ColumnType.TEXT,
            "the probe's version",
            record=(Run, "software_version"),
        ),
        Column(
            "rules_version",
            ColumnType.TEXT,
            "the rules version(s) that wrote its verdicts, "
            "space-separated if re-judged; empty without verdicts",
        ),
        Column(
            "config_digest",
            ColumnType.TEXT,
            "digest of the settings' meaning (same digest, same configuration)",
            record=(Run, "config_digest"),
        ),
        Column("blocked", ColumnType.INTEGER, "its blocked verdicts"),
        Column("ok", ColumnType.INTEGER, "its ok verdicts"),
        Column("down", ColumnType.INTEGER, "its down verdicts"),
        Column("inconclusive", ColumnType.INTEGER, "its inconclusive verdicts"),
    ),
)

TABLES: dict[str, Table] = {t.name: t for t in (RUNS, MEASUREMENTS, VERDICTS, EVENTS)}

# Table Schema field types per format (https://specs.frictionlessdata.io/table-schema/#types).
_FIELD_TYPES: dict[ColumnType, tuple[str, str]] = {  # (CSV, JSON Lines / Parquet)
    ColumnType.TEXT: ("string", "string"),
    ColumnType.INTEGER: ("integer", "integer"),
    ColumnType.NUMBER: ("number", "number"),
    ColumnType.BOOLEAN: ("boolean", "boolean"),
    ColumnType.TIME: ("datetime", "datetime"),
    ColumnType.TEXT_LIST: ("string", "array"),
    ColumnType.INTEGER_LIST: ("string", "array"),
    ColumnType.DETAILS: ("object", "object"),
}
_ITEM_TYPES = {ColumnType.TEXT_LIST: "string", ColumnType.INTEGER_LIST: "integer"}


def table_schema(table: Table, form: Format) -> dict[str, Any]:
    """The Frictionless Table Schema of `table` as written in `form`."""
    fields: list[dict[str, Any]] = []
    for column in table.columns:
        csv_type, json_type = _FIELD_TYPES[column.type]
        field: dict[str, Any] = {
            "name": column.name if form is Format.CSV else column.jsonl_name or column.name,
            "type": csv_type if form is Format.CSV else json_type,
            "description": column.meaning,
        }
        if field["type"] == "array":
            field["itemType"] = _ITEM_TYPES[column.type]
        if column.type is ColumnType.TIME and form is not Format.PARQUET:
            field["format"] = TIME_FORMAT
        if column.type is ColumnType.BOOLEAN and form is Format.CSV:
            field["trueValues"], field["falseValues"] = ["true"], ["false"]
        if column.values:
            field["constraints"] = {"enum": list(column.values)}
        fields.append(field)
    schema: dict[str, Any] = {"fields": fields, "missingValues": [""]}
    if table is MEASUREMENTS:
        schema["primaryKey"] = ["measurement_id"]
    elif table is RUNS:
        schema["primaryKey"] = ["run_id"]
    return schema


def resource(table: Table, form: Format, paths: Sequence[str]) -> dict[str, Any]:
    """The Data Package resource of one export: its file (or Parquet parts) and schema."""
    # Unique within a package of several exports: the file's (or Parquet folder's) name.
    name = re.sub(r"[^a-z0-9._-]+", "-", paths[0].split("/")[0].lower()).strip("-.")
    described: dict[str, Any] = {
        "name": name or table.name,
        "path": paths[0] if len(paths) == 1 else list(paths),
        "profile": "tabular-data-resource",
        "format": str(form),
        "description": table.rows,
        "schema": table_schema(table, form),
    }
    if form is Format.CSV:
        described["mediatype"] = "text/csv"
        described["encoding"] = "utf-8"
        described["dialect"] = {"delimiter": ",", "quoteChar": '"', "header": True}
    elif form is Format.JSONL:
        described["mediatype"] = "application/x-ndjson"
        described["encoding"] = "utf-8"
    else:
        described["mediatype"] = "application/vnd.apache.parquet"
    return described


DESCRIPTOR = "datapackage.json"

# What a spreadsheet reads as the start of a formula (OWASP, "CSV Injection"): a CSV text cell
# starting with one of them (also after leading blanks) is written with a leading "'".
FORMULA_START = "=+-@\t\r"
_FORMULA_NAMES = {"\t": "a tab", "\r": "a carriage return"}


class DescriptorError(ValueError):
    """A datapackage.json beside the export that is not a Data Package: left as it was."""


def save_descriptor(directory: Path, described: dict[str, Any]) -> Path:
    """Write (or update) directory/datapackage.json with `described`; return its path.

    A descriptor already there keeps its other resources: one whose path is the same file is
    replaced, so exports of several tables into one folder make one package."""
    path = directory / DESCRIPTOR
    package: dict[str, Any] = {"profile": "tabular-data-package", "resources": []}
    if path.exists():
        try:
            package = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise DescriptorError(f"{path}: not a readable Data Package ({exc})") from None
        if not isinstance(package, dict) or not isinstance(package.get("resources"), list):
            raise DescriptorError(f"{path}: not a Data Package (no resources list)")
    kept = [
        r
        for r in package["resources"]
        if not (isinstance(r, dict) and r.get("path") == described["path"])
    ]
    package["resources"] = [*kept, described]
    # Through a fresh temporary name (probe.outputs): a fixed one in a shared folder (/tmp) could
    # be a symlink someone planted there, and writing through it replaced what it named.
    with atomic_output(path) as handle:
        handle.write(json.dumps(package, indent=2) + "\n")
    return path


def markdown() -> str:
    """docs/data-dictionary.md: every table and column, generated from the tables here."""
    lines = [
        "# Data dictionary",
        "",
        "<!-- Generated from analysis/dictionary.py by `python3 -m analysis.dictionary`; "
        "a test fails when it is stale. -->",
        "",
        "`probe export --what runs|measurements|verdicts|events` writes one of these tables as "
        "CSV (`--csv FILE`), JSON Lines (`--jsonl FILE`) or Parquet (`--parquet DIR`, "
        "partitioned by UTC day, not for events), with a Frictionless `datapackage.json` "
        "beside it that gives every column's type (`probe export --schema` prints it). "
        "Columns are only ever appended (measurements: before `details_json`), never renamed "
        "or reordered.",
        "",
        "Types: *text* stays text (`rules_version` 2025.10 is not a number); *time* is UTC, "
        "written `2024-11-20T09:30:00.123456Z` in CSV and JSON Lines and as a UTC timestamp "
        "(microseconds) in Parquet; a *list* is space-separated in CSV and a list in JSON "
        "Lines and Parquet; the measurements' `details_json` (CSV, Parquet) is `details`, an "
        "object, in JSON Lines. An empty CSV cell, a JSON `null` and a Parquet null mean "
        "none or unknown. A Parquet export adds the partition column `day` (`YYYY-MM-DD`).",
        "",
        "CSV text cells that a spreadsheet would read as a formula (starting with "
        + ", ".join(_FORMULA_NAMES.get(c, f"`{c}`") for c in FORMULA_START)
        + ", also after leading blanks) are written with a leading `'` (OWASP, \"CSV "
        'Injection"), so that opening an export runs nothing; strip it to get the text. '
        "Numbers are never changed, and JSON Lines and Parquet keep the text as it came "
        "(titles, names and details come from servers, test lists and other volunteers).",
        "",
    ]
    for table in (RUNS, MEASUREMENTS, VERDICTS, EVENTS):
        lines += [f"## {table.name}", "", table.rows, "", "| column | type | meaning |"]
        lines.append("| --- | --- | --- |")
        for column in table.columns:
            meaning = column.meaning
            if column.values:
                meaning += ": " + ", ".join(f"`{v}`" for v in column.values)
            name = f"`{column.name}`"
            if column.jsonl_name:
                name += f" (`{column.jsonl_name}` in JSON Lines)"
            lines.append(f"| {name} | {column.type} | {meaning.replace('|', '/')} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(), end="")
