"""A blockpage fingerprint skips its regular expression when the page cannot match it (none of
the literal texts every match contains is in the page), and matches exactly where its pattern
matches: the same answer on real pages, on crafted blockpages, and on look-alike letters that a
case-insensitive search equates with ASCII ones (the shortcut is taken on ASCII text only)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from analysis.fingerprints import (
    CAPTCHA_FINGERPRINTS,
    HTTP_FINGERPRINTS,
    Fingerprint,
    required_literals,
)
from probe.ooni.dataformat import binary

_TEXT_TABLES = [fp for fp in (*HTTP_FINGERPRINTS, *CAPTCHA_FINGERPRINTS) if fp._regex is not None]


def _pattern_says(fp: Fingerprint, text: str) -> bool:
    assert fp._regex is not None
    return fp._regex.search(text) is not None


def test_the_tables_literal_patterns_have_needles() -> None:
    needles = {fp.pattern: fp._needles for fp in _TEXT_TABLES}
    assert needles[r"\bpeyvandha\.ir\b"] == ("peyvandha.ir",)
    assert needles[r"\binternet\.ir/1-2"] == ("internet.ir/1-2",)
    assert needles[r"/cdn-cgi/challenge-platform/|\bcf_chl_opt\b|\bcf-browser-verification\b"] == (
        "/cdn-cgi/challenge-platform/",
        "cf_chl_opt",
        "cf-browser-verification",
    )
    assert needles[r"^\s*Just a moment\.*\s*$"] == ("just a moment",)


def test_patterns_with_groups_classes_or_short_alternatives_have_no_needles() -> None:
    for pattern in (
        r"<iframe\s[^>]*src",  # a class
        r"a(?:b)c",  # a group
        r"abc|de",  # an alternative shorter than three characters
        r"\x41bcd",  # an escape not read here
        r"a?b?c?",  # nothing required
        "pe\u0130vandha",  # not ASCII
    ):
        assert required_literals(pattern) is None, pattern


def test_optional_and_repeated_characters_leave_or_end_the_needle() -> None:
    assert required_literals("abcd?efgh") == ("efgh",)
    assert required_literals("ab{2,3}cdef") == ("cdef",)
    assert required_literals("abc+defg") == ("defg",)
    assert required_literals(r"abc\sdefg|wxyz\.q") == ("defg", "wxyz.q")
    assert required_literals(r"\bcf_chl\b_opt") == ("cf_chl_opt",)


def _real_pages(ooni_dir: Path) -> list[str]:
    pages: list[str] = []
    for path in sorted(ooni_dir.glob("*.json")):
        keys = json.loads(path.read_text()).get("test_keys") or {}
        for request in keys.get("requests") or ():
            response = (request or {}).get("response") or {}
            body = binary(response.get("body"), "body")[:2048].decode("utf-8", "replace")
            pages.append(body)
            headers = response.get("headers") or {}
            pages.extend(str(v) for v in headers.values() if isinstance(v, str))
    return pages


_CRAFTED = [
    'see <a href="http://peyvandha.ir/">PEYVANDHA.IR</a>',
    "xpeyvandha.ir is not the blockpage",
    "peyvandha.irx neither",
    "Peyvandha.Ir",
    "peyvandha.\u0131r",  # dotless i: a case-insensitive search equates it with I
    "PEYVANDHA.\u0130R",
    "http://internet.ir/1-2.html",
    "INTERNET.IR/1-2",
    "<script src=/cdn-cgi/challenge-platform/h/b/orchestrate/></script>",
    "window._cf_chl_opt={cvId:'3'}",
    "var cf_chl_opt = 1",
    "class=cf-browser-verification",
    "cf-browser-verificatio",
    "CF_CHL_OPT",
    "c\u212af_chl_opt",  # a Kelvin sign is no k, but it is no ASCII text either
    "Just a moment...",
    "  just a moment  ",
    "Attention Required! | Cloudflare",
    "attention required|cloudflare",
    "challenge",
    " Challenge=1",
    "",
]


def test_a_fingerprint_matches_exactly_where_its_pattern_matches(ooni_dir: Path) -> None:
    texts = _real_pages(ooni_dir) + _CRAFTED
    assert len(texts) > 100
    hits = 0
    for fp in _TEXT_TABLES:
        for text in texts:
            assert fp.matches_text(text) == _pattern_says(fp, text), (fp.id, text[:80])
            hits += fp.matches_text(text)
    assert hits >= 15  # the crafted pages do match: the comparison saw both answers


def test_needles_never_miss_a_match_of_random_patterns() -> None:
    draw = random.Random(20261204)  # fixed: the same patterns and texts on every run
    literals = ["a", "b", "A", "B", r"\.", " "]
    tokens = [*literals * 4, ".", "?", "*", "+", "|", r"\b", r"\s", "{1,2}"]
    checked = 0
    for _ in range(2000):
        pattern = "".join(draw.choice(tokens) for _ in range(draw.randint(3, 10)))
        try:
            regex = re.compile(pattern, re.IGNORECASE)
        except re.error:
            continue
        needles = required_literals(pattern)
        if needles is None:
            continue
        for _ in range(10):
            text = "".join(draw.choice("abAB. ") for _ in range(draw.randint(0, 40)))
            if regex.search(text) is not None:
                checked += 1
                assert any(n in text.lower() for n in needles), (pattern, needles, text)
    assert checked > 200, checked
