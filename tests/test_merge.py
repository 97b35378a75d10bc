"""`probe merge` on real SQLite files: several probes' databases become one that reports across
hosts and networks. Merging is idempotent, overlapping files add each row once, sources are never
changed (older schema versions included), and a corrupt source leaves the destination untouched,
byte for byte."""

from __future__ import annotations

import hashlib
import itertools
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import pytest

from analysis.report.build import build_report
from analysis.summaries import summarise
from probe.model import Layer, NetworkInfo, Run
from probe.records import Verdict
from probe.store import Store
from probe.store.merge import merge_databases
from tests.cli import invoke
from tests.servers.postgres import PostgresServer
from tests.store_rows import make_measurement
from tests.store_versions import MEASUREMENT_ID, RUN_ID, meta_value, write_version_1
from tests.stored_verdicts import START, TELEGRAM, TWITTER, day, store_verdicts
from tests.synthetic import Censorship, Network, SyntheticSpec, generate

# Two probes on Irancell see Telegram blocked on day 2; DTAG sees nothing.
SPEC = SyntheticSpec(
    start=START,
    days=3,
    networks=(Network(44244, "IR", hosts=2), Network(3320, "DE", hosts=1)),
    platforms=(("telegram", TELEGRAM), ("twitter", TWITTER)),
    censorship=(Censorship((44244,), "telegram", "tcp.timeout", day(1), day(2)),),
)
VERDICTS = list(generate(SPEC, seed=21).verdicts)
IRANCELL_0, IRANCELL_1, DTAG_0 = "probe-as44244-00", "probe-as44244-01", "probe-as3320-00"
TABLES = ("runs", "measurements", "verdicts", "platform_summaries")


def of_probe(probe_id: str, verdicts: Iterable[Verdict] = VERDICTS) -> list[Verdict]:
    return [v for v in verdicts if v.probe_id == probe_id]


def probe_db(path: Path, verdicts: list[Verdict], *, measurements: bool = True) -> Path:
    """A probe's own database: runs (with their network), verdicts, platform summaries, and a
    measurement per verdict that its evidence names."""
    with Store.open(path) as store:
        store_verdicts(store, verdicts)
        for run_id, group in itertools.groupby(verdicts, key=lambda v: v.run_id):
            of_run = list(group)
            store.save_platform_summaries(run_id, summarise(of_run, [], targets=[]))
            if measurements:
                store.save_measurements(
                    [
                        make_measurement(
                            run_id,
                            platform=v.platform,
                            target=v.target,
                            layer=Layer.TCP,
                            started_at=v.measured_at,
                            failure="generic_timeout_error" if v.technique else None,
                        )
                        for v in of_run
                    ]
                )
    return path


def counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        found = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
    conn.close()
    return found


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Irancell's first probe alone; Irancell's second probe and DTAG's together."""
    folder = tmp_path_factory.mktemp("sources")
    a = probe_db(folder / "a.db", of_probe(IRANCELL_0))
    b = probe_db(folder / "b.db", [v for v in VERDICTS if v.probe_id != IRANCELL_0])
    return a, b


