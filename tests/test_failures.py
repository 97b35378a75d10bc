"""The exception map's entries that real-socket tests showed to need care (the socket-level
scenarios themselves are in test_checks_tls.py and test_checks_http.py)."""

from __future__ import annotations

import errno

import aiohttp
import pytest

from probe.failures import classify


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

    assert classify(first) == classify(second)
    assert classify(first) == (
        "unknown_failure: ClientResponseError: Bad status line: Expected HTTP/, RTSP/ or ICE/"
    )


def test_every_address_failing_maps_to_the_first_addresses_error() -> None:
    exc = OSError(
        "Multiple exceptions: [Errno 111] Connect call failed ('10.10.34.35', 443), "
        "[Errno 101] Network is unreachable"
    )
    assert classify(exc) == "connection_refused"
