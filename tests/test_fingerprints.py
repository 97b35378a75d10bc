"""Blockpage and DNS fingerprints, the false-positive exclusions, captchas, and bogon detection."""

from __future__ import annotations

import pytest

from analysis.fingerprints import (
    CAPTCHA_FINGERPRINTS,
    DNS_FINGERPRINTS,
    HTTP_FINGERPRINTS,
    Fingerprint,
    FingerprintKind,
    is_bogon,
    is_excluded,
    match_captcha,
    match_dns,
    match_http,
)
from probe.records import Confidence

# Iran's blockpage as volunteers have recorded it: a tiny 403 page framing the filter's page.
IRAN_BLOCKPAGE = (
    '<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1256">'
    "<title>M1-6</title></head><body>"
    '<iframe src="http://10.10.34.35?type=Invalid Site&policy=MainPolicy " '
    'style="width: 100%; height: 100%" scrolling="no" marginwidth="0" marginheight="0" '
    'frameborder="0" vspace="0" hspace="0"></iframe></body></html>'
)

# eBay's image host (a page that frames its own host, which a loose "iframe + .ir" pattern hits).
EBAYSTATIC_PAGE = (
    "<html><head><title>Access Denied</title></head><body>"
    '<iframe src="http://ir.ebaystatic.com/cr/v/c1/frame.html"></iframe>'
    "You don't have permission to access this server. Reference #18.2f3c1102</body></html>"
)


def ids(found: list[Fingerprint]) -> list[str]:
    return [fp.id for fp in found]


@pytest.mark.parametrize("address", ["10.10.34.34", "10.10.34.35", "10.10.34.36", "d0::11"])
def test_iran_dns_injection_answers_match(address: str) -> None:
    found = match_dns(["151.101.1.1", address])
    assert ids(found) == [f"ir.dns.{address}"]
    assert found[0].country == "IR" and found[0].confidence is Confidence.CONFIRMED


@pytest.mark.parametrize("address", ["10.10.34.37", "10.10.35.34", "157.240.1.35", "::11"])
def test_neighbouring_and_public_answers_do_not_match(address: str) -> None:
    assert match_dns([address]) == []


def test_garbage_dns_answers_are_ignored_not_fatal() -> None:
    assert match_dns(["not-an-ip", "", "10.10.34.34"]) == [DNS_FINGERPRINTS[0]]


def test_iran_iframe_blockpage_matches() -> None:
    found = ids(match_http(403, [["Content-Type", "text/html"]], IRAN_BLOCKPAGE, "M1-6"))
    assert "ir.http.iframe" in found and "ir.http.invalid_site_policy" in found


@pytest.mark.parametrize("address", ["10.10.34.34", "10.10.34.36"])
def test_iframe_to_other_blockpage_addresses_matches(address: str) -> None:
    body = f"<body><IFRAME  SRC='http://{address}/?x=1'></iframe></body>"
    assert ids(match_http(403, [], body, None)) == ["ir.http.iframe"]


def test_older_iran_blockpages_match() -> None:
    assert ids(match_http(200, [], '<a href="http://peyvandha.ir/">', None)) == [
        "ir.http.peyvandha"
    ]
    assert ids(match_http(200, [], "see http://internet.ir/1-2.html", None)) == [
        "ir.http.internet_ir"
    ]


def test_redirect_to_the_blockpage_matches_on_location() -> None:
    assert ids(match_http(302, [["Location", "http://10.10.34.34/?type=x"]], "", None)) == [
        "ir.http.location"
    ]
    assert ids(match_http(302, [["location", "https://www.peyvandha.ir/"]], "", None)) == [
        "ir.http.location"
    ]


def test_iframe_to_an_address_that_merely_starts_alike_does_not_match() -> None:
    assert match_http(200, [], '<iframe src="http://10.10.34.345/">', None) == []


