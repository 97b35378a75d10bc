"""Input is never trusted: crafted config files, test lists and time options, each answered with a
one-line error or a skipped row (never a traceback, a hang or a silent loss). One test per attack,
each with a negative control showing that the same path still accepts good input."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
import typer

from probe.checks import CheckContext
from probe.checks.dns import resolve
from probe.cli.common import parse_when
from probe.config import (
    MAX_BODY_BYTES,
    MAX_BODY_PREFIX_BYTES,
    MAX_CONCURRENCY,
    MAX_HTTP_TIMEOUT,
    MAX_PHASE_TIMEOUT,
    MAX_REDIRECTS,
    MAX_SECOND_ANSWER_WINDOW,
    ConfigError,
    load_settings,
)
from probe.resolvers import SYSTEM_RESOLVER
from probe.testlists import MAX_LINE_CHARS, TestList, TestListError, load_test_list
from tests.cli import invoke
from tests.servers.tls_certs import Pki

HEADER = "url,category_code,category_description,date_added,source,notes\n"


def row(url: str) -> str:
    return f"{url},NEWS,News Media,2014-04-15,citizenlab,\n"


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


def probe_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python3 -m probe ARGS` as a user types it."""
    return subprocess.run(
        [sys.executable, "-m", "probe", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )


# -- config numbers ---------------------------------------------------------------------------

# (table, key, the largest value accepted, a value past it)
BOUNDS = [
    ("timeouts", "dns", MAX_PHASE_TIMEOUT, 1e9),
    ("timeouts", "connect", MAX_PHASE_TIMEOUT, 1e9),
    ("timeouts", "tls", MAX_PHASE_TIMEOUT, 1e9),
    ("timeouts", "http", MAX_HTTP_TIMEOUT, 1e9),
    ("dns", "second_answer_window", MAX_SECOND_ANSWER_WINDOW, 1e9),
    ("http", "max_body_bytes", MAX_BODY_BYTES, 10**12),
    ("http", "body_prefix_bytes", MAX_BODY_PREFIX_BYTES, 10**9),
    ("http", "max_redirects", MAX_REDIRECTS, 10**6),
    ("probe", "concurrency", MAX_CONCURRENCY, 10**7),
    ("probe", "max_addresses", 64, 10**6),
]


@pytest.mark.parametrize(("table", "key", "largest", "huge"), BOUNDS, ids=[b[1] for b in BOUNDS])
def test_a_huge_config_number_is_refused_at_load_instead_of_hanging_the_run(
    tmp_path: Path, table: str, key: str, largest: float, huge: float
) -> None:
    value = int(largest) if isinstance(huge, int) else largest
    with pytest.raises(ConfigError, match=rf"\[{table}\] {key} = .*: must be ") as caught:
        load_settings(config(tmp_path, f"[{table}]\n{key} = {huge}\n"))
    assert str(caught.value).endswith(f"{value:g}" if isinstance(value, float) else str(value))
    # Negative control: the bound itself is accepted.
    settings = load_settings(config(tmp_path, f"[{table}]\n{key} = {value}\n"))
    assert settings.source is not None


@pytest.mark.parametrize(
    ("table", "key", "value"),
    [("timeouts", "http", "nan"), ("timeouts", "dns", "inf"), ("dns", "second_answer_window", -1)],
)
def test_a_non_finite_or_negative_config_number_is_refused(
    tmp_path: Path, table: str, key: str, value: object
) -> None:
    with pytest.raises(ConfigError, match=rf"\[{table}\] {key} = "):
        load_settings(config(tmp_path, f"[{table}]\n{key} = {value}\n"))
    # Negative control: 0 is a valid window (listen for no second answer).
    assert load_settings(config(tmp_path, "[dns]\nsecond_answer_window = 0\n"))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[timeouts]\nhttp = 1e9\n", "[timeouts] http = 1000000000.0: must be a number above 0"),
        ("[dns]\nsecond_answer_window = 1e9\n", "[dns] second_answer_window = 1000000000.0"),
        ("[http]\nmax_body_bytes = 1000000000000\n", "[http] max_body_bytes = 1000000000000"),
        ('[helper]\nurl = "https://helper.example:99999/"\n', "not a URL (Port out of range"),
        ('[tls]\nca_file = "notpem.pem"\n', "not a PEM file of CA certificates"),
    ],
    ids=["http-timeout", "second-answer-window", "max-body-bytes", "helper-port", "ca-file"],
)
def test_probe_run_with_a_hostile_config_exits_1_with_one_line(
    tmp_path: Path, body: str, message: str
) -> None:
    (tmp_path / "notpem.pem").write_text("this is not a certificate\n")
    path = config(tmp_path, body)
    result = probe_cli("run", "--config", str(path), "--i-understand-the-risks", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: {path}: ") and message in result.stderr
    assert "Traceback" not in result.stderr


# -- [helper] url, token, [http] user_agent ---------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://helper.example/", "must start with http:// or https://"),
        ("helper.example", "must start with http:// or https://"),
        ("https://", "no host after https://"),
        ("https://:8443/", "no host after https://"),
        ("https://helper.example:99999/", "not a URL (Port out of range 0-65535)"),
        ("https://helper.example:443x/", "not a URL (Port could not be cast"),
        ("https://helper.example:0/", "port 0 is not a port"),
        ("https://[::1/", "not a URL (Invalid IPv6 URL)"),
        ("https://user:pw@helper.example/", "credentials in [helper] token"),
        ("https://helper.example/\r\nX-Evil: 1", "no query, no spaces"),
    ],
)
def test_a_malformed_helper_url_is_a_one_line_config_error(
    tmp_path: Path, url: str, message: str
) -> None:
    escaped = url.replace("\r", "\\r").replace("\n", "\\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config(tmp_path, f'[helper]\nurl = "{escaped}"\n'))
    assert "[helper] url = " in str(caught.value) and message in str(caught.value)
    assert "\n" not in str(caught.value)
    # Negative control: a helper on a port, with a path, loads.
    good = load_settings(config(tmp_path, '[helper]\nurl = "https://[2001:db8::1]:8443/h"\n'))
    assert good.helper_url == "https://[2001:db8::1]:8443/h"


def test_a_header_injection_in_the_token_or_user_agent_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[helper\] token: must be printable"):
        load_settings(config(tmp_path, '[helper]\ntoken = "abc\\r\\nX-Evil: 1"\n'))
    with pytest.raises(ConfigError, match=r"\[http\] user_agent: must be printable"):
        load_settings(config(tmp_path, '[http]\nuser_agent = "UA\\r\\nX-Evil: 1"\n'))
    with pytest.raises(ConfigError, match=r"\[http\] user_agent: .* at most 512"):
        load_settings(config(tmp_path, f'[http]\nuser_agent = "{"A" * 513}"\n'))
    # Negative control: an ordinary token and User-Agent load.
    settings = load_settings(
        config(tmp_path, '[helper]\ntoken = "s3cr3t-t0ken"\n[http]\nuser_agent = "Mozilla/5.0"\n')
    )
    assert (settings.helper_token, settings.user_agent) == ("s3cr3t-t0ken", "Mozilla/5.0")


# -- [tls] ca_file ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a certificate\n", "not a PEM file of CA certificates"),
        (b"", "not a PEM file of CA certificates"),
        (b"\xff\xfe\x00garbage", "not a PEM file of CA certificates"),
        (None, "no such file"),
    ],
    ids=["text", "empty", "binary", "missing"],
)
def test_a_bad_ca_file_names_the_file_in_one_line(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    ca = tmp_path / "ca.pem"
    if content is not None:
        ca.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_settings(config(tmp_path, '[tls]\nca_file = "ca.pem"\n'))
    assert f"[tls] ca_file = {ca}: {message}" in str(caught.value)
    assert "\n" not in str(caught.value)
    # Negative control: a real CA certificate in PEM loads.
    Pki().ca.cert_pem.write_to_path(str(ca))
    assert load_settings(config(tmp_path, '[tls]\nca_file = "ca.pem"\n')).ca_file == str(ca)


# -- --since / --until ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "when", ["99999999999d", "9" * 40 + "w", "0001-01-01T00:00+03:00", "\u00b2d", "1e9d"]
)
def test_a_huge_or_odd_age_is_a_usage_error_not_an_overflow(when: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_when(when, "--since")
    # Negative control: an ordinary age and date still parse.
    assert parse_when("7d", "--since") is not None
    assert parse_when("2026-11-01", "--until") is not None


def test_probe_report_since_a_huge_age_exits_2_without_a_traceback(tmp_path: Path) -> None:
    result = probe_cli("report", "--since", "99999999999d", "--db", "x.db", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "too far in the past" in result.stderr
    assert "Traceback" not in result.stderr and "OverflowError" not in result.stderr
    # Nothing was created for the refused command.
    assert not (tmp_path / "x.db").exists()


# -- test lists --------------------------------------------------------------------------------

LONG_IDN_LABEL = "\u00fc" * 62 + "a"  # 63 characters, far more than 63 octets once encoded


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        (f"{LONG_IDN_LABEL}.example", "cannot be encoded as a DNS name"),
        ("a" * 64 + ".example", "cannot be encoded as a DNS name"),
        (".".join(["a" * 63] * 4) + ".example", "cannot be encoded as a DNS name"),
        ("a\u05d0.example", "cannot be encoded as a DNS name (encoding with 'idna' codec"),
        ("xn--\u00fc.example", "cannot be encoded as a DNS name"),
        ("a..example", "is not a valid host name"),
    ],
    ids=["idn-label-over-63-octets", "label-64", "name-over-253", "bidi", "ace-prefix", "empty"],
)
def test_an_unencodable_name_in_a_test_list_is_one_skipped_row(
    tmp_path: Path, host: str, reason: str
) -> None:
    path = tmp_path / "list.csv"
    path.write_text(HEADER + row(f"https://{host}/") + row("https://ok.example/"))
    result = load_test_list(path)
    assert len(result.problems) == 1
    assert result.problems[0].startswith(f"{path}:2: ") and reason in result.problems[0]
    # Negative control: the next row of the same list is measured.
    assert [t.host for t in result.targets] == ["ok.example"]


