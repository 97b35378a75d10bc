"""At 60, 80 and 120 columns on a real terminal, `probe runs`, `probe show RUN` and `probe report`
split no word across lines: every word the terminal shows is a whole word of the same output
unwrapped (a pipe), or one cut with "…" where it cannot fit, and no line is wider than the
terminal. The database holds what makes tables wide: three networks with long AS names (one a
VPN), long targets, failure strings and the rules' long sentences."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from probe.model import Connectivity, Layer, Measurement, NetworkInfo, Run
from probe.records import Confidence, Status, Verdict
from probe.store import Store
from tests.builders import dns_query, http_transaction, measurement, observation, tls_handshake
from tests.cli import invoke, on_terminal

T0 = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
NETWORKS = (
    NetworkInfo(asn=58224, as_name="Iran Telecommunication Company PJS", country="IR"),
    NetworkInfo(asn=197207, as_name="Mobile Communication Company of Iran PLC", country="IR"),
    NetworkInfo(asn=9009, as_name="M247 Europe SRL", country="RO", vpn_suspected=True),
)
SNI = "TLS with SNI {host} failed (connection_reset); a harmless SNI to the same address completed"
BLOCKPAGE = "HTTP 403 response matched ('ir.http.iframe', 'ir.http.invalid_site_policy')"
OK = "The target was reached and nothing in its measurements differs from the controls."
# (platform, target, status, technique, detail)
TARGETS = (
    ("twitter", "https://twitter.com/", Status.BLOCKED, "tls.sni_reset", SNI),
    ("twitter", "https://video.twimg.com/", Status.BLOCKED, "tls.sni_reset", SNI),
    ("twitter", "https://abs.twimg.com/", Status.OK, None, OK),
    ("facebook", "http://www.facebook.com/", Status.BLOCKED, "http.blockpage", BLOCKPAGE),
    ("facebook", "edge-mqtt.facebook.com", Status.OK, None, OK),
    (
        "whatsapp",
        "https://web.whatsapp.com/desktop/windows/release/x64/WhatsAppSetup.exe",
        Status.INCONCLUSIVE,
        "http.timeout",
        "HTTP timed out (http_round_trip); no control to compare with",
    ),
)
_VOLATILE = re.compile(r"\b[0-9a-f]{32}\b|\b[0-9a-f]{8}\b")
_BOX = re.compile(r"^[\u2500-\u257f]+$")
# What a table fitted to a narrow terminal adds: the note naming the columns it left out.
_FITTING = {"left", "out", "at", "this", "width:", "(below)"}


def _measurements(run: Run, platform: str, target: str, host: str) -> list[Measurement]:
    url = target if "://" in target else f"https://{host}/"
    return [
        measurement(
            platform,
            target,
            observation(Layer.DNS, "system", dns_query(host, ["104.244.42.1"])),
            run_id=run.id,
        ),
        measurement(
            platform,
            target,
            observation(
                Layer.TLS,
                "104.244.42.1:443",
                tls_handshake("104.244.42.1", 443, host, "connection_reset"),
                "connection_reset",
                "tls_handshake",
            ),
            run_id=run.id,
        ),
        measurement(
            platform,
            target,
            observation(
                Layer.HTTP,
                url,
                http_transaction(url, "104.244.42.2", title="X. It's what's happening"),
            ),
            run_id=run.id,
        ),
    ]


@pytest.fixture(scope="module")
def wide_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("widths") / "wide.db"
    with Store.open(db) as store:
        for n, network in enumerate(NETWORKS):
            started = T0 + timedelta(hours=n)
            run = Run(
                id=f"{n + 1:x}" * 32,
                probe_id="p" * 32,
                started_at=started,
                software_version="0.1.0",
                config_digest="d",
                network=network,
                finished_at=started + timedelta(minutes=1),
                connectivity=Connectivity.OK,
            )
            store.start_run(run)
            verdicts = []
            for platform, target, status, technique, detail in TARGETS:
                host = target.split("/")[2] if "://" in target else target
                evidence = _measurements(run, platform, target, host)
                store.save_measurements(evidence)
                verdicts.append(
                    Verdict(
                        run_id=run.id,
                        probe_id=run.probe_id,
                        measured_at=started,
                        asn=network.asn,
                        country=network.country,
                        platform=platform,
                        target=target,
                        status=status,
                        technique=technique,
                        confidence=Confidence.CONFIRMED if status is Status.BLOCKED else None,
                        rule_id=technique or "ok",
                        rules_version="test",
                        evidence=tuple(m.id for m in evidence),
                        detail=detail.format(host=host),
                    )
                )
            store.save_verdicts(run.id, verdicts)
    return db


def _words(text: str) -> set[str]:
    words = set()
    for word in _VOLATILE.sub("_", text).split():
        stripped = word.strip("\u2502\u2503")
        if stripped and not _BOX.match(stripped):
            words.add(stripped)
    return words


def _split_words(shown: str, unwrapped: str, columns: int) -> set[str]:
    """Words on the terminal that are no whole word of the unwrapped output: a word cut with
    "…" is whole if it begins one of them; a word too long for the terminal may only be folded."""
    whole = _words(unwrapped) | _FITTING
    odd = set()
    for word in _words(shown):
        # `TARGET: why` after a table, and the list of the columns it left out
        bare = word.rstrip(":,")
        if word in whole or bare in whole or word == "…":
            continue
        if word.endswith("…") and any(w.startswith(word[:-1]) for w in whole):
            continue
        if any(len(w) >= columns - 4 and bare in w for w in whole):
            continue
        odd.add(word)
    return odd


COMMANDS = {
    "runs": ("runs",),
    "show": ("show", "1111"),
    "show -v": ("show", "1111", "-v"),
    "report": ("report",),
}


@pytest.mark.parametrize("columns", [60, 80, 120])
@pytest.mark.parametrize("command", list(COMMANDS), ids=str)
def test_no_word_is_split_across_lines_at_this_width(
    wide_db: Path, command: str, columns: int
) -> None:
    args = [*COMMANDS[command], "--db", str(wide_db)]
    unwrapped = invoke(*args)
    assert unwrapped.code == 0, unwrapped.output
    shown = on_terminal(args, columns=columns, env={"NO_COLOR": "1"})
    assert shown.code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert max(len(line) for line in lines) <= columns
    assert _split_words(shown.stdout, unwrapped.stdout, columns) == set()
    # The data is wide: the unwrapped output has lines the terminal had to wrap or fit.
    assert max(len(line) for line in unwrapped.stdout.splitlines()) > columns


def test_a_narrow_report_leaves_out_columns_it_names_and_keeps_why_below(wide_db: Path) -> None:
    shown = on_terminal(["report", "--db", str(wide_db)], columns=80, env={"NO_COLOR": "1"})
    assert shown.code == 0, shown.output
    text = " ".join(shown.stdout.split())
    assert "left out at this width:" in text and "why (below)" in text
    # The blocked target's reason follows its table in full, not cut to a column.
    assert "http://www.facebook.com/: " + BLOCKPAGE in text


def test_runs_on_a_narrow_terminal_leaves_out_the_upload_column_first(wide_db: Path) -> None:
    # An [upload] collector configured: `probe runs` has its "up" column, the least needed.
    config = wide_db.parent / "upload.toml"
    config.write_text('[upload]\nurl = "https://collector.example/"\ntoken = "t"\n')
    args = ["runs", "--db", str(wide_db), "--config", str(config)]
    wide = invoke(*args).stdout
    (header,) = [line for line in wide.splitlines() if line.startswith("run ")]
    assert header.split()[-1] == "up"
    narrow = on_terminal(args, columns=80, env={"NO_COLOR": "1"}).stdout
    assert "left out at this width: up" in " ".join(narrow.split())
    assert "AS197207 Mobile" in narrow and "yes" in narrow  # network and VPN stay
