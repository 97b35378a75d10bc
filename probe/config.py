"""config.toml -> frozen Settings, validated once, with errors that name the file, table and key.

Where the file comes from, first match wins: `--config PATH`, `$PROBE_CONFIG`, `./config.toml`,
the user's config directory (platformdirs' user config dir for censorprobe, e.g.
~/.config/censorprobe/config.toml on Linux), else the built-in defaults.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import ssl
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import platformdirs

from probe.catalog import CatalogError, parse_target
from probe.checks import DEFAULT_USER_AGENT, Timeouts
from probe.model import Target
from probe.privacy import parse_address
from probe.resolvers import DEFAULT_RESOLVERS, ResolverSpec, parse_resolver

APP_NAME = "censorprobe"
T = TypeVar("T")


class ConfigError(ValueError):
    """The configuration is invalid; the message says where and how to fix it."""


@dataclass(frozen=True, slots=True)
class DetectorParams:
    """The event detector's settings (config.toml's [events] table; keys are these field names):
    read with the rest of the config, so a bad value stops at load time, not at a report.

    mu0, mu1, edd: the CUSUM (OONI's values). silence_halving_hours: accumulators are halved once
    per this many hours without a run. intermittent_*: the intermittent rule (see
    `_intermittent_intervals`). technique_min_runs: consecutive blocked buckets a new technique
    must dominate before it counts as a change (one odd run is not a switch).
    merge_window_hours: findings on different targets or networks whose onsets (and ends) lie
    within this many hours of each other are one event.
    """

    mu0: float = 0.0
    mu1: float = 0.7
    edd: float = 10.0
    silence_halving_hours: int = 48
    intermittent_window_runs: int = 72
    intermittent_min_episodes: int = 3
    intermittent_min_rate: float = 0.1
    intermittent_max_rate: float = 0.9
    intermittent_min_quiet_runs: int = 3
    technique_min_runs: int = 3
    merge_window_hours: int = 3

    def __post_init__(self) -> None:
        if not 0.0 <= self.mu0 < self.mu1 <= 1.0:
            raise ValueError(
                f"events: need 0 <= mu0 < mu1 <= 1 (blocked shares), got mu0={self.mu0}, "
                f"mu1={self.mu1}"
            )
        if self.edd <= 0:
            raise ValueError(
                f"events: edd (expected detection delay, runs) must be > 0, got {self.edd}"
            )
        if self.silence_halving_hours < 1:
            raise ValueError(
                f"events: silence_halving_hours must be >= 1, got {self.silence_halving_hours}"
            )
        if self.intermittent_window_runs < 3:
            raise ValueError(
                "events: intermittent_window_runs must be >= 3, got "
                f"{self.intermittent_window_runs}"
            )
        if self.intermittent_min_episodes < 2:
            raise ValueError(
                "events: intermittent_min_episodes must be >= 2 (one episode is plain blocking), "
                f"got {self.intermittent_min_episodes}"
            )
        if not 0.0 <= self.intermittent_min_rate < self.intermittent_max_rate <= 1.0:
            raise ValueError(
                "events: need 0 <= intermittent_min_rate < intermittent_max_rate <= 1, got "
                f"{self.intermittent_min_rate} and {self.intermittent_max_rate}"
            )
        if self.intermittent_min_quiet_runs < 1:
            raise ValueError(
                "events: intermittent_min_quiet_runs must be >= 1, got "
                f"{self.intermittent_min_quiet_runs}"
            )
        if self.technique_min_runs < 1:
            raise ValueError(
                f"events: technique_min_runs must be >= 1, got {self.technique_min_runs}"
            )
        if self.merge_window_hours < 0:
            raise ValueError(
                f"events: merge_window_hours must be >= 0, got {self.merge_window_hours}"
            )

    @property
    def reference(self) -> float:
        """CUSUM reference value k, halfway between the ok and blocked means: a bucket scoring
        above it is evidence of blocking, below it evidence of ok."""
        return (self.mu0 + self.mu1) / 2

    @property
    def threshold(self) -> float:
        """CUSUM decision threshold h = edd * (mu1 - mu0) / 2."""
        return self.edd * (self.mu1 - self.mu0) / 2

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> DetectorParams:
        """Settings from a config table; missing keys keep their defaults."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(mapping) - set(known))
        if unknown:
            raise ValueError(
                f"events: unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}"
            )
        values: dict[str, Any] = {}
        for name, value in mapping.items():
            wants_int = known[name].type in ("int", int)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"events: {name} must be a number, got {value!r}")
            if wants_int and not isinstance(value, int):
                raise ValueError(f"events: {name} must be a whole number, got {value!r}")
            values[name] = value if wants_int else float(value)
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Settings:
    """The validated configuration of the probe."""

    database: str | None = None
    concurrency: int = 256
    platforms: tuple[str, ...] = ()
    max_addresses: int = 4
    timeouts: Timeouts = field(default_factory=Timeouts)
    resolvers: tuple[ResolverSpec, ...] = DEFAULT_RESOLVERS
    dns_second_answer_window: float = 0.5
    ca_file: str | None = None
    max_body_bytes: int = 1 << 20
    transfer_bytes: int = 512 * 1024
    transfer_seconds: float = 3.0
    body_prefix_bytes: int = 2048
    max_redirects: int = 5
    user_agent: str = DEFAULT_USER_AGENT
    catalog_dir: Path | None = None
    extra_targets: tuple[Target, ...] = ()
    test_lists: tuple[Path, ...] = ()
    helper_url: str | None = None
    helper_token: str | None = None
    # [upload]: the collector this probe uploads to (probe.collector.uploader).
    upload_url: str | None = None
    upload_token: str | None = None
    upload_proxy: str | None = None
    events: DetectorParams = field(default_factory=DetectorParams)
    mmdb: tuple[Path, ...] = ()
    public_addresses: tuple[str, ...] = ()
    source: Path | None = None

    def digest(self) -> str:
        """A short stable digest of what was configured, stored with each run: of the settings'
        meaning, never of where files live. A digest over absolute paths would let anyone who
        guesses the volunteer's user name (/home/<name>/...) confirm it; files count by their
        content instead (the same CA, catalog or test list gives the same digest anywhere)."""
        data = asdict(self)
        for secret in ("source", "helper_token", "upload_token", "database"):
            data.pop(secret)
        # A hash of an IPv4 address is brute-forced in seconds: keep the probe's address out.
        data.pop("public_addresses")
        # A proxy URL may carry a user name and password: only whether one is used.
        data["upload_proxy"] = self.upload_proxy is not None
        # Each resolver by its canonical text (what the config said, normalised).
        data["resolvers"] = [r.spec for r in self.resolvers]
        data["ca_file"] = None if self.ca_file is None else _content_digest(Path(self.ca_file))
        data["catalog_dir"] = None if self.catalog_dir is None else _tree_digest(self.catalog_dir)
        data["test_lists"] = [_content_digest(p) for p in self.test_lists]
        data["mmdb"] = [_content_digest(p) for p in self.mmdb]
        # Only the [events] keys set, as the table once was stored: a default config keeps the
        # digest it always had.
        defaults = asdict(DetectorParams())
        data["events"] = {k: v for k, v in data["events"].items() if v != defaults[k]}
        text = json.dumps(data, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# How much of a file its digest reads: a GeoLite2 database runs to tens of megabytes, and its
# first megabyte (with the size) already tells one release from another.
_DIGEST_READ_MAX = 1 << 20


def _content_digest(path: Path) -> str:
    """A file by what it holds (its first _DIGEST_READ_MAX bytes and its size), not its path."""
    try:
        with path.open("rb") as file:
            head = file.read(_DIGEST_READ_MAX)
            size = file.seek(0, 2)
    except OSError:
        return "unreadable"
    return f"{hashlib.sha256(head).hexdigest()[:16]}:{size}"


def _tree_digest(directory: Path) -> str:
    """A catalog directory by its files' names (relative) and contents."""
    try:
        files = sorted(p for p in directory.rglob("*") if p.is_file())
    except OSError:
        return "unreadable"
    parts = [f"{p.relative_to(directory).as_posix()}={_content_digest(p)}" for p in files]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def user_config_path() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def user_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME))


