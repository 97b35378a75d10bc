"""`probe helper serve`: run the control test helper (probe.helper.server) on an uncensored host.

The token never appears on the command line (where `ps` shows it to every user): it comes from
--token-file or $PROBE_HELPER_TOKEN. The helper measures with the checks' settings of --config
(resolvers, timeouts, trust store, HTTP limits).
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import stat
from pathlib import Path
from typing import Annotated

import typer

from probe.cli.base import ProbeCommand, err, user_errors
from probe.cli.common import ConfigOption, parse_listen, settings_from
from probe.cli.terminal import plain
from probe.config import ConfigError
from probe.helper.server import HelperConfig, serve
from probe.netid.mmdb import AsnDatabase
from probe.session import check_context, raise_file_limit

TOKEN_ENV = "PROBE_HELPER_TOKEN"
# A guessable token turns the helper into anyone's free scanner: ask for a real secret.
MIN_TOKEN_LENGTH = 16
_TOKEN_HINT = "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def read_token(token_file: Path | None) -> str:
    """The bearer token from --token-file, else $PROBE_HELPER_TOKEN."""
    if token_file is not None:
        try:
            text = token_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--token-file {token_file}: cannot read it ({exc})") from None
        if token_file.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            err.print(
                f"[yellow]warning:[/yellow] {plain(token_file)} is readable by other users "
                f"(chmod 600 {plain(token_file)})",
            )
        where = f"--token-file {token_file}"
    elif os.environ.get(TOKEN_ENV):
        text, where = os.environ[TOKEN_ENV], f"${TOKEN_ENV}"
    else:
        raise ConfigError(f"the helper needs a token: give --token-file FILE or set ${TOKEN_ENV}")
    token = text.strip()
    if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
        raise ConfigError(
            f"{where}: the token must be at least {MIN_TOKEN_LENGTH} characters without spaces; "
            f"{_TOKEN_HINT}"
        )
    return token


def _server_tls(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ConfigError("give both --cert and --key to serve HTTPS")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"--cert {cert} / --key {key}: cannot load them ({exc})") from None
    return context


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def register(app: typer.Typer) -> None:
    helper_app = typer.Typer(
        name="helper",
        help="The control test helper: run it on an uncensored host; probes ask it for controls.",
        no_args_is_help=True,
        rich_markup_mode=None,
    )

    @helper_app.command("serve", cls=ProbeCommand, short_help="Serve the test helper's API.")
    @user_errors
    def serve_command(
        listen: Annotated[
            str,
            typer.Option(
                "--listen",
                metavar="HOST:PORT",
                help="HOST:PORT to listen on ([IPv6]:PORT; port 0 picks a free one).",
            ),
        ] = "127.0.0.1:8080",
        token_file: Annotated[
            Path | None,
            typer.Option(
                "--token-file",
                metavar="FILE",
                help=f"File holding the bearer token probes must send (else ${TOKEN_ENV}).",
                dir_okay=False,
            ),
        ] = None,
        config: ConfigOption = None,
        cert: Annotated[
            Path | None,
            typer.Option(
                "--cert",
                metavar="FILE",
                help="TLS certificate chain (PEM); with --key, serve HTTPS.",
            ),
        ] = None,
        key: Annotated[
            Path | None,
            typer.Option("--key", metavar="FILE", help="TLS private key (PEM) for --cert."),
        ] = None,
        allow_private: Annotated[
            bool,
            typer.Option(
                "--allow-private",
                help="Also measure loopback, private and link-local addresses. Only for tests: "
                "it lets any caller with the token probe this host's own network.",
            ),
        ] = False,
        deadline: Annotated[
            float,
            typer.Option(
                "--deadline",
                metavar="SECONDS",
                min=1.0,
                max=3600.0,
                help="Seconds one batch may take at most.",
            ),
        ] = 120.0,
        max_requests: Annotated[
            int,
            typer.Option(
                "--max-requests",
                metavar="N",
                min=1,
                max=64,
                help="Batches measured at once (503 beyond).",
            ),
        ] = 4,
    ) -> None:
        """Serve POST /v1/measure (bearer token) and GET /healthz until SIGINT/SIGTERM."""
        host, port = parse_listen(listen)
        token = read_token(token_file)
        tls = _server_tls(cert, key)
        settings = settings_from(config)
        helper = HelperConfig(
            token=token,
            resolvers=settings.resolvers,
            context=check_context(settings),
            concurrency=settings.concurrency,
            max_addresses=settings.max_addresses,
            allow_private=allow_private,
            deadline=deadline,
            max_requests=max_requests,
            asn_database=AsnDatabase(settings.mmdb) if settings.mmdb else None,
        )
        if tls is None and not _is_loopback(host):
            err.print(
                "[yellow]warning:[/yellow] plain HTTP on a non-loopback address: the token and "
                "the results travel in clear (use --cert/--key or a TLS-terminating proxy)",
            )

        def ready(url: str) -> None:
            policy = "private addresses allowed" if allow_private else "public addresses only"
            err.print(f"probe helper listening on {plain(url)} ({policy})")

        # Probes, their measurements and whoever floods the port share the descriptors: as many
        # as the host allows, and serve() keeps its connections within them.
        raise_file_limit()
        serve(helper, host, port, ssl_context=tls, ready=ready)

    app.add_typer(helper_app, name="helper")
