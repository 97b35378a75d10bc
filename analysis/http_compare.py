"""An HTTP response compared with the control's, the way OONI's web_connectivity does: the status,
the body length's proportion, the uncommon header names and the title's words."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from analysis.controls import ControlHttp

# HTTP comparison with the control (OONI web_connectivity): body-length proportion above 0.7
# matches; title words of 5+ letters; header names outside this common set.
BODY_PROPORTION_MATCH = 0.7
_TITLE_WORD = re.compile(r"[^\W\d_]{5,}")
COMMON_HEADERS = frozenset(
    {
        "accept-ranges",
        "age",
        "alt-svc",
        "cache-control",
        "cf-ray",
        "connection",
        "content-encoding",
        "content-language",
        "content-length",
        "content-type",
        "date",
        "etag",
        "expires",
        "keep-alive",
        "last-modified",
        "link",
        "location",
        "p3p",
        "pragma",
        "server",
        "set-cookie",
        "strict-transport-security",
        "transfer-encoding",
        "vary",
        "via",
        "x-content-type-options",
        "x-frame-options",
        "x-powered-by",
        "x-varnish",
        "x-xss-protection",
    }
)


@dataclass(frozen=True, slots=True)
class HttpComparison:
    """How a response compares with the control's (None: no signal either way)."""

    status_match: bool | None
    body_proportion: float
    headers_match: bool | None
    title_match: bool | None

    @property
    def body_match(self) -> bool:
        return self.body_proportion > BODY_PROPORTION_MATCH

    @property
    def matches(self) -> bool:
        # OONI: accessible when the status matches and any of body length, headers, title do.
        if self.status_match is False:
            return False
        return self.body_match or self.headers_match is True or self.title_match is True

    def describe(self) -> str:
        return (
            f"status match {self.status_match}, body proportion {self.body_proportion:.2f},"
            f" uncommon headers match {self.headers_match}, title match {self.title_match}"
        )


def _uncommon(headers: Iterable[Sequence[str]]) -> frozenset[str]:
    names = (str(pair[0]).strip().lower() for pair in headers if len(pair) >= 1)
    return frozenset(n for n in names if n and n not in COMMON_HEADERS)


def _title_words(title: str | None) -> frozenset[str]:
    return frozenset(w.casefold() for w in _TITLE_WORD.findall(title or ""))


def compare_http(
    status: int | None,
    body_length: int,
    headers: Iterable[Sequence[str]],
    title: str | None,
    control: ControlHttp,
) -> HttpComparison:
    """Compare a response with the control's the way OONI Web Connectivity does (ooni/spec
    nettests/ts-017-web-connectivity.md: body proportion, status, headers, title)."""
    if control.status is None or control.status >= 500:
        status_match = None  # the control's own server trouble says nothing about ours
    else:
        status_match = status == control.status
    a, b = max(body_length, 0), max(control.body_length, 0)
    proportion = 1.0 if a == b else min(a, b) / max(a, b)
    ours, theirs = _uncommon(headers), _uncommon(control.headers)
    headers_match = None if not (ours or theirs) else bool(ours & theirs)
    control_words = _title_words(control.title)
    title_match = None if not control_words else bool(control_words & _title_words(title))
    return HttpComparison(status_match, round(proportion, 3), headers_match, title_match)
