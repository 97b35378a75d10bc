"""The built-in catalog holds the field's endpoints (the OONI specs: ooni/spec nettests ts-018
WhatsApp, ts-019 Facebook Messenger, ts-020 Telegram, ts-029 Signal), and bad entries are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from probe.catalog import CatalogError, builtin_platforms, builtin_targets, load_catalog
from probe.model import Speaks, TargetKind

TELEGRAM_DCS = {
    "149.154.175.50",
    "149.154.167.51",
    "149.154.175.100",
    "149.154.167.91",
    "149.154.171.5",
    "95.161.76.100",
}


def test_every_platform_of_the_mission_is_in_the_builtin_catalog() -> None:
    names = {p.name for p in builtin_platforms()}
    assert {
        "telegram",
        "facebook",
        "instagram",
        "twitter",
        "youtube",
        "whatsapp",
        "signal",
    } <= names
    assert any(p.control for p in builtin_platforms())


def test_telegram_dcs_get_plain_http_post_on_80_and_443() -> None:
    dcs = [t for t in builtin_targets() if t.platform == "telegram" and t.group == "dc"]
    assert {t.host for t in dcs} == TELEGRAM_DCS
    for dc in dcs:
        assert dc.kind is TargetKind.HTTP and dc.method == "POST" and dc.ports == (80, 443)
        assert dc.url_for_port(443) == f"http://{dc.host}:443/"


def test_whatsapp_chat_endpoints_e1_to_e16_on_443_and_5222() -> None:
    chat = [t for t in builtin_targets() if t.platform == "whatsapp" and t.kind is TargetKind.TCP]
    assert {t.host for t in chat} == {f"e{i}.whatsapp.net" for i in range(1, 17)}
    assert all(t.ports == (443, 5222) for t in chat)


def test_the_apps_own_endpoints_are_core_groups_and_facebook_owns_as32934() -> None:
    platforms = {p.name: p for p in builtin_platforms()}
    assert platforms["telegram"].core_groups == {"dc"}
    assert platforms["whatsapp"].core_groups == {"chat"}
    assert platforms["youtube"].core_groups == frozenset()
    assert platforms["facebook"].owner_asns == {32934}
    for platform in platforms.values():
        declared = {g.name for g in platform.groups}
        assert {t.group for t in platform.targets if t.group} == declared, platform.name


def test_each_endpoint_says_what_it_speaks_facebooks_tcp_endpoints_tls() -> None:
    targets = builtin_targets()
    facebook_tcp = [t for t in targets if t.platform == "facebook" and t.kind is TargetKind.TCP]
    assert {t.host for t in facebook_tcp} == {
        "b-api.facebook.com",
        "b-graph.facebook.com",
        "edge-mqtt.facebook.com",
        "external.xx.fbcdn.net",
        "scontent.xx.fbcdn.net",
        "star.c10r.facebook.com",
    }
    assert {t.protocol for t in facebook_tcp} == {Speaks.TLS}
    # The apps' own protocols: WhatsApp's chat, Telegram's MTProto (probed with an HTTP POST).
    chat = [t for t in targets if t.platform == "whatsapp" and t.group == "chat"]
    dcs = [t for t in targets if t.platform == "telegram" and t.group == "dc"]
    assert chat and {t.protocol for t in chat} == {Speaks.RAW}
    assert dcs and {t.protocol for t in dcs} == {Speaks.RAW}
    pages = [t for t in targets if t.kind is TargetKind.HTTPS]
    assert {t.protocol for t in pages} == {Speaks.TLS}
    assert {t.protocol for t in targets if t.kind is TargetKind.DNS} == {None}


def test_stun_fbsbx_is_tested_by_dns_only() -> None:
    (stun,) = [t for t in builtin_targets() if t.host == "stun.fbsbx.com"]
    assert stun.kind is TargetKind.DNS and stun.ports == ()


def test_override_dir_replaces_a_platform(tmp_path: Path) -> None:
    (tmp_path / "signal.toml").write_text(
        'platform = "signal"\n[[targets]]\nurl = "https://signal.example/"\n'
    )
    signal = next(p for p in load_catalog(tmp_path) if p.name == "signal")
    assert [t.host for t in signal.targets] == ["signal.example"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            'platform = "x"\n[[targets]]\nurl = "ftp://a.example/"\n',
            "not an http:// or https:// URL",
        ),
        ('platform = "x"\n[[targets]]\nkind = "tcp"\nhost = "a.example"\n', "needs 'ports'"),
        (
            'platform = "x"\n[[targets]]\nkind = "tcp"\nhost = "a.example"\nports = [70000]\n',
            "70000",
        ),
        ('platform = "x"\n[[targets]]\nkind = "smtp"\nhost = "a.example"\n', "'kind' must be"),
        ('platform = "x"\n[[targets]]\nurl = "https://a.example/"\ncolour = 1\n', "colour"),
        ('platform = "x"\n[[targets]]\nkind = "dns"\nhost = "bad host!"\n', "not a valid host"),
        ("platform = \n", "not valid TOML"),
        (
            'platform = "x"\n[[targets]]\nkind = "dns"\nhost = "a.example"\ngroup = "dcs"\n',
            r"group 'dcs' is not declared \(add a \[groups.dcs\] table\)",
        ),
        ('platform = "x"\n[groups.dc]\n', "group\\(s\\) dc have no targets"),
        ('platform = "x"\n[groups.dc]\ncore = "yes"\n', "'core' must be true or false"),
        ('platform = "x"\n[groups.dc]\nall = true\n', "groups.dc: unknown key"),
        ('platform = "x"\ngroups = 1\n', "'groups' must be a table"),
        ('platform = "x"\nowner_asns = [0]\n', "owner_asns: 0 is not an AS number"),
        ('platform = "x"\nowner_asns = ["AS1"]\n', "'AS1' is not an AS number"),
        ('platform = "x"\nowner_asns = 32934\n', "must be a list of AS numbers"),
        (
            'platform = "x"\n[[targets]]\nkind = "tcp"\nhost = "a.example"\nports = [443]\n'
            'speaks = "quic"\n',
            "'speaks' of a kind tcp target must be one of raw, tls",
        ),
        (
            'platform = "x"\n[[targets]]\nurl = "https://a.example/"\nspeaks = "raw"\n',
            "'speaks' of a kind https target must be one of tls",
        ),
        (
            'platform = "x"\n[[targets]]\nkind = "dns"\nhost = "a.example"\nspeaks = "tls"\n',
            r"must be one of nothing \(it is only resolved\)",
        ),
    ],
)
def test_malformed_catalog_entry_is_a_clear_error_naming_the_file(
    tmp_path: Path, body: str, message: str
) -> None:
    (tmp_path / "x.toml").write_text(body)
    with pytest.raises(CatalogError, match=message) as caught:
        load_catalog(tmp_path)
    assert "x.toml" in str(caught.value)