def default_database_path() -> Path:
    return user_data_dir() / "measurements.db"


def database_location(settings: Settings, db: str | None) -> str:
    """The database to use: `--db`, else [probe] database, else the user data dir's."""
    return db or settings.database or str(default_database_path())


def find_config(explicit: Path | None) -> Path | None:
    """The config file in effect, or None for the built-in defaults."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"config file {explicit} does not exist")
        return explicit
    env = os.environ.get("PROBE_CONFIG")
    if env:
        if not Path(env).is_file():
            raise ConfigError(f"PROBE_CONFIG points at {env}, which does not exist")
        return Path(env)
    for candidate in (Path("config.toml"), user_config_path()):
        if candidate.is_file():
            return candidate
    return None


class _Table:
    """Typed access to one TOML table that remembers which keys were read."""

    def __init__(self, where: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: must be a table")
        self.where = where
        self.data: dict[str, Any] = data
        self.read: set[str] = set()

    def get(self, key: str, default: T, check: Callable[[Any], bool], expect: str) -> T:
        self.read.add(key)
        if key not in self.data:
            return default
        value = self.data[key]
        if (isinstance(value, bool) and not isinstance(default, bool)) or not check(value):
            raise ConfigError(f"{self.where} {key} = {value!r}: must be {expect}")
        return value  # type: ignore[no-any-return]

    def number(self, key: str, default: float, *, maximum: float, zero: bool = False) -> float:
        """A finite number above 0 (or 0 itself with `zero`) and at most `maximum`."""
        value = self.get(
            key,
            default,
            lambda v: (
                isinstance(v, int | float)
                and math.isfinite(v)
                and (v >= 0 if zero else v > 0)
                and v <= maximum
            ),
            f"a number from 0 to {maximum:g}" if zero else f"a number above 0, at most {maximum:g}",
        )
        return float(value)

    def integer(self, key: str, default: int, *, maximum: int, minimum: int = 1) -> int:
        return self.get(
            key,
            default,
            lambda v: isinstance(v, int) and minimum <= v <= maximum,
            f"an integer from {minimum} to {maximum}",
        )

    def string(self, key: str, default: str | None) -> str | None:
        value = self.get(key, default, lambda v: isinstance(v, str), "a string")
        return value or None

    def strings(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.get(
            key,
            list(default),
            lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
            "a list of strings",
        )
        return tuple(value)

    def finish(self) -> None:
        unknown = set(self.data) - self.read
        if unknown:
            raise ConfigError(f"{self.where}: unknown key(s) {', '.join(sorted(unknown))}")


# Upper bounds on every number a config can set. Past them a run hangs, or one body fills the
# memory (and then its row cannot be stored): the probe refuses them at load instead.
MAX_PHASE_TIMEOUT = 120.0  # s, per DNS / connect / TLS phase
MAX_HTTP_TIMEOUT = 600.0  # s, for a whole HTTP transaction (a slow throttled download included)
MAX_SECOND_ANSWER_WINDOW = 10.0  # s a UDP query keeps listening after its first answer
MAX_BODY_BYTES = 64 * 1024 * 1024
# A download shorter than this has no rate worth reading (its latency dominates): a transfer
# that reaches its byte bound must be at least this long, and analysis counts no shorter one.
MIN_TRANSFER_BYTES = 64 * 1024
MAX_BODY_PREFIX_BYTES = 64 * 1024  # stored with every HTTP row
MAX_REDIRECTS = 20  # the limit browsers apply (Fetch standard, "HTTP-redirect fetch")
MAX_CONCURRENCY = 4096  # connections in flight; each needs a descriptor
MAX_ADDRESSES = 64  # addresses measured per name
MAX_USER_AGENT = 512  # characters


_TABLES = frozenset(
    {"probe", "timeouts", "dns", "tls", "http", "catalog", "helper", "events", "network", "upload"}
)


def parse_settings(document: Mapping[str, Any], *, source: Path | None = None) -> Settings:
    """Settings from a parsed TOML document (relative paths resolve against the file's folder)."""
    name = str(source) if source else "config"
    base = source.parent if source else Path.cwd()
    unknown = set(document) - _TABLES - {"targets"}
    if unknown:
        raise ConfigError(f"{name}: unknown table(s) {', '.join(sorted(unknown))}")

    def table(key: str) -> _Table:
        return _Table(f"{name}: [{key}]", document.get(key, {}))

    def path(value: str | None) -> Path | None:
        return None if value is None else (base / Path(value).expanduser())

    probe, timeouts, dns, tls, http = (
        table(k) for k in ("probe", "timeouts", "dns", "tls", "http")
    )
    catalog, helper, network = table("catalog"), table("helper"), table("network")
    upload = table("upload")
    database = probe.string("database", None)
    if database and "://" not in database:
        database = str(path(database))
    defaults = Settings()
    settings_timeouts = Timeouts(
        dns=timeouts.number("dns", defaults.timeouts.dns, maximum=MAX_PHASE_TIMEOUT),
        connect=timeouts.number("connect", defaults.timeouts.connect, maximum=MAX_PHASE_TIMEOUT),
        tls=timeouts.number("tls", defaults.timeouts.tls, maximum=MAX_PHASE_TIMEOUT),
        http=timeouts.number("http", defaults.timeouts.http, maximum=MAX_HTTP_TIMEOUT),
    )
    resolver_texts = dns.strings("resolvers", tuple(r.spec for r in defaults.resolvers))
    if not resolver_texts:
        raise ConfigError(f'{name}: [dns] resolvers: give at least one (e.g. "system")')
    resolvers = _parse_resolvers(resolver_texts, f"{name}: [dns] resolvers")
    ca_file = path(tls.string("ca_file", None))
    if ca_file is not None:
        _check_ca_file(ca_file, f"{name}: [tls] ca_file = {ca_file}")
    helper_url = helper.string("url", None)
    if helper_url:
        _check_service_url(helper_url, f"{name}: [helper] url = {helper_url!r:.200}")
    helper_token = helper.string("token", None)
    _check_token(helper_token, f"{name}: [helper] token")
    upload_url, upload_token = upload.string("url", None), upload.string("token", None)
    upload_proxy = upload.string("proxy", None)
    if upload_url:
        _check_service_url(upload_url, f"{name}: [upload] url = {upload_url!r:.200}", "upload")
    _check_token(upload_token, f"{name}: [upload] token")
    if upload_proxy and urlsplit(upload_proxy).scheme not in ("http", "https"):
        raise ConfigError(f"{name}: [upload] proxy must start with http:// or https://")
    if bool(upload_url) != bool(upload_token):
        raise ConfigError(
            f"{name}: [upload] give both url and token (the collector's operator gives you the "
            "token)"
        )
    user_agent = http.string("user_agent", defaults.user_agent) or defaults.user_agent
    if len(user_agent) > MAX_USER_AGENT or not user_agent.isprintable():
        raise ConfigError(
            f"{name}: [http] user_agent: must be printable and at most {MAX_USER_AGENT} characters"
        )
    settings = Settings(
        database=database,
        concurrency=probe.integer("concurrency", defaults.concurrency, maximum=MAX_CONCURRENCY),
        platforms=probe.strings("platforms", ()),
        max_addresses=probe.integer("max_addresses", defaults.max_addresses, maximum=MAX_ADDRESSES),
        timeouts=settings_timeouts,
        resolvers=resolvers,
        dns_second_answer_window=dns.number(
            "second_answer_window",
            defaults.dns_second_answer_window,
            maximum=MAX_SECOND_ANSWER_WINDOW,
            zero=True,
        ),
        ca_file=str(ca_file) if ca_file else None,
        max_body_bytes=http.integer(
            "max_body_bytes", defaults.max_body_bytes, maximum=MAX_BODY_BYTES
        ),
        transfer_bytes=http.integer(
            "transfer_bytes",
            defaults.transfer_bytes,
            minimum=MIN_TRANSFER_BYTES,
            maximum=MAX_BODY_BYTES,
        ),
        transfer_seconds=http.number(
            "transfer_seconds", defaults.transfer_seconds, maximum=MAX_HTTP_TIMEOUT
        ),
        body_prefix_bytes=http.integer(
            "body_prefix_bytes",
            defaults.body_prefix_bytes,
            minimum=0,
            maximum=MAX_BODY_PREFIX_BYTES,
        ),
        max_redirects=http.integer(
            "max_redirects", defaults.max_redirects, minimum=0, maximum=MAX_REDIRECTS
        ),
        user_agent=user_agent,
        catalog_dir=path(catalog.string("dir", None)),
        extra_targets=_parse_targets(document.get("targets", []), name),
        test_lists=tuple(p for p in map(path, catalog.strings("test_lists", ())) if p),
        helper_url=helper_url,
        helper_token=helper_token,
        upload_url=upload_url,
        upload_token=upload_token,
        upload_proxy=upload_proxy,
        events=_detector_params(table("events").data, f"{name}: [events]"),
        mmdb=_existing_files(network.strings("mmdb", ()), path, f"{name}: [network] mmdb"),
        public_addresses=_addresses(network.strings("public_addresses", ()), name),
        source=source,
    )
    for t in (probe, timeouts, dns, tls, http, catalog, helper, network, upload):
        t.finish()
    return settings


def _check_ca_file(ca_file: Path, where: str) -> None:
    """A trust store OpenSSL can load: the file, not a traceback at the first TLS check."""
    if not ca_file.is_file():
        raise ConfigError(f"{where}: no such file")
    try:
        ssl.create_default_context(cafile=str(ca_file))
    except ssl.SSLError as exc:
        raise ConfigError(
            f"{where}: not a PEM file of CA certificates ({exc.reason or exc})"
        ) from None
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"{where}: cannot read it ({exc})") from None


