"""The exception map's entries that real-socket tests showed to need care (the socket-level
scenarios themselves are in test_checks_tls.py and test_checks_http.py)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap

import aiohttp
import pytest

from probe.failures import classify, describe, exception_map
from probe.model import UNKNOWN_FAILURE, Failure
from tests.cli import REPO


@pytest.mark.parametrize(
    ("exception", "failure"),
    [
        # asyncio's SSL layer turns a FIN during the handshake into this bare exception.
        (ConnectionResetError(), "eof_error"),
        # A RST read from the socket carries its errno.
        (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), "connection_reset"),
        # aiohttp writing to a transport that a RST already closed.
        (ConnectionResetError("Cannot write to closing transport"), "connection_reset"),
    ],
)
def test_fin_in_a_tls_handshake_is_eof_while_a_rst_stays_a_reset(
    exception: BaseException, failure: str
) -> None:
    assert classify(exception) == failure


def test_garbage_failure_names_the_parser_error_not_the_bytes_received() -> None:
    # One failure string per kind of garbage, whatever bytes each server sent.
    first = aiohttp.ClientResponseError(
        None,  # type: ignore[arg-type]
        (),
        message="Bad status line: Expected HTTP/, RTSP/ or ICE/: b'\\x16\\x03\\x01garbage'",
    )
    second = aiohttp.ClientResponseError(
        None,  # type: ignore[arg-type]
        (),
        message="Bad status line: Expected HTTP/, RTSP/ or ICE/: b'SSH-2.0-OpenSSH_9.6'",
    )

    assert describe(first) == describe(second)
    assert describe(first) == (
        "unknown_failure",
        "ClientResponseError: Bad status line: Expected HTTP/, RTSP/ or ICE/",
    )


def test_every_address_failing_maps_to_the_first_addresses_error() -> None:
    exc = OSError(
        "Multiple exceptions: [Errno 111] Connect call failed ('10.10.34.35', 443), "
        "[Errno 101] Network is unreachable"
    )
    assert classify(exc) == "connection_refused"


def test_no_entry_of_the_exception_map_is_shadowed_by_an_earlier_base_class() -> None:
    """The first matching class wins: an entry listed after one of its base classes could never
    be reached, and its failure string would silently never be written."""
    shadowed = [
        (later.__name__, earlier.__name__)
        for i, (later, _) in enumerate(exception_map())
        for earlier, _ in exception_map()[:i]
        if issubclass(later, earlier)
    ]
    assert shadowed == []


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("something new"),
        OSError(errno.EPROTO, "protocol error"),
        aiohttp.ClientResponseError(None, (), message="Bad status line"),  # type: ignore[arg-type]
    ],
    ids=["runtime-error", "unmapped-errno", "parser-message"],
)
def test_an_unknown_error_keeps_a_closed_failure_and_moves_its_text_to_the_detail(
    exc: BaseException,
) -> None:
    failure, detail = describe(exc)
    assert failure == classify(exc) == UNKNOWN_FAILURE
    assert detail and type(exc).__name__ in detail


def test_every_failure_string_is_oonis_or_unknown_failure() -> None:
    """The join key is a closed set: the OONI df-007 strings of probe.model.Failure, plus
    unknown_failure. Every mapper of the table, fed its own class, stays inside it."""
    allowed = {str(f) for f in Failure} | {UNKNOWN_FAILURE}
    for cls, _ in exception_map():
        try:
            exc = cls()
        except TypeError:
            continue  # needs arguments we cannot invent here; covered by the tests above
        assert classify(exc) in allowed, cls


def test_an_aiohttp_or_resolver_error_keeps_its_row_when_the_map_loaded_before_the_library() -> (
    None
):
    """probe.failures reads aiohttp's and dnspython's resolver classes only once they are
    loaded (no command pays for importing aiohttp to classify a socket error): a process that
    classified an error before importing them still maps their errors by their own rows, not
    as unknown failures. Run in a fresh interpreter, where neither is loaded yet."""
    code = textwrap.dedent(
        """
        import errno, sys
        from probe.failures import classify
        assert "aiohttp" not in sys.modules and "dns.resolver" not in sys.modules
        print(classify(ConnectionRefusedError(errno.ECONNREFUSED, "refused")))
        import aiohttp, dns.resolver
        print(classify(aiohttp.ServerDisconnectedError()))
        print(classify(dns.resolver.NXDOMAIN()))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["connection_refused", "eof_error", "dns_nxdomain_error"]
