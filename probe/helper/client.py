"""The probe's side of the test helper: send the run's targets, get the control measurements back.

`query_helper` never raises for a network problem or a bad answer: an unreachable helper, a
rejected token, a timeout, an oversized or malformed answer all come back as
HelperUnavailable(reason), with a reason a user can act on. A run without a control is still a
run; its verdicts are then "inconclusive" where a control was needed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
from yarl import URL

from probe.checks import CheckContext
from probe.config import service_url_problem
from probe.failures import classify
from probe.helper.protocol import (
    LIMITS,
    MEASURE_PATH,
    HelperResult,
    Limits,
    ProtocolError,
    batches,
    encode_request,
    parse_response,
)
from probe.model import Target

__all__ = ["HelperResult", "HelperUnavailable", "measure_url", "query_helper"]

# An error answer is a short JSON object; never read more of one than this.
_ERROR_BODY_BYTES = 16 * 1024
_READ_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class HelperUnavailable:
    """No control from the helper this time; `reason` says why."""

    reason: str


class _Unavailable(Exception):
    """Internal: ends an exchange with a reason for HelperUnavailable."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def measure_url(base_url: str) -> URL:
    """The measure endpoint under the helper's base URL (a path prefix is kept, so a helper
    behind a reverse proxy at https://host/helper/ works). ValueError for a URL that is not
    http(s)://host[:port][/path] (the check config.toml's [helper] url passes)."""
    problem = service_url_problem(base_url)
    if problem is not None:
        raise ValueError(f"helper URL {base_url!r:.200}: {problem}")
    url = URL(base_url)
    path = url.path if url.path.endswith("/") else f"{url.path}/"
    return url.with_path(f"{path}{MEASURE_PATH}").with_query(None).with_fragment(None)


def _shown(url: URL) -> str:
    """The helper's address for messages, without any credentials in the URL."""
    return str(url.with_user(None))


async def _read_capped(response: aiohttp.ClientResponse, cap: int) -> bytes | None:
    """The body, or None when it is longer than `cap` bytes (the rest is never read)."""
    data = bytearray()
    while True:
        chunk = await response.content.read(_READ_CHUNK)
        if not chunk:
            return bytes(data)
        data += chunk
        if len(data) > cap:
            return None


def _error_message(body: bytes | None) -> str:
    """The helper's own explanation from an error answer, if it gave one."""
    if not body:
        return ""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    message = document.get("error") if isinstance(document, dict) else None
    if not isinstance(message, str):
        return ""
    printable = "".join(c for c in message if c.isprintable())[:200]
    return f": {printable}" if printable else ""


async def _exchange(
    session: aiohttp.ClientSession,
    url: URL,
    token: str,
    targets: Sequence[Target],
    ctx: CheckContext,
    limits: Limits,
) -> HelperResult:
    shown = _shown(url)
    try:
        async with session.post(
            url,
            json=encode_request(targets),
            headers={"Authorization": f"Bearer {token}"},
            ssl=ctx.ssl_context,
            allow_redirects=False,
        ) as response:
            if response.status != 200:
                detail = _error_message(await _read_capped(response, _ERROR_BODY_BYTES))
                raise _Unavailable(_status_reason(shown, response.status, detail))
            body = await _read_capped(response, limits.max_response_bytes)
    except aiohttp.ClientError as exc:
        raise _Unavailable(f"cannot reach the helper at {shown}: {classify(exc)}") from None
    except OSError as exc:
        raise _Unavailable(f"cannot reach the helper at {shown}: {classify(exc)}") from None
    if body is None:
        raise _Unavailable(
            f"the helper at {shown} sent more than {limits.max_response_bytes} bytes"
        )
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise _Unavailable(
            f"the helper at {shown} answered with something that is not JSON"
        ) from None
    try:
        return parse_response(document, limits)
    except ProtocolError as exc:
        raise _Unavailable(f"the helper at {shown} answered outside protocol v1: {exc}") from None


def _status_reason(shown: str, status: int, detail: str) -> str:
    if status in (401, 403):
        return (
            f"the helper at {shown} refused the token (HTTP {status}{detail}); "
            "check [helper] token in config.toml"
        )
    if status == 413:
        return f"the helper at {shown} refused the request as too large (HTTP 413{detail})"
    if status == 503:
        return f"the helper at {shown} is busy (HTTP 503{detail})"
    return f"the helper at {shown} answered HTTP {status}{detail}"


def _merge(results: Sequence[HelperResult]) -> HelperResult:
    return HelperResult(
        client=results[0].client,
        targets=tuple(t for r in results for t in r.targets),
        refused=tuple(t for r in results for t in r.refused),
        complete=all(r.complete for r in results),
    )


async def query_helper(
    url: str,
    token: str,
    targets: Sequence[Target],
    ctx: CheckContext,
    # One budget for the whole exchange, all batches included (the call the run makes once).
    timeout: float,  # noqa: ASYNC109
    *,
    limits: Limits = LIMITS,
) -> HelperResult | HelperUnavailable:
    """Ask the helper at `url` (its base URL) to measure `targets`, within `timeout` seconds in
    all. More targets than one request may carry go in consecutive batches. `ctx.ssl_context`
    verifies an https helper. Raises only for a `url` that is not http(s) (bad configuration)."""
    endpoint = measure_url(url)
    shown = _shown(endpoint)
    requests = batches(targets, limits)
    results: list[HelperResult] = []
    try:
        async with asyncio.timeout(timeout):
            # Proxy variables would send the request through someone else's network.
            async with aiohttp.ClientSession(
                trust_env=False, headers={"User-Agent": ctx.user_agent}
            ) as session:
                for batch in requests:
                    results.append(await _exchange(session, endpoint, token, batch, ctx, limits))
    except TimeoutError:
        return HelperUnavailable(f"the helper at {shown} did not answer within {timeout:g} s")
    except _Unavailable as exc:
        return HelperUnavailable(exc.reason)
    return _merge(results)
