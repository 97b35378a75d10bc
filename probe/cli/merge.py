"""`probe merge`: copy several probes' databases into one, for reports across hosts and networks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from probe.cli.base import ProbeCommand, console, err, user_errors
from probe.cli.terminal import plain
from probe.store.merge import ANNOTATIONS, MERGED_TABLES, merge_databases


def register(app: typer.Typer) -> None:
    @app.command(cls=ProbeCommand)
    @user_errors
    def merge(
        sources: Annotated[
            list[Path],
            typer.Argument(
                help="SQLite probe databases to merge (only read, never changed).",
                dir_okay=False,
                metavar="SOURCE",
            ),
        ],
        into: Annotated[
            str | None,
            typer.Option(
                "--into",
                "--db",
                metavar="DB",
                help="The database to merge into: a SQLite path (created if missing) or a "
                "SQLAlchemy URL.",
            ),
        ] = None,
    ) -> None:
        """Merge probe databases into one (idempotent: rows already there are skipped)."""
        if into is None:
            raise typer.BadParameter("name the database to merge into", param_hint="--into DB")
        merged = merge_databases(sources, into)
        out = console()
        for result in merged.sources:
            networks = ", ".join(
                "unknown" if asn is None else f"AS{asn}" for asn in result.networks
            )
            out.print(
                f"[bold]{plain(result.source)}[/bold] (schema {result.schema_version}): "
                f"{result.probes} probe(s) on {len(result.networks)} network(s)"
                + (f" ({networks})" if networks else "")
            )
            counts = "; ".join(
                f"{table.name.replace('_', ' ')}: {result.added[table.name]:,} new of "
                f"{result.rows[table.name]:,}"
                for table in MERGED_TABLES
            )
            if result.rows.get(ANNOTATIONS):
                counts += (
                    f"; annotations: {result.added[ANNOTATIONS]:,} new of "
                    f"{result.rows[ANNOTATIONS]:,}"
                )
            out.print(f"  {counts}")
        err.print(
            f"merged {len(merged.sources)} database(s) into {plain(merged.destination)}: "
            f"{merged.added():,} new rows"
        )
