"""Adversarial terminal suite: text from outside (test lists, config, merged databases, servers)
reaches the volunteer's terminal with its rich markup escaped and its control and bidi characters
made visible, in every sink: the run table, the report, schedule status, errors, a whole run.

Each sink test has its negative control: the same hostile text through rich's own markup escape
alone does reach the terminal raw (so finding none means our helper removed it).
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from rich.console import Console, RenderableType
from rich.markup import escape
from typer.testing import CliRunner

from analysis.report.build import build_report
from probe.cli.app import app
from probe.cli.base import user_errors
from probe.cli.render import report_tables, run_view
from probe.cli.schedule import _render_status
from probe.cli.terminal import plain, visible
from probe.config import ConfigError
from probe.model import Layer
from probe.records import Confidence, PlatformStatus, PlatformSummary, Status, Verdict
from probe.schedule.commands import Backend, ScheduleStatus
from probe.store import Store
from tests.sites import Site
from tests.store_rows import make_measurement, make_run

OSC_LINK = "\x1b]8;;https://evil.example/\x07click\x1b]8;;\x07"
CLEAR_SCREEN = "\x1b[2J\x1b[H"
C1_CSI = "\x9b31m"
BIDI = "\u202egnp.exe"  # reads as "exe.png"
MARKUP = "[/x] [link=https://evil.example/]x[/link] [bold red]"
HOSTILE = f"{MARKUP} {OSC_LINK} {CLEAR_SCREEN} {C1_CSI} {BIDI}"
RAW = ("\x1b", "\x9b", "\u202e", "\x07")


def _printed(*renderables: RenderableType | str) -> str:
    out = io.StringIO()
    console = Console(file=out, color_system=None, width=300, legacy_windows=False)
    for renderable in renderables:
        console.print(renderable, soft_wrap=True)
    return out.getvalue()


def _raw_in(text: str) -> list[str]:
    return [c for c in RAW if c in text]


def test_plain_escapes_markup_and_makes_controls_visible() -> None:
    shown = _printed(plain(HOSTILE))
    assert _raw_in(shown) == []
    assert "[/x]" in shown and "[link=https://evil.example/]" in shown
    assert "\\x1b]8;;https://evil.example/\\x07" in shown and "\\u202e" in shown
    assert "\\x9b" in shown


def test_plain_leaves_ordinary_text_alone() -> None:
    # Persian titles and punctuation are data, not attacks.
    text = "دسترسی غیرمجاز Access denied (403): telegram.org/a?b=1"
    assert _printed(plain(text)).rstrip("\n") == text
    assert visible(text) == text


def test_rich_escape_alone_lets_controls_through() -> None:
    # The negative control of every sink below.
    # (rich itself drops BEL, not ESC, C1 CSI or the bidi override).
    assert _raw_in(_printed(escape(HOSTILE))) == ["\x1b", "\x9b", "\u202e"]


def _verdict(platform: str, target: str, detail: str, run_id: str = "r1") -> Verdict:
    return Verdict(
        run_id=run_id,
        probe_id="p1",
        measured_at=datetime(2024, 11, 20, 9, 30, tzinfo=UTC),
        asn=58224,
        country="IR",
        platform=platform,
        target=target,
        status=Status.BLOCKED,
        technique="http.blockpage",
        confidence=Confidence.CONFIRMED,
        rule_id="http.blockpage",
        rules_version="1",
        evidence=(),
        detail=detail,
    )


def test_run_table_shows_hostile_names_and_details_inert() -> None:
    summary = PlatformSummary(
        HOSTILE, PlatformStatus.BLOCKED, ("http.blockpage",), 1, 1, detail=HOSTILE
    )
    tables = run_view([summary], [_verdict(HOSTILE, HOSTILE, f"title: {HOSTILE}")], verbose=True)
    shown = _printed(*tables)  # a MarkupError here would abort the run after measuring
    assert _raw_in(shown) == []
    assert shown.count("[/x]") >= 4  # platform and detail, platform, target and detail


def test_report_shows_hostile_database_rows_inert(tmp_path: Path) -> None:
    # A merged volunteer database is outside input: its names reach `probe report`.
    with Store.open(tmp_path / "hostile.db") as store:
        run = make_run(store.probe_id(), asn=58224, country="IR")
        store.start_run(run)
        measurement = make_measurement(run.id, platform=HOSTILE, target=HOSTILE, layer=Layer.HTTP)
        store.save_measurements([measurement])
        store.save_verdicts(run.id, [_verdict(HOSTILE, HOSTILE, HOSTILE, run_id=run.id)])
        report = build_report(store)
    shown = _printed(*report_tables(report))
    assert _raw_in(shown) == []
    assert "[/x]" in shown and "\\u202e" in shown


def test_report_of_measurements_only_shows_hostile_rows_inert(tmp_path: Path) -> None:
    with Store.open(tmp_path / "old.db") as store:
        run = make_run(store.probe_id())
        store.start_run(run)
        store.save_measurements(
            [make_measurement(run.id, platform=HOSTILE, target=HOSTILE, endpoint=HOSTILE)]
        )
        report = build_report(store)
    shown = _printed(*report_tables(report))
    assert "Latest status per platform and endpoint" in shown
    assert _raw_in(shown) == []


def test_schedule_status_shows_a_hostile_log_line_inert(capsys: pytest.CaptureFixture[str]) -> None:
    # The log holds what unattended runs printed (names from test lists, servers' titles).
    state = ScheduleStatus(
        backend=Backend.CRON,
        every="1h",
        entry=HOSTILE,
        log_path=Path("/tmp/probe.log"),
        log_updated=datetime(2024, 11, 20, 9, 30, tzinfo=UTC),
        log_last_line=f"skipped: {HOSTILE}",
        warnings=(HOSTILE,),
    )
    _render_status(state)
    captured = capsys.readouterr()
    assert _raw_in(captured.out + captured.err) == []
    assert "last line: skipped: [/x]" in captured.out


def test_error_message_quoting_hostile_input_is_inert(capsys: pytest.CaptureFixture[str]) -> None:
    @user_errors
    def command() -> None:
        raise ConfigError(f"config.toml: bad platform name {HOSTILE!s}")

    with pytest.raises(typer.Exit):
        command()
    err = capsys.readouterr().err
    assert "bad platform name [/x]" in err
    assert _raw_in(err) == []


def test_run_with_hostile_test_list_rows_measures_and_prints_them_inert(
    site: Site,
    tmp_path: Path,
) -> None:
    test_list = tmp_path / "hostile.csv"
    test_list.write_text(
        "url,category_code,category_description,date_added,source,notes\n"
        f"https://news.lo.test/[/x]{BIDI},NEWS,{MARKUP},2014-04-15,citizenlab,{OSC_LINK}\n"
        f"not a url [/x] {CLEAR_SCREEN},NEWS,News Media,2014-04-15,citizenlab,\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        app,
        [
            "run", "--config", str(site.config), "--db", str(tmp_path / "h.db"),
            "--test-list", str(test_list), "--platform", "testlist", "--platform", "lo",
            "--i-understand-the-risks",
        ],
        env={"COLUMNS": "250"},
    )  # fmt: skip
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 0, result.stderr
    assert "news.lo.test/[/x]" in result.stdout  # measured and shown
    assert "skipped" in result.stderr and "[/x]" in result.stderr
    assert _raw_in(result.stdout + result.stderr) == []


def test_show_prints_hostile_evidence_inert() -> None:
    """`probe show`: a server's title and a resolver's text reach the evidence lines inert."""
    from probe.cli.render import evidence_line
    from tests.builders import http_transaction, measurement, observation

    page = http_transaction(f"https://{BIDI}/", "192.0.2.1", title=HOSTILE)
    obs = observation(Layer.HTTP, HOSTILE, page, failure_detail=HOSTILE)
    shown = _printed(evidence_line(measurement(HOSTILE, HOSTILE, obs)))
    assert _raw_in(shown) == []
    assert "[/x]" in shown and "\\u202e" in shown


@pytest.mark.parametrize(
    "argv",
    [
        [HOSTILE],  # an unknown command
        ["export", "--what", HOSTILE],  # a value outside a choice
        ["report", "--since", HOSTILE],  # a value the command parses itself
        ["report", "--db", f"/nonexistent/{HOSTILE}.db"],  # a path quoted in an error
        ["export", "--csv", "out.csv", HOSTILE],  # an extra argument
    ],
    ids=["command", "choice", "since", "db-path", "extra-argument"],
)
def test_a_hostile_command_line_value_is_quoted_inert_in_the_usage_error(argv: list[str]) -> None:
    # A command line pasted from a web page or a chat can carry escape sequences; click and the
    # probe's own errors quote the value back.
    result = CliRunner().invoke(app, argv)
    assert result.exit_code in (1, 2), result.output
    assert _raw_in(result.stderr) == [] and result.stderr.strip()