def test_merging_twice_adds_nothing(sources: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = sources
    dest = tmp_path / "all.db"
    first = merge_databases([a, b], dest, batch_rows=50)  # many batches per table
    expected = {t: counts(a)[t] + counts(b)[t] for t in TABLES}
    assert counts(dest) == expected
    assert [m.added for m in first.sources] == [counts(a), counts(b)]
    assert first.destination == str(dest) and first.added() == sum(expected.values())

    code, out, err = invoke("merge", str(a), str(b), "--into", str(dest))
    assert code == 0, err
    assert counts(dest) == expected
    assert "merged 2 database(s)" in err and ": 0 new rows" in err
    assert f"runs: 0 new of {counts(a)['runs']:,}" in out  # every run seen, none new


def test_overlapping_files_add_each_row_once(tmp_path: Path) -> None:
    """An old copy of a probe's database and its newer self, merged in either order."""
    mine = of_probe(IRANCELL_0)
    half = len(mine) // 2
    old = probe_db(tmp_path / "old.db", mine[:half])
    new = tmp_path / "new.db"
    new.write_bytes(old.read_bytes())  # the copy taken back then; the probe went on measuring
    probe_db(new, mine[half:])
    for name, order in (("ab.db", [old, new]), ("ba.db", [new, old])):
        dest = tmp_path / name
        merged = merge_databases(order, dest)
        assert counts(dest) == counts(new)
        assert sum(m.added["verdicts"] for m in merged.sources) == len(mine)


def test_merged_runs_keep_each_probes_network(sources: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = sources
    # A run on another network, added to a copy (the module's sources stay as they are).
    copy = tmp_path / "a.db"
    copy.write_bytes(a.read_bytes())
    network = NetworkInfo(
        asn=58224,
        as_name="TCI",
        country="IR",
        resolver_asn=58224,
        resolver_as_name="TCI",
        resolver_country="IR",
        vpn_suspected=True,
        source="helper+mmdb",
    )
    with Store.open(copy) as store:
        own_probe_id = store.probe_id()
        run = Run(
            id="f" * 32,
            probe_id=own_probe_id,
            started_at=START,
            software_version="0.1.0",
            config_digest="d",
            network=network,
        )
        store.start_run(run)
    dest = tmp_path / "all.db"
    code, out, err = invoke("merge", str(copy), str(b), "--db", str(dest))
    assert code == 0, err
    assert "AS44244" in out and "AS3320" in out and "AS58224" in out

    with Store.open(dest) as store:
        assert store.get_run(run.id) == run  # every network column, VPN flag and source
        runs = list(store.runs())
        assert {r.probe_id for r in runs} == {own_probe_id, IRANCELL_0, IRANCELL_1, DTAG_0}
        irancell = [r for r in runs if r.probe_id == IRANCELL_1]
        assert {(r.network.asn, r.network.as_name, r.network.country) for r in irancell} == {
            (44244, "Irancell", "IR")
        }
        assert store.probe_id() not in {r.probe_id for r in runs}  # the destination's own id


def test_report_after_merge_counts_the_hosts_that_agree(
    sources: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = sources
    with Store.open(a) as store:
        (alone,) = build_report(store, platforms=["telegram"]).events
    assert alone.hosts == 1 and alone.networks == (44244,)

    dest = tmp_path / "all.db"
    merge_databases([a, b], dest)
    code, out, err = invoke("report", "--db", str(dest), "--platform", "telegram")
    assert code == 0, err
    assert "from 3 host(s) on 2 network(s); 1 event(s)" in out
    (row,) = [line for line in out.splitlines() if "tcp.timeout" in line and "blocking" in line]
    cells = [cell.strip() for cell in row.split("│")]
    assert cells[2] == "AS44244"  # DTAG does not share the event
    assert cells[-3] == "2"  # both Irancell probes, from two merged files, agree
    state = [line for line in out.splitlines() if "AS44244 Irancell (IR)" in line]
    assert state and "│ 2 " in state[0]  # hosts on the network


def test_corrupt_source_is_refused_and_destination_untouched(
    sources: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = sources
    dest = tmp_path / "all.db"
    merge_databases([a], dest)
    before, listing = digest(dest), files(tmp_path)

    damaged = tmp_path / "damaged.db"
    data = bytearray(b.read_bytes())
    page = 4096
    assert len(data) > 8 * page
    data[3 * page : 6 * page] = b"\xa5" * (3 * page)  # b-tree pages overwritten mid-file
    damaged.write_bytes(bytes(data))
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"these are not the measurements you are looking for\n" * 200)
    listing = files(tmp_path)

    for bad in (damaged, garbage):
        code, _, err = invoke("merge", str(b), str(bad), "--into", str(dest))
        assert code == 1
        assert str(bad) in err and ("damaged" in err or "not a probe database" in err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert digest(dest) == before and files(tmp_path) == listing  # no -wal, no -shm either
        assert counts(dest) == counts(a)  # b, valid, was not merged either


def test_sources_are_never_modified(sources: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = sources
    before = {p: digest(p) for p in (a, b)}
    listing = files(a.parent)
    merge_databases([a, b], tmp_path / "all.db")
    assert {p: digest(p) for p in (a, b)} == before
    assert files(a.parent) == listing


def test_source_from_an_older_schema_merges_and_stays_old(tmp_path: Path) -> None:
    old = tmp_path / "v1.db"
    write_version_1(old)
    before = digest(old)
    dest = tmp_path / "all.db"
    (merged,) = merge_databases([old], dest).sources
    assert merged.schema_version == 1
    assert merged.added == {"runs": 1, "measurements": 1, "verdicts": 0, "platform_summaries": 0}
    assert merged.networks == (58224,)
    with Store.open(dest) as store:
        run = store.get_run(RUN_ID)
        assert run is not None and run.network.as_name == "TCI"
        assert [m.id for m in store.measurements()] == [MEASUREMENT_ID]
    assert meta_value(old, "schema_version") == "1" and digest(old) == before


def test_missing_destination_or_source_is_a_clear_error(
    sources: tuple[Path, Path], tmp_path: Path
) -> None:
    a, _ = sources
    code, _, err = invoke("merge", str(a))
    assert code == 2 and "--into" in err  # a usage error
    missing = tmp_path / "nowhere.db"
    code, _, err = invoke("merge", str(a), str(missing), "--into", str(tmp_path / "d.db"))
    assert code == 1 and f"{missing}: no such file" in err
    assert not (tmp_path / "d.db").exists()


@pytest.mark.postgres
def test_merge_into_postgresql_is_idempotent_too(
    sources: tuple[Path, Path], postgres_server: PostgresServer
) -> None:
    a, b = sources
    url = postgres_server.create_database()
    first = merge_databases([a, b], url, batch_rows=100)
    again = merge_databases([a, b], url)
    expected = {t: counts(a)[t] + counts(b)[t] for t in TABLES}
    assert {t: sum(m.added[t] for m in first.sources) for t in TABLES} == expected
    assert again.added() == 0 and again.destination.startswith("postgresql+psycopg://")
    with Store.open(url) as store:
        (event,) = build_report(store, platforms=["telegram"]).events
        assert event.hosts == 2 and event.networks == (44244,)
        run = store.get_run(of_probe(DTAG_0)[0].run_id)
        assert run is not None and run.network.as_name == "DTAG"


# -- merging must not make a probe's events disappear ---------------------------------------------

# Three single-probe networks; the first sees Telegram blocked for a day. Each case below puts all
# three probes on one network (a known ASN, or none known), the blocked probe in one file and the
# two clean ones in another: pooled, the clean pair brings the blocked share down to a third,
# below the detector's reference k = 0.35.
PAIR = generate(
    SyntheticSpec(
        start=START,
        days=3,
        networks=(
            Network(44244, "IR", hosts=1),
            Network(197207, "IR", hosts=1),
            Network(58224, "IR", hosts=1),
        ),
        platforms=(("telegram", TELEGRAM),),
        censorship=(Censorship((44244,), "telegram", "tls.sni_reset", day(1), day(2)),),
        noise_rate=0.02,
    ),
    seed=5,
)
BLOCKED = "probe-as44244-00"


def _events_before_and_after_merge(tmp_path: Path, asn: int | None) -> tuple[str, str]:
    verdicts = [replace(v, asn=asn) for v in PAIR.verdicts]
    first = probe_db(tmp_path / "first.db", of_probe(BLOCKED, verdicts), measurements=False)
    clean = [v for v in verdicts if v.probe_id != BLOCKED]
    second = probe_db(tmp_path / "second.db", clean, measurements=False)
    alone = invoke("export", "--what", "events", "--jsonl", "-", "--db", str(first))
    code, _, err = invoke("merge", str(first), str(second), "--into", str(tmp_path / "all.db"))
    assert code == 0, err
    merged = invoke("export", "--what", "events", "--jsonl", "-", "--db", str(tmp_path / "all.db"))
    assert alone[0] == merged[0] == 0, (alone[2], merged[2])
    return alone[1], merged[1]


def _blocking(jsonl: str) -> list[dict[str, object]]:
    return [e for e in map(json.loads, jsonl.splitlines()) if e["kind"] == "blocking"]


def test_merging_clean_probes_of_the_same_network_keeps_the_first_probes_event(
    tmp_path: Path,
) -> None:
    alone, merged = _events_before_and_after_merge(tmp_path, 44244)
    (before,) = _blocking(alone)
    (after,) = _blocking(merged)
    assert after["technique"] == "tls.sni_reset" and after["hosts"] == 1
    assert (after["onset"], after["end"]) == (before["onset"], before["end"])


def test_merging_probes_of_other_unknown_networks_keeps_the_first_probes_event(
    tmp_path: Path,
) -> None:
    alone, merged = _events_before_and_after_merge(tmp_path, None)
    (before,) = _blocking(alone)
    (after,) = _blocking(merged)
    assert after["hosts"] == 1 and BLOCKED in str(after["detail"])
    assert (after["onset"], after["end"]) == (before["onset"], before["end"])
