"""Options and wiring shared by the commands: where the config and the database come from, the
time, network and platform filters, and the event detector's settings."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

import probe.store
from probe.config import Settings, database_location, load_settings

if TYPE_CHECKING:
    from probe.store import Store

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        metavar="FILE",
        help="config.toml to use (default: $PROBE_CONFIG, ./config.toml, the user config dir).",
        dir_okay=False,
    ),
]
DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="DB",
        help="Database: a SQLite file path or a SQLAlchemy URL such as "
        "postgresql+psycopg://user@host/db (default: [probe] database, else the user data dir).",
    ),
]
RisksOption = Annotated[
    bool,
    typer.Option(
        "--i-understand-the-risks",
        help="Accept the informed-consent text without a prompt (it is shown the first time).",
    ),
]
TestListOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--test-list",
        metavar="CSV",
        help="A Citizen Lab test list CSV to measure too (repeatable; platform 'testlist').",
        dir_okay=False,
    ),
]
PlatformOption = Annotated[
    list[str] | None,
    typer.Option("--platform", "-p", metavar="NAME", help="Only this platform (repeatable)."),
]


SinceOption = Annotated[
    str | None,
    typer.Option(
        metavar="TIME",
        help="From this time (ISO-8601, UTC unless a zone is given, or an age: 7d).",
    ),
]
UntilOption = Annotated[
    str | None, typer.Option(metavar="TIME", help="Before this time (same forms).")
]
NetworkOption = Annotated[
    list[str] | None,
    typer.Option(
        "--network",
        "-n",
        metavar="ASN",
        help="Only this network: an AS number such as 58224 or AS58224 (repeatable).",
    ),
]


@dataclass(frozen=True, slots=True)
class Filters:
    """A reading command's --since, --until, --network and --platform, parsed once; `given` says
    them as the user typed them ("--network AS58224 --since 7d"), empty when none."""

    since: datetime | None = None
    until: datetime | None = None
    asns: list[int] | None = None
    platforms: list[str] | None = None
    given: str = ""


def parse_filters(
    since: str | None,
    until: str | None,
    network: list[str] | None,
    platform: list[str] | None = None,
) -> Filters:
    """The filter options of runs, report and export; a bad value is a typer.BadParameter."""
    return Filters(
        since=parse_when(since, "--since"),
        until=parse_when(until, "--until"),
        asns=parse_networks(network),
        platforms=platform or None,
        given=_given_text(since=since, until=until, networks=network, platforms=platform),
    )


def _given_text(
    *,
    since: str | None = None,
    until: str | None = None,
    networks: Sequence[str] | None = None,
    platforms: Sequence[str] | None = None,
) -> str:
    """The filters a user gave, as they typed them ("--network AS58224 --since 7d"); empty
    when none (plain text)."""
    given = [f"--network {n}" for n in networks or ()]
    given += [f"--platform {p}" for p in platforms or ()]
    given += [f"--since {since}"] if since is not None else []
    given += [f"--until {until}"] if until is not None else []
    return " ".join(given)


def parse_networks(values: list[str] | None) -> list[int] | None:
    """--network values as AS numbers ("AS58224" and "58224" alike); None when none given."""
    if not values:
        return None
    asns = []
    for value in values:
        text = value.strip()
        digits = text[2:] if text[:2].upper() == "AS" else text
        if not digits.isdigit() or int(digits) >= 2**32:
            raise typer.BadParameter(
                f"{value!r} is not an AS number (e.g. 58224 or AS58224)", param_hint="--network"
            )
        asns.append(int(digits))
    return asns


def settings_from(config: Path | None, test_lists: list[Path] | None = None) -> Settings:
    """The settings in effect, with test lists given on the command line added."""
    settings = load_settings(config)
    if test_lists:
        settings = dataclasses.replace(settings, test_lists=(*settings.test_lists, *test_lists))
    return settings


def open_store(settings: Settings, db: str | None) -> Store:
    """The database a reading command (report, export) reads: opened read-only, never created
    (a mistyped --db is an error, not a new empty database)."""
    # probe.store.Store: SQLAlchemy is loaded here, by the commands that open a database.
    return probe.store.Store.open_readonly(database_location(settings, db))


def open_store_to_write(settings: Settings, db: str | None) -> Store:
    """The database a command adds to (analyse, upload), created if missing."""
    return probe.store.Store.open(database_location(settings, db))


def parse_when(text: str | None, option: str) -> datetime | None:
    """A time option: ISO-8601 date or datetime (UTC unless it names a zone), or an age such as
    `30m`, `12h`, `7d` meaning that long before now."""
    if text is None:
        return None
    value = text.strip()
    unit = _AGE_UNITS.get(value[-1:].lower())
    try:
        if unit is not None and value[:-1].isascii() and value[:-1].isdigit():
            return datetime.now(UTC) - timedelta(seconds=int(value[:-1]) * unit)
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except OverflowError:
        # An age past year 1 (99999999999d), or a time a zone shift moves out of the calendar.
        raise typer.BadParameter(
            f"{text!r:.80} is too far in the past (ages reach back to year 1 at most)",
            param_hint=option,
        ) from None
    except ValueError:
        raise typer.BadParameter(
            f"{text!r:.80} is not a time: use 2026-11-01, 2026-11-01T18:00, "
            "2026-11-01T18:00+03:30 or an age such as 12h or 7d",
            param_hint=option,
        ) from None


_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT or [IPv6]:PORT."""
    host, colon, port_text = text.rpartition(":")
    if not colon or not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise typer.BadParameter(
            f"{text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080",
            param_hint="--listen",
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise typer.BadParameter(f"{text!r}: no host before the port", param_hint="--listen")
    return host, int(port_text)