def test_an_idn_that_encodes_within_the_limits_is_kept() -> None:
    from probe.catalog import parse_url_target

    target = parse_url_target("https://fa\u00df.de/", "p", where="w")
    assert target.host == "fa\u00df.de"


def test_a_name_with_no_dns_wire_form_through_the_system_resolver_is_a_recorded_failure() -> None:
    # The system resolver's path (getaddrinfo encodes with the IDNA codec, raising UnicodeError).
    for host in ("xn--\u00fc.example", f"{LONG_IDN_LABEL}.example"):
        observation = asyncio.run(resolve(host, SYSTEM_RESOLVER, CheckContext()))
        assert observation.failure == "unknown_failure"
        assert (observation.failure_detail or "").startswith("the name cannot be encoded")
        assert observation.details.addresses == ()
    # Negative control: an IP literal still "resolves" without a query.
    literal = asyncio.run(resolve("192.0.2.1", SYSTEM_RESOLVER, CheckContext()))
    assert literal.failure is None and literal.details.addresses == ("192.0.2.1",)


def test_a_test_list_saved_with_a_utf8_bom_loads(tmp_path: Path) -> None:
    with_bom = tmp_path / "bom.csv"
    with_bom.write_bytes(b"\xef\xbb\xbf" + (HEADER + row("https://ok.example/")).encode())
    without = tmp_path / "plain.csv"
    without.write_bytes((HEADER + row("https://ok.example/")).encode())
    assert [t.host for t in load_test_list(with_bom).targets] == ["ok.example"]
    # Negative control: the same list without the mark gives the same targets.
    assert load_test_list(with_bom).targets[0].url == load_test_list(without).targets[0].url


