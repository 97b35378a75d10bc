"""Citizen Lab test lists load; a malformed row is reported with its line number and skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from probe.model import TargetKind
from probe.testlists import TestListError, load_test_list

HEADER = "url,category_code,category_description,date_added,source,notes\n"


def test_rows_become_targets_grouped_by_category(tmp_path: Path) -> None:
    path = tmp_path / "ir.csv"
    path.write_text(
        HEADER
        + "http://news.example/,NEWS,News Media,2014-04-15,citizenlab,\n"
        + 'https://blog.example:8443/a?b=1,POLR,Political Criticism,2015-01-01,citizenlab,"x, y"\n'
    )
    result = load_test_list(path)
    assert result.problems == ()
    first, second = result.targets
    assert (first.kind, first.host, first.ports, first.group) == (
        TargetKind.HTTP,
        "news.example",
        (80,),
        "NEWS",
    )
    assert (second.host, second.ports, second.path) == ("blog.example", (8443,), "/a?b=1")
    assert second.url == "https://blog.example:8443/a?b=1"


def test_malformed_rows_are_skipped_with_their_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text(
        HEADER
        + "http://ok.example/,NEWS,News,2014-04-15,citizenlab,\n"
        + "not a url,NEWS,News,2014-04-15,citizenlab,\n"
        + "http://short.example/,NEWS\n"
        + "http://ok.example/,NEWS,News,2014-04-15,citizenlab,\n"
        + "\n"
        + "https://last.example/,GRP,Groups,2020-01-01,citizenlab,\n"
    )
    result = load_test_list(path)
    assert [t.host for t in result.targets] == ["ok.example", "last.example"]
    assert len(result.problems) == 3
    assert result.problems[0].startswith(f"{path}:3:")
    assert f"{path}:4:" in result.problems[1] and "columns" in result.problems[1]
    assert f"{path}:5:" in result.problems[2] and "duplicate" in result.problems[2]


def test_a_file_that_is_not_a_test_list_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("name,age\nbob,3\n")
    with pytest.raises(TestListError, match="not a Citizen Lab test list"):
        load_test_list(path)


def test_a_missing_test_list_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TestListError, match="cannot read test list"):
        load_test_list(tmp_path / "absent.csv")


def test_the_real_iran_list_loads_when_present() -> None:
    path = Path(__file__).resolve().parents[2] / "shared/data/citizenlab-test-lists/ir.csv"
    if not path.is_file():
        pytest.skip("shared/ test lists are not beside this checkout")
    result = load_test_list(path)
    assert len(result.targets) > 800
    assert all(t.kind in (TargetKind.HTTP, TargetKind.HTTPS) for t in result.targets)
