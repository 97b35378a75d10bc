"""What `probe` prints, as a volunteer sees it: the short default view of a run (where and when,
the platform table, the targets that are not ok), no word split at 80 or 120 columns on a real
terminal, whole lines in logs and pipes, the consent text once, and help that tells the truth
about every command's options."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer

from probe.cli.app import app
from probe.consent import CONSENT_TEXT
from probe.store import Store
from tests.cli import CONSENT, invoke, on_terminal
from tests.servers.collector import fill_probe
from tests.sites import Site, write_site_config

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
# What differs between two runs of the same targets: ids, times, durations.
_VOLATILE = re.compile(r"\b[0-9a-f]{32}\b|\b[0-9a-f]{8}\b|\d{4}-\d\d-\d\d|\d\d:\d\d(:\d\d)?")
_T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
_BOX = re.compile(r"^[\u2500-\u257f]+$")


def _run(site: Site, db: Path, *extra: str) -> tuple[int, str, str]:
    args = ("run", "--config", str(site.config), "--db", str(db), *extra)
    result = invoke(*args, "--i-understand-the-risks")
    return result.code, result.stdout, result.stderr


def _words(text: str) -> set[str]:
    """The words of some output, box-drawing and volatile parts removed."""
    words = set()
    for word in _VOLATILE.sub("_", text).split():
        stripped = word.strip("\u2502\u2503")
        if stripped and not _BOX.match(stripped):
            words.add(stripped)
    return words


def test_default_run_view_is_where_the_platforms_and_the_targets_that_are_not_ok(
    site: Site, tmp_path: Path
) -> None:
    code, out, err = _run(site, tmp_path / "m.db")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("Measured ") and " UTC from an unknown network (" in lines[0]
    assert "no test helper and no [network] mmdb files configured" in lines[0]
    assert "Platforms" in out and "│ lo " in out
    ok_target = f"https://ok.lo.test:{site.https_port}/"
    assert ok_target not in out  # ok: not listed by default
    not_ok = [ln for ln in lines if ln.startswith(("inconclusive ", "blocked ", "down "))]
    assert {ln.split()[2].rstrip(":") for ln in not_ok} >= {"refused.lo.test", "nx.lo.test"}
    assert all(ln.count("lo ") >= 1 for ln in not_ok)
    assert "The target was reached" not in out
    assert re.search(
        r"^run [0-9a-f]{32}: \d+ measurements stored; .*probe show [0-9a-f]{8}$", out, re.M
    )

    code, verbose, _ = _run(site, tmp_path / "m.db", "-v")
    assert code == 0
    assert any(ln.startswith(f"ok lo {ok_target}") for ln in verbose.splitlines())


@pytest.mark.parametrize("columns", [80, 120])
def test_on_a_real_terminal_no_line_is_wider_than_it_and_no_word_is_split(
    site: Site, tmp_path: Path, columns: int
) -> None:
    db = tmp_path / "m.db"
    code, piped, err = _run(site, db)  # the same run's output, unwrapped (not a terminal)
    assert code == 0, err
    shown = on_terminal(
        ["run", "--config", str(site.config), "--db", str(db), "--i-understand-the-risks"],
        columns=columns,
        env={"NO_COLOR": "1"},
    )
    assert shown.code == 0, shown.stdout
    lines = shown.stdout.splitlines()
    assert max(len(line) for line in lines) <= columns
    assert any(line.startswith("Measured ") for line in lines)
    assert sum(len(line) > columns - 20 for line in lines) > 0  # long lines were wrapped here
    # Every word the terminal shows is a whole word of the unwrapped output: a word split in two
    # (`measurement`/`s differs`) would leave fragments that are no words of it.
    assert _words(shown.stdout) - _words(piped) <= {"…"}


def test_output_that_is_not_a_terminal_keeps_whole_lines(site: Site, tmp_path: Path) -> None:
    """A dead network (the control refuses): the unattended log keeps the sentence on one line."""
    dead = write_site_config(
        tmp_path,
        site.ns,
        site.tmp / "ca.pem",
        site.https_port,
        site.refused_port,
        f"https://refused.lo.test:{site.refused_port}/",
    )
    result = invoke(
        "run", "--unattended", "--config", str(dead), "--db", str(tmp_path / "d.db"),
        "--i-understand-the-risks",
    )  # fmt: skip
    assert result.code == 3, result.stderr
    assert (
        "No network connectivity: none of the 1 control sites could be reached. "
        "Nothing in this run is reported as blocked." in result.stdout.splitlines()
    )
    long_lines = [ln for ln in (result.stdout + result.stderr).splitlines() if len(ln) > 80]
    assert long_lines  # nothing was cut to a width


def _pooled_database(tmp_path: Path) -> str:
    """A probe's queued runs and tokens: what `probe upload --status`, `probe analyse` and
    `probe collector token list` print about (a censored network and a free one)."""
    db = tmp_path / "pool.db"
    with Store.open(db) as store:
        fill_probe(store, runs=1, measurements=3, asn=58224, start=_T0)
        fill_probe(store, runs=1, measurements=3, asn=3320, start=_T0, failure=None)
        store.close()
    assert (
        invoke("collector", "token", "add", "volunteer-with-a-long-name", "--db", str(db)).code == 0
    )
    return str(db)


@pytest.mark.parametrize(
    "command",
    [("upload", "--status"), ("analyse",), ("collector", "token", "list")],
    ids=" ".join,
)
def test_a_narrow_columns_variable_does_not_wrap_output_that_is_not_a_terminal(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    """COLUMNS=40 in a pipe: every command prints the same whole lines it prints at any width
    (a plain rich Console would wrap them at COLUMNS)."""
    db = _pooled_database(tmp_path)
    narrow = invoke(*command, "--db", db, env={"COLUMNS": "40"})
    wide = invoke(*command, "--db", db, env={"COLUMNS": "250"})
    assert narrow.code == wide.code == 0, narrow.output
    assert max(len(line) for line in narrow.stdout.splitlines()) > 40
    assert narrow.stdout == wide.stdout


def test_consent_text_is_printed_once_then_never_again(site: Site, tmp_path: Path) -> None:
    first = _run(site, tmp_path / "m.db")
    second = _run(site, tmp_path / "m.db")
    assert first[0] == second[0] == 0
    assert "Before you run this censorship probe" in first[2]
    assert "Before you run this censorship probe" not in second[2]
    assert "Accepted with --i-understand-the-risks" not in second[2]


def test_the_consent_text_on_an_80_column_terminal_is_wrapped_at_words(
    site: Site, tmp_path: Path
) -> None:
    """Its lines are written for 96 columns: printed as they are, an 80-column terminal would
    cut them itself, mid-word (`this compu`/`ter`)."""
    shown = on_terminal(
        ["run", "--config", str(site.config), "--db", str(tmp_path / "m.db"), CONSENT],
        columns=80,
        env={"NO_COLOR": "1"},
        stderr_too=True,
    )
    assert shown.code == 0, shown.stdout
    text = shown.stdout
    consent = text[text.index("Before you run") : text.index("Accepted with")].splitlines()
    assert max(len(line) for line in consent) <= 80
    # Re-flowed, each item under its "* " (a hanging indent), not the 96-column lines cut short.
    items = [line for line in consent[1:] if line.strip()]
    assert all(line.startswith(("* ", "  ")) for line in items)
    assert sum(len(line) > 70 for line in items) > len(items) // 2
    assert " ".join(" ".join(consent).split()) == " ".join(CONSENT_TEXT.split())


def test_run_json_has_the_network_and_vpn_fields(site: Site, tmp_path: Path) -> None:
    import json

    code, out, err = _run(site, tmp_path / "m.db", "--json")
    assert code == 0, err
    document = json.loads(out)
    assert set(document["network"]) == {
        "asn", "as_name", "country", "resolver_asn", "resolver_as_name", "resolver_country",
        "source",
    }  # fmt: skip
    assert document["network"]["asn"] is None and document["network"]["source"] == "unknown"
    assert document["vpn_suspected"] in (True, False, None)
    assert isinstance(document["vpn_reasons"], list)


# -- help -----------------------------------------------------------------------------------------


def _commands() -> list[tuple[str, ...]]:
    root = typer.main.get_command(app)
    found: list[tuple[str, ...]] = []

    def walk(command: object, path: tuple[str, ...]) -> None:
        found.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, (*path, name))

    walk(root, ())
    return found


_PLACEHOLDER = re.compile(r"^([A-Z][A-Z0-9_:]*|\[[a-z][a-z-]*(\|[a-z][a-z-]*)+\])$")


@pytest.mark.parametrize("path", _commands(), ids=lambda p: " ".join(p) or "probe")
def test_every_command_help_is_plain_consistent_and_truthful(path: tuple[str, ...]) -> None:
    result = invoke(*path, "--help", env={"COLUMNS": "80"})
    assert result.code == 0, result.stderr
    text = result.stdout
    # No Python types (`--json <bool>`, `<list[str]>`); click's ranges (`1<=x<=64`) are fine.
    assert not re.search(r"<[a-zA-Z]", text) and "list[" not in text
    assert "╭" not in text  # plain help, no rich panels
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    for param in command.params:
        if param.param_type_name != "option" or param.name == "help":
            continue
        record = param.get_help_record(typer.Context(command))
        assert record is not None
        names = record[0]
        shown = names.split(" ", 1)[1] if " " in names.replace(", ", ",") else ""
        if getattr(param, "is_flag", False):
            assert shown == "", f"{names}: a flag shown as taking a value"
        else:
            assert _PLACEHOLDER.match(shown.split()[-1]), f"{names}: placeholder {shown!r}"
    # A group lists its commands with whole summaries, never cut with "...".
    listed = text.split("Commands:", 1)[1] if "Commands:" in text else ""
    assert not any(line.rstrip().endswith("...") for line in listed.splitlines())


@pytest.mark.parametrize("path", _commands(), ids=lambda p: " ".join(p) or "probe")
def test_every_command_help_at_60_columns_splits_no_word(path: tuple[str, ...]) -> None:
    """click's wrapper broke at hyphens (`docs/data-`/`dictionary.md`, `self-`/`contained`) and
    cut a URL wider than the help column (`postgresql+ps`/`ycopg://...`)."""
    whole = set(invoke(*path, "--help").stdout.split()) | {"python", "-m"}  # prog: python -m probe
    shown = on_terminal([*path, "--help"], columns=60)
    assert shown.code == 0, shown.stdout
    assert max(len(line) for line in shown.stdout.splitlines()) <= 60
    assert set(shown.stdout.split()) - whole == set()


def test_help_keeps_bracketed_config_names() -> None:
    text = " ".join(invoke("run", "--help").stdout.split())
    assert "(default: [probe] database, else the user data dir)" in text


@pytest.mark.parametrize(
    "args",
    [
        ("run", "--no-such-option"),
        ("report", "--since", "yesterday"),
        ("runs", "--network", "ASX"),
        ("show",),
        ("export",),
        ("schedule", "install", "--every", "7m"),
        ("merge", "a.db"),
    ],
    ids=lambda a: " ".join(a),
)
def test_usage_errors_exit_2_as_the_readme_says(args: tuple[str, ...]) -> None:
    result = invoke(*args)
    assert result.code == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "2 usage error" in README
