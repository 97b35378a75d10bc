"""The upload document: one batch of runs, measurements and verdicts, as gzip-compressed JSON.

    {"format": "censorprobe-upload", "version": 1,
     "runs": [codec.encode_run(...)], "measurements": [...], "verdicts": [...]}

Each record is the measurement codec's object (probe.codec), so the collector parses exactly what
the store and the helper speak. `decode_batch` is the collector's gate: the body is decompressed
with a hard output bound (a compression bomb stops at the bound, it is never inflated whole), every
record is parsed and checked (a measurement in the codec's canonical form straight into its row,
probe.collector.rows; anything else by the codec, which names the bad field), and the batch is
checked as a whole: ids are uuid4 hex, strings bounded, no time in the future beyond a small
clock skew, every measurement and verdict belongs to a run of the batch. A batch that fails any
check raises BatchError naming the first bad field.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from probe.codec import (
    CodecError,
    decode_measurement,
    decode_run,
    decode_verdict,
    encode_measurement,
    encode_run,
    encode_verdict,
)
from probe.collector.rows import SURROGATE_ESCAPE, measurement_row, parse_json
from probe.model import Run
from probe.records import Verdict
from probe.store.uploads import Batch, BatchRows, stored_measurement_row, stored_verdict_row

FORMAT = "censorprobe-upload"
VERSION = 1

# Ids the probe makes: uuid4().hex (probe.model, probe.store.migrations).
_ID = re.compile(r"[0-9a-f]{32}\Z")
# Names, endpoints, failure strings: generous, but a record is never a megabyte of one string.
MAX_SHORT_TEXT = 1024
MAX_DETAIL_TEXT = 16 * 1024
MAX_EVIDENCE_IDS = 10_000


class BatchError(ValueError):
    """The upload is not a valid batch; the message names the first problem (a 400)."""


class BatchTooLargeError(BatchError):
    """The upload is larger than the collector accepts (a 413)."""


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """What one batch may hold. The probe's uploader stays well below these."""

    max_decompressed_bytes: int = 16 * 1024 * 1024
    max_runs: int = 1000
    max_measurements: int = 10_000
    max_verdicts: int = 10_000
    # How far ahead of the collector's clock a timestamp may be (probes' clocks drift).
    clock_skew: timedelta = timedelta(minutes=10)


