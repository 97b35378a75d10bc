"""The HTML report of a multi-network, multi-day store, looked at in headless Chromium: builds the
store (synthetic verdicts with known events, each resting on one realistic measurement, as
benchmarks.analysis_benchmark stores them), writes `probe report --html` through the CLI, and
takes full-page screenshots at 1280 and 700 px. Prints the page's size, the time to build it, and
how wide the page lays out at each width (scrollWidth, which must not exceed the window).

    python3 -m benchmarks.report_pages [--out /tmp/html-shots] [--days 6]

Needs /usr/bin/chromium (Debian: apt-get install chromium).
"""

from __future__ import annotations

import argparse
import itertools
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from analysis.summaries import summarise
from benchmarks.analysis_benchmark import AS_NAMES, measurement_for
from probe.model import NetworkInfo, Run
from probe.store import Store
from tests.synthetic import Censorship, Network, Outage, SyntheticSpec, generate

START = datetime(2024, 3, 1, tzinfo=UTC)
WIDTHS = (1280, 700)


def spec(days: int) -> SyntheticSpec:
    """Four networks (three Iranian, one control), the field's platforms, every kind of event,
    a network offline for half a day, noise."""

    def day(number: float) -> datetime:
        return START + timedelta(hours=round(number * 24))

    return SyntheticSpec(
        start=START,
        days=days,
        networks=(
            Network(44244, "IR", hosts=3),
            Network(197207, "IR", hosts=2),
            Network(58224, "IR", hosts=2),
            Network(3320, "DE", hosts=1),
        ),
        censorship=(
            Censorship((44244, 197207), "telegram", "tcp.timeout", day(1), day(3.5)),
            Censorship((58224,), "whatsapp", "tls.sni_reset", day(1), None, daily_hours=(18, 23)),
            Censorship(
                (44244,), "telegram", "tcp.timeout", day(4), None, targets=("149.154.175.50",)
            ),
            Censorship((197207,), "twitter", "dns.bogon", day(2), None),
            Censorship((58224,), "signal", "http.blockpage", day(days - 1.5), None),
        ),
        outages=(Outage(197207, day(2.5), day(3)), Outage(3320, day(4), day(4.25))),
        noise_rate=0.01,
        not_evidence_rate=0.02,
    )


def build(db: Path, days: int) -> int:
    verdicts = 0
    with Store.open(db) as store:
        dataset = generate(spec(days), seed=3)
        for run_id, group in itertools.groupby(dataset.verdicts, key=lambda v: v.run_id):
            of_run = list(group)
            first = of_run[0]
            store.start_run(
                Run(
                    id=run_id,
                    probe_id=first.probe_id,
                    started_at=first.measured_at,
                    software_version="0.1.0",
                    config_digest="pages",
                    network=NetworkInfo(
                        asn=first.asn,
                        as_name=AS_NAMES.get(first.asn or 0),
                        country=first.country,
                        source="helper",
                    ),
                    finished_at=first.measured_at + timedelta(seconds=40),
                )
            )
            store.save_measurements([measurement_for(v) for v in of_run])
            store.save_verdicts(run_id, of_run)
            store.save_platform_summaries(run_id, summarise(of_run, [], targets=[]))
            verdicts += len(of_run)
    return verdicts


# Appended to a copy of the page (the page itself runs no script): writes the layout's width
# into the DOM, which --dump-dom then prints.
MEASURE = (
    "<script>document.body.insertAdjacentHTML('beforeend','<pre id=\"layout\">'+"
    "document.documentElement.scrollWidth+' '+window.innerWidth+'</pre>')</script>"
)


def chromium(*args: str, profile: Path) -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        raise SystemExit("headless Chromium not installed (Debian: apt-get install chromium)")
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={profile}",
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/html-shots"))
    parser.add_argument("--days", type=int, default=6)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="report-pages-"))
    db = folder / "probe.db"
    verdicts = build(db, args.days)
    page = args.out / "report.html"
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "probe", "report", "--db", str(db), "--html", str(page)],
        check=True,
        capture_output=True,
    )
    seconds = time.perf_counter() - started
    print(f"{verdicts:,} verdicts; probe report --html: {seconds:.1f} s, "
          f"{page.stat().st_size / 1e3:,.0f} kB -> {page}")  # fmt: skip
    text = page.read_text(encoding="utf-8")
    measured = folder / "measured.html"
    measured.write_text(
        re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", text).replace(
            "</body>", MEASURE + "</body>"
        ),
        encoding="utf-8",
    )
    for width in WIDTHS:
        dom = chromium(
            f"--window-size={width},900", "--dump-dom", measured.as_uri(), profile=folder / "p"
        )
        found = re.search(r'<pre id="layout">(\d+) (\d+)</pre>', dom)
        layout = f"scrollWidth {found[1]} in a {found[2]} px window" if found else "not measured"
        shot = args.out / f"report-{width}.png"
        chromium(
            f"--window-size={width},6000",
            f"--screenshot={shot}",
            page.as_uri(),
            profile=folder / "p",
        )
        print(f"{width} px: {layout}; screenshot {shot}")
    shutil.rmtree(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