def _check_token(token: str | None, where: str) -> None:
    # It travels in an Authorization header: a line break there is a header injection.
    if token is not None and (not token.isprintable() or " " in token):
        raise ConfigError(f"{where}: must be printable, without spaces")


def service_url_problem(url: str, table: str = "helper") -> str | None:
    """What is wrong with a helper's or a collector's URL, None when nothing: it must be
    http(s)://host[:port][/path], nothing else (the probe posts its targets, or for the [upload]
    collector its measurements, there). `table` names where the token goes instead."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    if not parts.hostname:
        return f"no host after {parts.scheme}://"
    if port == 0:
        return "port 0 is not a port"
    if parts.username is not None or parts.password is not None:
        return f"put the credentials in [{table}] token, not in the URL"
    if parts.query or parts.fragment or not url.isprintable() or " " in url:
        return "must be http(s)://host[:port][/path] (no query, no spaces)"
    return None


def _check_service_url(url: str, where: str, table: str = "helper") -> None:
    problem = service_url_problem(url, table)
    if problem is not None:
        raise ConfigError(f"{where}: {problem}")


def _detector_params(table: Mapping[str, Any], where: str) -> DetectorParams:
    try:
        return DetectorParams.from_mapping(table)
    except ValueError as exc:
        raise ConfigError(f"{where} {str(exc).removeprefix('events: ')}") from None


def _existing_files(
    values: tuple[str, ...], path: Callable[[str | None], Path | None], where: str
) -> tuple[Path, ...]:
    files = []
    for value in values:
        found = path(value)
        if found is None or not found.is_file():
            raise ConfigError(f"{where}: {found}: no such file")
        files.append(found)
    return tuple(files)


def _addresses(values: tuple[str, ...], name: str) -> tuple[str, ...]:
    addresses = []
    for value in values:
        try:
            addresses.append(str(parse_address(value)))
        except ValueError:
            raise ConfigError(
                f"{name}: [network] public_addresses: {value!r} is not an IP address"
            ) from None
    return tuple(addresses)


def _parse_resolvers(texts: tuple[str, ...], where: str) -> tuple[ResolverSpec, ...]:
    """The resolvers, parsed once here: a bad one is a ConfigError naming it."""
    specs = []
    for text in texts:
        try:
            specs.append(parse_resolver(text))
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return tuple(specs)


def _parse_targets(entries: Any, name: str) -> tuple[Target, ...]:
    if not isinstance(entries, list):
        raise ConfigError(f"{name}: 'targets' must be an array of tables ([[targets]])")
    targets = []
    for i, entry in enumerate(entries):
        where = f"{name}: [[targets]] #{i + 1}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be a table")
        platform = entry.get("platform", "custom")
        if not isinstance(platform, str) or not platform:
            raise ConfigError(f"{where}: 'platform' must be a non-empty string")
        try:
            targets.append(parse_target(entry, platform, where=where, source="config"))
        except CatalogError as exc:
            raise ConfigError(str(exc)) from None
    return tuple(targets)


def load_settings(explicit: Path | None = None) -> Settings:
    """Find, read and validate the configuration."""
    source = find_config(explicit)
    if source is None:
        return Settings()
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {source}: {exc}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}") from None
    return parse_settings(document, source=source)