def test_ebaystatic_is_never_a_blockpage() -> None:
    # Neither its own 403 page (eBay geo-blocking Iran) nor, for its host, anything at all.
    assert match_http(403, [["Server", "AkamaiGHost"]], EBAYSTATIC_PAGE, "Access Denied") == []
    assert match_http(403, [], IRAN_BLOCKPAGE, "M1-6", host="ir.ebaystatic.com") == []
    assert match_http(403, [], IRAN_BLOCKPAGE, "M1-6", host="IR.EbayStatic.com.") == []
    assert match_dns(["10.10.34.35"], host="ir.ebaystatic.com") == []
    exclusion = is_excluded("ir.ebaystatic.com")
    assert exclusion is not None and exclusion.id == "fp.ir.ebaystatic"


def test_exclusion_is_for_that_host_only() -> None:
    assert is_excluded("www.ebaystatic.com") is None
    assert ids(match_http(403, [], IRAN_BLOCKPAGE, None, host="www.bbc.com"))


def test_a_plain_403_is_not_a_blockpage() -> None:
    assert match_http(403, [["Server", "nginx"]], "<h1>403 Forbidden</h1>", "403 Forbidden") == []


@pytest.mark.parametrize(
    ("headers", "body", "title", "expected"),
    [
        ([], "", "Attention Required! | Cloudflare", "captcha.cloudflare.attention_required"),
        ([], "", "Just a moment...", "captcha.cloudflare.just_a_moment"),
        (
            [],
            '<script src="/cdn-cgi/challenge-platform/h/b/orchestrate">',
            None,
            "captcha.cloudflare.challenge_body",
        ),
        ([["cf-mitigated", "challenge"]], "", None, "captcha.cloudflare.mitigated"),
    ],
)
def test_cloudflare_captchas_are_recognised(
    headers: list[list[str]], body: str, title: str | None, expected: str
) -> None:
    assert expected in ids(match_captcha(headers, body, title))
    # ... and are never offered as blockpages.
    assert match_http(403, headers, body, title) == []


def test_captchas_and_blockpages_do_not_overlap() -> None:
    assert match_captcha([], IRAN_BLOCKPAGE, "M1-6") == []
    assert not {fp.id for fp in CAPTCHA_FINGERPRINTS} & {fp.id for fp in HTTP_FINGERPRINTS}


def test_fingerprint_ids_are_unique_and_documented() -> None:
    table = (*DNS_FINGERPRINTS, *HTTP_FINGERPRINTS, *CAPTCHA_FINGERPRINTS)
    assert len({fp.id for fp in table}) == len(table)
    assert all(fp.source for fp in table)


def test_a_malformed_fingerprint_fails_at_definition() -> None:
    with pytest.raises(ValueError):
        Fingerprint("x", FingerprintKind.DNS, "10.10.34.999", None, Confidence.CONFIRMED, "t")
    with pytest.raises(ValueError):
        Fingerprint("x", FingerprintKind.HTTP_BODY, "a", None, Confidence.CONFIRMED, "t", "h")


@pytest.mark.parametrize(
    "address",
    [
        "10.1.2.3",  # private
        "172.16.0.1",
        "192.168.1.1",
        "127.0.0.1",  # loopback
        "169.254.1.1",  # link-local
        "100.64.0.1",  # CGNAT
        "100.127.255.254",
        "0.0.0.0",  # unspecified
        "224.0.0.1",  # multicast
        "239.255.255.250",
        "240.0.0.1",  # reserved
        "255.255.255.255",
        "192.0.2.1",  # documentation
        "198.51.100.7",
        "203.0.113.9",
        "198.18.0.1",  # benchmarking
        "::",
        "::1",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "2001:db8::1",
        "d0::11",  # Iran's IPv6 answer, outside global unicast
        "::ffff:10.0.0.1",  # IPv4-mapped private
        "not an address",
    ],
)
def test_bogons_are_detected(address: str) -> None:
    assert is_bogon(address)


@pytest.mark.parametrize(
    "address",
    [
        "157.240.1.35",
        "149.154.167.51",
        "8.8.8.8",
        "100.128.0.1",
        "2a03:2880:f12f:83:face:b00c::25de",
        "2001:4860:4860::8888",
        "::ffff:8.8.8.8",
    ],
)
def test_public_addresses_are_not_bogons(address: str) -> None:
    assert not is_bogon(address)
