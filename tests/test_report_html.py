"""`probe report --html` looked at the way a user looks at it: the page is rendered by headless
Chromium, the DOM it built is read back, and the screenshot's pixels are checked for the colours
of blocked hours. Synthetic verdicts with known events fill a real SQLite store first.

Needs the Debian package `chromium`; without it the tests are skipped (and say so)."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

from probe.store import Store
from tests.cli import invoke
from tests.stored_verdicts import START, TELEGRAM, TWITTER, day, store_verdicts
from tests.synthetic import Censorship, Network, SyntheticSpec, generate

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install chromium)"
)

# Telegram is measured from two networks (a lane per network), Twitter from one (a lane per
# target): both kinds of chart are on the page.
IRANCELL = SyntheticSpec(
    start=START,
    days=3,
    networks=(Network(44244, "IR", hosts=2),),
    platforms=(("telegram", TELEGRAM), ("twitter", TWITTER)),
    censorship=(
        Censorship((44244,), "telegram", "tcp.timeout", day(1), day(2)),
        Censorship((44244,), "twitter", "dns.bogon", day(1.5), None),
    ),
)
DTAG = SyntheticSpec(
    start=START,
    days=3,
    networks=(Network(3320, "DE", hosts=1),),
    platforms=(("telegram", TELEGRAM),),
)


@dataclass
class Chart:
    lanes: int = 0
    cells: Counter[str] = field(default_factory=Counter)  # by class: blocked, ok, ...
    techniques: Counter[str] = field(default_factory=Counter)  # blocked cells by technique
    onset_positions: set[str] = field(default_factory=set)  # drawn over every lane

    @property
    def onsets(self) -> int:
        return len(self.onset_positions)


class DomReader(HTMLParser):
    """Collects what the charts hold, the legend's colours, and anything that would load."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: dict[str, Chart] = {}
        self.legend: dict[str, str] = {}  # technique -> colour
        self.statuses: dict[str, str] = {}  # ok, down, inconclusive -> colour
        self.loads: list[str] = []
        self.scripts = 0
        self._chart: Chart | None = None
        self._depth = 0  # <div> nesting inside the current chart

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {name: value or "" for name, value in attrs}
        classes = a.get("class", "").split()
        if tag == "script":
            self.scripts += 1
        for name in ("src", "href", "xlink:href"):
            if name in a:
                self.loads.append(a[name])
        if self._chart is not None and tag == "div":
            self._depth += 1
        if tag == "div" and "timeline" in classes and "data-platform" in a:
            # The platform's chart; the target lanes of one network are keyed "platform/asn".
            key = a["data-platform"] + (f"/{a['data-network']}" if "data-network" in a else "")
            self._chart = self.charts.setdefault(key, Chart())
            self._depth = 0
        elif tag == "span" and "data-technique" in a:
            self.legend[a["data-technique"]] = a["data-colour"]
        elif tag == "span" and "data-status" in a:
            self.statuses[a["data-status"]] = a["data-colour"]
        elif self._chart is not None and tag == "rect" and "lane" in classes:
            self._chart.lanes += 1
        elif self._chart is not None and tag == "rect" and "cell" in classes:
            status = classes[1]
            self._chart.cells[status] += 1
            if status == "blocked":
                self._chart.techniques[a.get("data-technique", "")] += 1
        elif self._chart is not None and tag == "line" and "onset" in classes:
            self._chart.onset_positions.add(a["x1"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self._chart is not None:
            if self._depth == 0:
                self._chart = None
            else:
                self._depth -= 1


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)


def png_pixels(path: Path) -> Counter[tuple[int, int, int]]:
    """Count the RGB colours of an 8-bit RGB or RGBA PNG (zlib + struct: no imaging library)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, idat, header = 8, bytearray(), b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour_type in (2, 6) and interlace == 0, header
    channels = 3 if colour_type == 2 else 4
    stride = width * channels
    raw = zlib.decompress(bytes(idat))
    counts: Counter[tuple[int, int, int]] = Counter()
    previous = bytearray(stride)
    for row in range(height):
        start = row * (stride + 1)
        kind = raw[start]
        line = bytearray(raw[start + 1 : start + 1 + stride])
        _unfilter(kind, line, previous, channels)
        counts.update(zip(line[0::channels], line[1::channels], line[2::channels], strict=True))
        previous = line
    return counts


def _unfilter(kind: int, line: bytearray, previous: bytearray, bpp: int) -> None:
    """Undo one scanline's PNG filter in place (PNG specification, section 9)."""
    if kind == 0:
        return
    if kind == 2:  # Up: the whole row at once, bytewise addition without carries
        size = len(line)
        a, b = int.from_bytes(line, "big"), int.from_bytes(previous, "big")
        low = int.from_bytes(b"\x7f" * size, "big")
        high = int.from_bytes(b"\x80" * size, "big")
        line[:] = (((a & low) + (b & low)) ^ ((a ^ b) & high)).to_bytes(size, "big")
        return
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:
            up = previous[i]
            corner = previous[i - bpp] if i >= bpp else 0
            estimate = left + up - corner
            pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
            if pa <= pb and pa <= pc:
                predictor = left
            elif pb <= pc:
                predictor = up
            else:
                predictor = corner
            line[i] = (line[i] + predictor) & 0xFF
        else:
            raise AssertionError(f"unknown PNG filter {kind}")


def rgb(colour: str) -> tuple[int, int, int]:
    value = colour.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("html")
    db = folder / "probe.db"
    with Store.open(db) as store:
        store_verdicts(store, generate(IRANCELL, seed=5).verdicts)
        store_verdicts(store, generate(DTAG, seed=6).verdicts)
    html = folder / "report.html"
    code, _, err = invoke("report", "--db", str(db), "--html", str(html))
    assert code == 0, err
    assert f"wrote the HTML report to {html}" in err
    return html


def test_page_is_self_contained(page: Path) -> None:
    reader = DomReader()
    reader.feed(page.read_text(encoding="utf-8"))
    assert reader.scripts == 0
    assert [link for link in reader.loads if not link.startswith("#")] == []
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"url\((?!#)", text) and "@import" not in text


