"""The OONI document reader: single .json documents, .jsonl and .jsonl.gz streams, folders; a
bad document is reported with its file and line and reading goes on."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from probe.ooni.reader import (
    RawDocument,
    ReaderError,
    ReadProblem,
    expand_paths,
    read_documents,
    read_file,
)


def _split(results: list[RawDocument | ReadProblem]) -> tuple[list[RawDocument], list[ReadProblem]]:
    docs = [r for r in results if isinstance(r, RawDocument)]
    problems = [r for r in results if isinstance(r, ReadProblem)]
    return docs, problems


def test_every_shared_document_reads_as_one_object(ooni_dir: Path) -> None:
    docs, problems = _split(list(read_documents([ooni_dir])))
    assert problems == []
    assert len(docs) == 55
    assert all(d.location.line == 1 and d.data.get("test_name") for d in docs)
    assert {d.data["test_name"] for d in docs} == {
        "web_connectivity",
        "telegram",
        "whatsapp",
        "signal",
        "facebook_messenger",
    }


def test_jsonl_gz_reports_bad_lines_with_their_number_and_keeps_reading(
    ooni_dir: Path, tmp_path: Path
) -> None:
    real = [json.loads(p.read_text()) for p in sorted(ooni_dir.glob("signal__*.json"))[:3]]
    lines = [
        json.dumps(real[0]),
        "{not json",
        "",
        json.dumps(real[1]),
        "[1, 2, 3]",
        json.dumps(real[2]),
    ]
    path = tmp_path / "2024-01-01.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    docs, problems = _split(list(read_file(path)))
    assert [d.location.line for d in docs] == [1, 4, 6]
    assert [d.data["report_id"] for d in docs] == [r["report_id"] for r in real]
    assert [(p.location.path, p.location.line) for p in problems] == [
        (str(path), 2),
        (str(path), 5),
    ]
    assert problems[0].message.startswith("not JSON")
    assert problems[1].message == "a JSON list, not an object"


def test_an_overlong_line_is_skipped_without_being_loaded(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    small = json.dumps({"test_name": "signal"})
    path.write_text(small + "\n" + json.dumps({"x": "y" * 5000}) + "\n" + small + "\n")
    docs, problems = _split(list(read_file(path, limit=1000)))
    assert [d.location.line for d in docs] == [1, 3]
    assert [(p.location.line, p.message) for p in problems] == [
        (2, "document larger than 1000 bytes")
    ]


def test_a_truncated_gzip_stream_is_a_problem_after_the_documents_before_it(
    tmp_path: Path,
) -> None:
    whole = tmp_path / "whole.jsonl.gz"
    with gzip.open(whole, "wt") as out:
        for i in range(200):
            out.write(json.dumps({"test_name": "telegram", "n": i, "pad": "x" * 200}) + "\n")
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    docs, problems = _split(list(read_file(cut)))
    assert 0 < len(docs) < 200
    assert [d.data["n"] for d in docs] == list(range(len(docs)))
    assert len(problems) == 1
    assert problems[0].location.line == len(docs) + 1
    assert problems[0].message.startswith("unreadable from here on")


def test_an_api_measurement_meta_answer_is_unwrapped(ooni_dir: Path, tmp_path: Path) -> None:
    original = (ooni_dir / "telegram__RU__qnYloXASGMUg2G9O.json").read_text()
    path = tmp_path / "meta.json"
    path.write_text(json.dumps({"measurement_uid": "x", "raw_measurement": original}))
    docs, problems = _split(list(read_file(path)))
    assert problems == []
    assert docs[0].data == json.loads(original)


def test_a_json_array_file_yields_each_document_numbered(tmp_path: Path) -> None:
    path = tmp_path / "saved.json"
    path.write_text(json.dumps([{"test_name": "a"}, 7, {"test_name": "b"}]))
    docs, problems = _split(list(read_file(path)))
    assert [(d.location.line, d.data["test_name"]) for d in docs] == [(1, "a"), (3, "b")]
    assert [p.location.line for p in problems] == [2]


def test_folders_expand_recursively_in_name_order_to_ooni_files_only(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    for name in ("b/2.jsonl.gz", "a.json", "b/1.jsonl", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in expand_paths([tmp_path])] == [
        "a.json",
        "b/1.jsonl",
        "b/2.jsonl.gz",
    ]


def test_a_missing_path_or_a_foreign_file_fails_before_anything_is_read(tmp_path: Path) -> None:
    with pytest.raises(ReaderError, match="no such file or folder"):
        expand_paths([tmp_path / "absent.jsonl"])
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ReaderError, match="not an OONI file"):
        expand_paths([tmp_path / "notes.txt"])
