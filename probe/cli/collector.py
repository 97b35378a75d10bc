"""`probe collector serve` and `probe collector token add/list/revoke`: run a collector that
receives probes' uploads (probe.collector.server) and manage the probes' upload tokens."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from probe.cli.base import ProbeCommand, console, err, user_errors
from probe.cli.common import parse_listen
from probe.cli.terminal import plain
from probe.collector.server import serve
from probe.store import Store
from probe.store.uploads import add_token, list_tokens, revoke_token

CollectorDbOption = Annotated[
    str,
    typer.Option(
        "--db",
        metavar="DB",
        help="The collector's database: a SQLAlchemy URL such as "
        "postgresql+psycopg://collector@localhost/censorprobe (or a SQLite path for a test).",
    ),
]


def register(app: typer.Typer) -> None:
    collector_app = typer.Typer(
        name="collector",
        help="Run a collector that receives uploads from probes, and manage their tokens.",
        no_args_is_help=True,
        rich_markup_mode=None,
    )
    token_app = typer.Typer(
        name="token",
        help="Upload tokens: one per probe operator.",
        no_args_is_help=True,
        rich_markup_mode=None,
    )

    @collector_app.command("serve", cls=ProbeCommand, short_help="Receive uploads from probes.")
    @user_errors
    def serve_command(
        db: CollectorDbOption,
        listen: Annotated[
            str, typer.Option("--listen", metavar="HOST:PORT", help="HOST:PORT to listen on.")
        ] = "127.0.0.1:8090",
        tls_cert: Annotated[
            str | None,
            typer.Option(
                "--tls-cert", metavar="FILE", help="PEM certificate chain (else plain HTTP)."
            ),
        ] = None,
        tls_key: Annotated[
            str | None,
            typer.Option("--tls-key", metavar="FILE", help="PEM private key of --tls-cert."),
        ] = None,
        reuse_port: Annotated[
            bool,
            typer.Option(
                "--reuse-port",
                help="Share the port with other collector processes (one per core; SO_REUSEPORT).",
            ),
        ] = False,
    ) -> None:
        """Receive uploads until interrupted (no access log; client addresses are never kept)."""
        host, port = parse_listen(listen)

        def ready(bound: int) -> None:
            scheme = "https" if tls_cert else "http"
            err.print(f"collector listening on {scheme}://{plain(host)}:{bound}")

        try:
            serve(
                db,
                host,
                port,
                tls_cert=tls_cert,
                tls_key=tls_key,
                reuse_port=reuse_port,
                ready=ready,
            )
        except KeyboardInterrupt:
            err.print("collector stopped")
        except OSError as exc:
            err.print(f"[red]error:[/red] cannot listen on {plain(listen)}: {exc.strerror}")
            raise typer.Exit(1) from None

    @token_app.command("add", cls=ProbeCommand, short_help="Create a token, printed once.")
    @user_errors
    def token_add(
        name: Annotated[str, typer.Argument(metavar="NAME", help="Who the token is for (unique).")],
        db: CollectorDbOption,
    ) -> None:
        """Create a token and print it once (the database keeps only its hash)."""
        with Store.open(db) as store:
            info, token = add_token(store, name)
        err.print(
            f"token {info.id} for {plain(info.name)}: give it to the probe's operator "
            "([upload] token in config.toml); it is not shown again"
        )
        sys.stdout.write(token + "\n")

    @token_app.command("list", cls=ProbeCommand, short_help="List the tokens (never the secrets).")
    @user_errors
    def token_list(db: CollectorDbOption) -> None:
        """The tokens, their probes and whether they are revoked (never the tokens themselves)."""
        with Store.open(db) as store:
            tokens = list_tokens(store)
        table = Table("id", "name", "created", "probes", "revoked")
        for t in tokens:
            table.add_row(
                t.id,
                plain(t.name),
                t.created_at.isoformat(timespec="seconds"),
                str(t.probes),
                t.revoked_at.isoformat(timespec="seconds") if t.revoked_at else "",
            )
        console().print(table)

    @token_app.command("revoke", cls=ProbeCommand, short_help="Revoke a token.")
    @user_errors
    def token_revoke(
        name: Annotated[str, typer.Argument(metavar="NAME", help="The token's name or id.")],
        db: CollectorDbOption,
    ) -> None:
        """Revoke a token: its uploads are refused from now on (its data stays)."""
        with Store.open(db) as store:
            info = revoke_token(store, name)
        err.print(f"token {info.id} ({plain(info.name)}) revoked")

    collector_app.add_typer(token_app, name="token")
    app.add_typer(collector_app, name="collector")