def test_one_invalid_utf8_byte_skips_one_row_not_the_whole_list(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_bytes(
        (HEADER + row("https://first.example/")).encode()
        + row("https://b\xffad.example/").encode("latin-1")
        + row("https://last.example/").encode()
    )
    result = load_test_list(path)
    assert result.problems == (f"{path}:3: not valid UTF-8; skipped",)
    # Negative control: the rows around the bad byte are measured.
    assert [t.host for t in result.targets] == ["first.example", "last.example"]


def _peak_bytes_loading(path: Path) -> tuple[int, object]:
    tracemalloc.start()
    try:
        result = load_test_list(path)
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


def test_a_test_list_row_of_16_mb_is_one_skipped_row_and_never_held_whole(
    tmp_path: Path,
) -> None:
    path = tmp_path / "list.csv"
    huge = "https://x.example/" + "a" * (16 << 20)
    path.write_text(HEADER + row(huge) + row("https://ok.example/"))
    peak, result = _peak_bytes_loading(path)
    assert isinstance(result, TestList)
    assert result.problems == (
        f"{path}:2: longer than {MAX_LINE_CHARS} characters; skipped unread",
    )
    assert [t.host for t in result.targets] == ["ok.example"]  # the next row is measured
    assert peak < 8 << 20  # the row was read in pieces and dropped (it took 2x its size)


def test_a_test_list_that_never_ends_is_read_up_to_its_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # /dev/zero: one line that never ends (a FIFO or a device named by mistake or malice).
    monkeypatch.setattr("probe.testlists.MAX_LIST_CHARS", 8 << 20)
    with pytest.raises(TestListError, match="not a Citizen Lab test list"):
        load_test_list(Path("/dev/zero"))  # its first line is no header: refused at the cap


def test_a_test_list_past_its_size_cap_keeps_what_it_read_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("probe.testlists.MAX_LIST_CHARS", 4096)
    path = tmp_path / "list.csv"
    path.write_text(HEADER + "".join(row(f"https://h{i}.example/") for i in range(500)))
    result = load_test_list(path)
    assert 0 < len(result.targets) < 500
    assert result.problems[-1] == f"{path}: larger than 4096 characters; the rest is not read"


def test_markup_and_escape_codes_in_a_skipped_row_are_printed_as_plain_text(
    tmp_path: Path,
) -> None:
    path = tmp_path / "list.csv"
    hostile = "https://dup.example/[/x][link=http://evil.example]x\x1b[2J"
    path.write_text(HEADER + row("https://dup.example/ok") + row(hostile) + row(hostile))
    result = invoke("targets", "--test-list", str(path), "-p", "testlist")
    assert result.code == 0, result.stderr
    # The skipped line shows the row literally: no MarkupError, no link, no ESC byte.
    assert "[/x][link=http://evil.example]x\\x1b[2J; skipped" in result.stderr
    assert "\x1b" not in result.stderr
    # Negative control: the good row is still listed.
    assert "https://dup.example/ok" in result.stdout


def test_probe_run_with_an_unencodable_test_list_row_skips_it_and_measures_the_rest(
    tmp_path: Path,
) -> None:
    # Nothing answers on this machine's network: the run ends as "no connectivity" (exit 3)
    # after measuring, which is the point: it measured instead of aborting on one bad row.
    path = tmp_path / "list.csv"
    path.write_text(HEADER + row(f"https://{LONG_IDN_LABEL}.example/") + row("https://192.0.2.1/"))
    settings = tmp_path / "c.toml"
    settings.write_text(
        '[probe]\ndatabase = "m.db"\n[dns]\nresolvers = ["udp://127.0.0.1:9"]\n'
        "[timeouts]\ndns = 0.2\nconnect = 0.2\ntls = 0.2\nhttp = 0.2\n"
    )
    result = probe_cli(
        "run", "--config", str(settings), "--test-list", str(path), "-p", "testlist",
        "--i-understand-the-risks", "--unattended", cwd=tmp_path,
    )  # fmt: skip
    assert "Traceback" not in result.stderr and "ExceptionGroup" not in result.stderr
    assert f"skipped: {path}:2: " in result.stderr
    assert result.returncode in (0, 3), result.stderr
    assert (tmp_path / "m.db").exists()