def encode_batch(batch: Batch) -> bytes:
    """The batch as the JSON document (uncompressed)."""
    document = {
        "format": FORMAT,
        "version": VERSION,
        "runs": [encode_run(run) for run in batch.runs],
        "measurements": [encode_measurement(m) for m in batch.measurements],
        "verdicts": [encode_verdict(v) for v in batch.verdicts],
    }
    return json.dumps(document, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def compress(document: bytes) -> bytes:
    # Level 6: most of level 9's ratio on JSON at a fraction of its CPU.
    return gzip.compress(document, compresslevel=6, mtime=0)


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """The body as sent (Content-Encoding gzip or identity), refusing more than `limit` bytes
    out, without ever producing more than limit + 1."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        if len(body) > limit:
            raise BatchTooLargeError(f"the batch is larger than {limit} bytes")
        return body
    if encoding != "gzip":
        raise BatchError(f"unsupported Content-Encoding {encoding[:40]!r}: send gzip")
    inflater = zlib.decompressobj(wbits=31)  # 31: gzip header and trailer
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BatchError(f"the body is not valid gzip ({exc})") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise BatchTooLargeError(f"the batch inflates to more than {limit} bytes")
    if not inflater.eof:
        raise BatchError("the body is not valid gzip (truncated)")
    if inflater.unused_data:
        raise BatchError("the body holds data after the gzip stream")
    return out


def decode_batch(document: bytes, now: datetime, limits: BatchLimits | None = None) -> BatchRows:
    """Parse and check a decompressed upload document into the rows it stores; raise BatchError
    naming what is wrong."""
    limits = limits or BatchLimits()
    if len(document) > limits.max_decompressed_bytes:
        raise BatchTooLargeError(f"the batch is larger than {limits.max_decompressed_bytes} bytes")
    try:
        parsed = parse_json(document)
    except (ValueError, RecursionError) as exc:
        raise BatchError(f"the body is not JSON ({str(exc)[:120]})") from None
    if not isinstance(parsed, Mapping):
        raise BatchError("$: expected an object")
    if SURROGATE_ESCAPE.search(document):
        try:
            json.dumps(parsed, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise BatchError("$: a string holds a lone UTF-16 surrogate (not Unicode)") from None
    if parsed.get("format") != FORMAT:
        raise BatchError(f"$.format: expected {FORMAT!r}")
    if parsed.get("version") != VERSION or isinstance(parsed.get("version"), bool):
        raise BatchError(f"$.version: expected {VERSION}, got {str(parsed.get('version'))[:20]}")
    latest = now + limits.clock_skew
    runs = _entries(parsed, "runs", limits.max_runs)
    measurements = _entries(parsed, "measurements", limits.max_measurements)
    verdicts = _entries(parsed, "verdicts", limits.max_verdicts)
    try:
        runs_by_id = _check_runs(
            [decode_run(e, f"$.runs[{i}]") for i, e in enumerate(runs)], latest
        )
        measurement_rows = _measurement_rows(measurements, runs_by_id, latest)
        verdict_rows = _verdict_rows(
            [decode_verdict(e, f"$.verdicts[{i}]") for i, e in enumerate(verdicts)],
            runs_by_id,
            latest,
        )
    except CodecError as exc:
        raise BatchError(str(exc)) from None
    except RecursionError:  # orjson parses any depth; the codec's readers recurse
        raise BatchError("$: a value is nested too deeply") from None
    return BatchRows(tuple(runs_by_id.values()), measurement_rows, verdict_rows)


def _entries(document: Mapping[str, Any], key: str, limit: int) -> list[Any]:
    entries = document.get(key, [])
    if not isinstance(entries, list):
        raise BatchError(f"$.{key}: expected a list")
    if len(entries) > limit:
        raise BatchTooLargeError(f"$.{key}: more than {limit} records in one batch")
    return entries


def _check_runs(runs: Sequence[Run], latest: datetime) -> dict[str, Run]:
    """The batch's runs by id, each checked."""
    if not runs:
        raise BatchError("$.runs: a batch carries at least one run")
    by_id: dict[str, Run] = {}
    for i, run in enumerate(runs):
        where = f"$.runs[{i}]"
        _id(run.id, f"{where}.id")
        _id(run.probe_id, f"{where}.probe_id")
        if run.id in by_id:
            raise BatchError(f"{where}.id: run {run.id} appears twice")
        by_id[run.id] = run
        _not_future(run.started_at, latest, f"{where}.started_at")
        if run.finished_at is not None:
            _not_future(run.finished_at, latest, f"{where}.finished_at")
            if run.finished_at < run.started_at:
                raise BatchError(f"{where}.finished_at: before the run started")
        for name in ("software_version", "config_digest"):
            _short(getattr(run, name), f"{where}.{name}")
        network = run.network
        for name in ("as_name", "country", "resolver_as_name", "resolver_country", "source"):
            value = getattr(network, name)
            if value is not None:
                _short(value, f"{where}.network.{name}")
        for name in ("asn", "resolver_asn"):
            value = getattr(network, name)
            if value is not None and not 0 <= value < 2**32:
                raise BatchError(f"{where}.network.{name}: not an AS number")
    return by_id


def _measurement_rows(
    entries: Sequence[Any], runs: Mapping[str, Run], latest: datetime
) -> list[dict[str, Any]]:
    """Each entry's row (probe.collector.rows, or through the codec), checked. The checks build
    a field's path only when it fails: a batch holds thousands of records, and a path string
    per field was most of their cost."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        m = measurement_row(entry)
        if m is None:
            m = stored_measurement_row(decode_measurement(entry, f"$.measurements[{i}]"))
        measurement_id, run_id = m["id"], m["run_id"]
        if not _ID.match(measurement_id):
            raise BatchError(f"$.measurements[{i}].id: {_not_an_id(measurement_id)}")
        if measurement_id in seen:
            raise BatchError(f"$.measurements[{i}].id: measurement {measurement_id} appears twice")
        seen.add(measurement_id)
        if run_id not in runs:
            raise BatchError(f"$.measurements[{i}].run_id: run {run_id[:40]} is not in this batch")
        for name, column in _MEASUREMENT_TEXTS:
            value = m[column]
            if value is not None and (problem := _text_problem(value)):
                raise BatchError(f"$.measurements[{i}].{name}: {problem}")
        if m["started_at"] > latest:
            raise BatchError(
                f"$.measurements[{i}].observation.started_at: {_future(m['started_at'])}"
            )
        rows.append(m)
    return rows


# The text columns of a measurement row, with the field each comes from in the upload.
_MEASUREMENT_TEXTS = (
    ("platform", "platform"),
    ("target", "target"),
    ("observation.endpoint", "endpoint"),
    ("observation.failure", "failure"),
)


def _verdict_rows(
    verdicts: Sequence[Verdict], runs: Mapping[str, Run], latest: datetime
) -> list[dict[str, Any]]:
    keys: set[tuple[str, str, str]] = set()
    for i, v in enumerate(verdicts):
        run = runs.get(v.run_id)
        if run is None:
            raise BatchError(f"$.verdicts[{i}].run_id: run {v.run_id[:40]} is not in this batch")
        if v.probe_id != run.probe_id:
            raise BatchError(f"$.verdicts[{i}].probe_id: not the probe of run {v.run_id}")
        key = (v.run_id, v.platform, v.target)
        if key in keys:
            raise BatchError(f"$.verdicts[{i}]: a second verdict for {v.platform}/{v.target[:40]}")
        keys.add(key)
        for name, value, limit in (
            ("platform", v.platform, MAX_SHORT_TEXT),
            ("target", v.target, MAX_SHORT_TEXT),
            ("rule_id", v.rule_id, MAX_SHORT_TEXT),
            ("rules_version", v.rules_version, MAX_SHORT_TEXT),
            ("technique", v.technique, MAX_SHORT_TEXT),
            ("country", v.country, MAX_SHORT_TEXT),
            ("detail", v.detail, MAX_DETAIL_TEXT),
        ):
            if value is not None and (problem := _text_problem(value, limit)):
                raise BatchError(f"$.verdicts[{i}].{name}: {problem}")
        if v.asn is not None and not 0 <= v.asn < 2**32:
            raise BatchError(f"$.verdicts[{i}].asn: not an AS number")
        if len(v.evidence) > MAX_EVIDENCE_IDS:
            raise BatchError(f"$.verdicts[{i}].evidence: more than {MAX_EVIDENCE_IDS} ids")
        for j, evidence in enumerate(v.evidence):
            if not _ID.match(evidence):
                raise BatchError(f"$.verdicts[{i}].evidence[{j}]: {_not_an_id(evidence)}")
        if v.measured_at > latest:
            raise BatchError(f"$.verdicts[{i}].measured_at: {_future(v.measured_at)}")
    return [stored_verdict_row(v) for v in verdicts]


def _not_an_id(value: str) -> str:
    return f"{value[:40]!r} is not an id (32 lowercase hex digits)"


def _id(value: str, where: str) -> None:
    if not _ID.match(value):
        raise BatchError(f"{where}: {_not_an_id(value)}")


def _text_problem(value: str, limit: int = MAX_SHORT_TEXT) -> str | None:
    """What is wrong with a text column's value, or None: bounded, and without NUL, which
    PostgreSQL text cannot hold (in the details JSON a NUL is written as the escape \\u0000,
    which it can)."""
    if len(value) > limit:
        return f"longer than {limit} characters"
    if "\x00" in value:
        return "holds a NUL character"
    return None


def _short(value: str, where: str, limit: int = MAX_SHORT_TEXT) -> None:
    problem = _text_problem(value, limit)
    if problem:
        raise BatchError(f"{where}: {problem}")


def _future(moment: datetime) -> str:
    return f"{moment.isoformat()} is in the future"


def _not_future(moment: datetime, latest: datetime, where: str) -> None:
    if moment > latest:
        raise BatchError(f"{where}: {_future(moment)}")