def test_chromium_draws_a_chart_per_platform_with_blocked_hours(page: Path, tmp_path: Path) -> None:
    dom = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile").stdout
    reader = DomReader()
    reader.feed(dom)
    # Telegram's events are on AS44244 only: its target lanes are drawn below the network lanes.
    assert set(reader.charts) == {"telegram", "telegram/44244", "twitter"}
    assert reader.charts["telegram/44244"].lanes == len(TELEGRAM)

    telegram = reader.charts["telegram"]
    assert telegram.lanes == 2  # one per network: AS3320 and AS44244
    assert telegram.techniques == {"tcp.timeout": 1}  # the day of blocking, one shape
    assert telegram.cells["ok"] >= 2 and telegram.onsets == 1

    twitter = reader.charts["twitter"]
    assert twitter.lanes == len(TWITTER)  # one network: one lane per target
    assert twitter.techniques == {"dns.bogon": len(TWITTER)}
    assert twitter.onsets == 1

    assert set(reader.legend) == {"tcp.timeout", "dns.bogon"}
    assert reader.legend["tcp.timeout"] != reader.legend["dns.bogon"]


def test_screenshot_shows_the_blocked_colours(page: Path, tmp_path: Path) -> None:
    reader = DomReader()
    reader.feed(page.read_text(encoding="utf-8"))
    png = tmp_path / "report.png"
    chromium(
        f"--screenshot={png}", "--window-size=1400,3000", page.as_uri(), profile=tmp_path / "p"
    )
    pixels = png_pixels(png)
    # A day of blocking in a 3-day chart about 1100 px wide, one lane 16 px high: thousands of
    # pixels; legend swatches alone are under 200.
    assert pixels[rgb(reader.legend["tcp.timeout"])] > 2000
    # Twitter: both lanes blocked for the last day and a half.
    assert pixels[rgb(reader.legend["dns.bogon"])] > 2 * 2000
    assert pixels[rgb(reader.statuses["ok"])] > 10000  # ok hours everywhere else


def test_footer_tells_every_probe_apart(page: Path) -> None:
    # The synthetic probes' ids share their first 8 characters ("probe-as44244-00", ...).
    footer = page.read_text(encoding="utf-8").split("<footer", 1)[1]
    listed = re.search(r"<dt>probes</dt><dd>(\d+): ([^<]*)</dd>", footer)
    assert listed is not None, footer[:500]
    probes = listed[2].split(", ")
    assert len(probes) == int(listed[1]) == 3  # two Irancell hosts, one DTAG
    assert len(set(probes)) == len(probes)


# Appended to a copy of the page without its CSP (the page itself runs no script): how far right
# the events tables' cells reach, beside the window's width.
_MEASURE_EVENTS = (
    "<script>var r=0;document.querySelectorAll('table.events td').forEach(function(c){"
    "r=Math.max(r,c.getBoundingClientRect().right)});document.body.insertAdjacentHTML("
    "'beforeend','<pre id=\"reach\">'+Math.ceil(r)+' '+window.innerWidth+'</pre>')</script>"
)


@pytest.mark.parametrize("width", [700, 1280])
def test_every_column_of_an_event_is_on_screen_at_this_width(
    page: Path, tmp_path: Path, width: int
) -> None:
    text = page.read_text(encoding="utf-8")
    assert text.count('<table class="events">') >= 2
    measured = tmp_path / "measured.html"
    measured.write_text(
        re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", text).replace(
            "</body>", _MEASURE_EVENTS + "</body>"
        ),
        encoding="utf-8",
    )
    dom = chromium(
        f"--window-size={width},900", "--dump-dom", measured.as_uri(), profile=tmp_path / "p"
    ).stdout
    found = re.search(r'<pre id="reach">(\d+) (\d+)</pre>', dom)
    assert found is not None
    reach, window = int(found[1]), int(found[2])
    assert window == width and 0 < reach <= width  # no column hidden to the right
