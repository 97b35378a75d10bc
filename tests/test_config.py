"""config.toml is validated once, with messages that name the table and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from probe.config import ConfigError, Settings, load_settings
from probe.model import TargetKind
from tests.servers.tls_certs import Pki


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_the_shipped_config_toml_is_valid_and_matches_the_defaults() -> None:
    shipped = Path(__file__).resolve().parents[1] / "config.toml"
    settings = load_settings(shipped)
    defaults = Settings()
    assert settings.timeouts == defaults.timeouts
    assert settings.resolvers == defaults.resolvers
    assert settings.concurrency == defaults.concurrency


def test_values_are_read_and_relative_paths_resolve_next_to_the_file(tmp_path: Path) -> None:
    Pki().ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    path = write(
        tmp_path,
        """
[probe]
database = "data/m.db"
platforms = ["telegram"]
[timeouts]
connect = 2
[dns]
resolvers = ["udp://127.0.0.1:5353", "tcp://[::1]:53", "https://127.0.0.1/dns-query"]
[tls]
ca_file = "ca.pem"
[[targets]]
platform = "news"
url = "https://news.example/fa"
""",
    )
    settings = load_settings(path)
    assert settings.database == str(tmp_path / "data/m.db")
    assert settings.timeouts.connect == 2.0
    assert settings.ca_file == str(tmp_path / "ca.pem")
    (target,) = settings.extra_targets
    assert (target.platform, target.kind, target.path) == ("news", TargetKind.HTTPS, "/fa")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[timeouts]\nconect = 2\n", r"\[timeouts\]: unknown key\(s\) conect"),
        ("[timeouts]\nconnect = -1\n", r"\[timeouts\] connect = -1: must be a number"),
        ('[timeouts]\nconnect = "fast"\n', "must be a number"),
        ("[probe]\nconcurrency = 0\n", "concurrency = 0: must be an integer from 1 to 4096"),
        ('[dns]\nresolvers = ["carrier-pigeon"]\n', r"\[dns\] resolvers"),
        ("[dns]\nresolvers = []\n", "at least one"),
        ('[tls]\nca_file = "absent.pem"\n', "no such file"),
        ("[nonsense]\n", r"unknown table\(s\) nonsense"),
        ('[[targets]]\nurl = "gopher://x/"\n', r"\[\[targets\]\] #1"),
        ("[probe\n", "not valid TOML"),
        ("[events]\nmu0 = 0.9\n", r"\[events\] need 0 <= mu0 < mu1 <= 1"),
        ("[events]\nthreshold = 3\n", r"\[events\] unknown setting\(s\) threshold"),
        ('[events]\nedd = "ten"\n', r"\[events\] edd must be a number"),
        ("[events]\nmerge_window_hours = 2.5\n", "merge_window_hours must be a whole number"),
    ],
)
def test_a_broken_config_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path, text))


def test_the_events_table_is_read_with_the_config(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "[events]\nedd = 20\nmerge_window_hours = 2\n"))
    assert (settings.events.edd, settings.events.merge_window_hours) == (20.0, 2)
    assert settings.events.mu1 == load_settings(write(tmp_path, "")).events.mu1


def test_setting_an_events_default_explicitly_keeps_the_digest(tmp_path: Path) -> None:
    # The digest stores only the [events] keys that differ from the defaults.
    assert load_settings(write(tmp_path, "[events]\nedd = 10\n")).digest() == Settings().digest()
    assert load_settings(write(tmp_path, "[events]\nedd = 11\n")).digest() != Settings().digest()


def test_missing_explicit_config_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_digest_changes_with_the_settings_but_not_with_the_helper_token() -> None:
    assert Settings().digest() == Settings(helper_token="secret").digest()
    assert Settings().digest() != Settings(concurrency=3).digest()
