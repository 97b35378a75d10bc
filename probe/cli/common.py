"""Options and wiring shared by the commands: where the config and the database come from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from probe.config import Settings, default_database_path, load_settings
from probe.store import Store

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="config.toml to use (default: $PROBE_CONFIG, ./config.toml, the user config dir).",
        dir_okay=False,
    ),
]
DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database: a SQLite file path or a SQLAlchemy URL such as "
        "postgresql+psycopg://user@host/db (default: [probe] database, else the user data dir).",
    ),
]
PlatformOption = Annotated[
    list[str] | None,
    typer.Option("--platform", "-p", help="Only this platform (repeatable)."),
]


def settings_from(config: Path | None) -> Settings:
    return load_settings(config)


def database_location(settings: Settings, db: str | None) -> str:
    return db or settings.database or str(default_database_path())


def open_store(settings: Settings, db: str | None) -> Store:
    return Store.open(database_location(settings, db))
