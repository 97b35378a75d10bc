"""The probe's uploader: sends every finished run, its measurements and its verdicts that the
collector has not acknowledged, in bounded gzip batches, and records each acknowledgement.

The outbox is the store itself (probe.store.uploads): nothing is deleted or moved when a batch is
sent, so a collector that is down, slow or blocked loses nothing; the runs stay queued and the
next upload (after the next run, or `probe upload`) sends them. Uploads are idempotent by global
ids: a batch whose acknowledgement was lost is sent again and the collector adds nothing twice.

Retries: a transient failure (no connection, a timeout, 429, 5xx) is retried with exponential
backoff and full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter", 2015), honouring
Retry-After, until the call's deadline; then it gives up quietly and the data stays queued. A
refusal (400, 401, 403, 409, 413) is not retried: it is recorded on the runs of the batch and
shown by `probe upload --status`.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import time
from dataclasses import dataclass, field

import aiohttp

from probe.checks import default_ssl_context
from probe.collector.batch import compress, encode_batch
from probe.collector.server import BATCHES_PATH
from probe.config import Settings
from probe.model import Measurement, Run
from probe.records import Verdict
from probe.store import Store, StoreError
from probe.store.uploads import (
    Acknowledged,
    Batch,
    QueuedRun,
    acknowledge,
    measurements_after,
    queued_runs,
    record_failure,
    unacknowledged_measurements,
)

# Statuses worth another try: the collector is busy, restarting, or behind a failing proxy.
_TRANSIENT = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class UploadTarget:
    """Where to upload: the collector's base URL, the probe's token, an optional HTTP proxy."""

    url: str
    token: str
    proxy: str | None = None
    ssl_context: ssl.SSLContext | None = None

    @property
    def batches_url(self) -> str:
        return self.url.rstrip("/") + BATCHES_PATH


@dataclass(frozen=True, slots=True)
class UploadPolicy:
    """Bounds of one upload call.

    deadline_s: the whole call, retries included (after a run: short, so a blocked collector
    never holds up the run; `probe upload`: longer). A batch holds at most max_measurements
    measurements and max_document_bytes of JSON before compression (the collector refuses more
    than 16 MiB).
    """

    deadline_s: float = 120.0
    request_timeout_s: float = 30.0
    connect_timeout_s: float = 10.0
    max_measurements: int = 1000
    max_runs: int = 200
    max_document_bytes: int = 3 * 1024 * 1024
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0


# After `probe run`: ten seconds at most, whatever the collector does (what is left is sent
# after the next run, or by `probe upload`).
AFTER_RUN_POLICY = UploadPolicy(deadline_s=10.0, request_timeout_s=8.0, connect_timeout_s=5.0)


@dataclass(slots=True)
class UploadReport:
    """What an upload call did. `error` is set when it stopped before the queue was empty:
    `refused` says whether the collector refused a batch (not retried) or could not be reached."""

    batches: int = 0
    runs_done: int = 0
    measurements_sent: int = 0
    measurements_added: int = 0
    error: str | None = None
    refused: bool = False
    queued_left: int = 0

    def describe(self) -> str:
        sent = (
            f"uploaded {self.runs_done} run(s), {self.measurements_sent} measurement(s) "
            f"in {self.batches} batch(es)"
        )
        if self.error is None:
            return sent
        return f"{sent}; stopped: {self.error}; {self.queued_left} run(s) stay queued"


@dataclass(frozen=True, slots=True)
class _Prepared:
    batch: Batch
    acks: tuple[Acknowledged, ...]
    body: bytes


def prepare_batch(store: Store, policy: UploadPolicy) -> _Prepared | None:
    """The next batch of the outbox (oldest runs first), or None when nothing is queued."""
    queued = queued_runs(store, limit=policy.max_runs)
    if not queued:
        return None
    budget = policy.max_measurements
    while True:
        batch, acks = _assemble(store, queued, budget)
        document = encode_batch(batch)
        if len(document) <= policy.max_document_bytes or budget <= 1:
            return _Prepared(batch, acks, compress(document))
        # Too big (large page bodies in the details): fewer measurements per batch.
        budget //= 2
        queued = queued[: max(1, len(batch.runs) // 2)]


def _assemble(
    store: Store, queued: list[QueuedRun], budget: int
) -> tuple[Batch, tuple[Acknowledged, ...]]:
    runs: list[Run] = []
    measurements: list[Measurement] = []
    verdicts: list[Verdict] = []
    acks: list[Acknowledged] = []
    for item in queued:
        if budget <= 0 and runs:
            break
        found = measurements_after(store, item.run.id, item.measurements_through, budget + 1)
        complete = len(found) <= budget
        found = found[:budget]
        run_verdicts = list(store.verdicts(run_id=item.run.id)) if complete else []
        runs.append(item.run)
        measurements.extend(found)
        verdicts.extend(run_verdicts)
        budget -= len(found) + len(run_verdicts)
        through = found[-1].id if found else item.measurements_through
        acks.append(Acknowledged(item.run.id, through, complete))
        if not complete:
            break
    return Batch(tuple(runs), tuple(measurements), tuple(verdicts)), tuple(acks)


class _Transient(Exception):
    def __init__(
        self, reason: str, retry_after: float | None = None, *, deadline: bool = False
    ) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.deadline = deadline  # the call's own deadline cut it short, not the collector


class _Refusal(Exception):
    pass


async def upload(
    store: Store,
    target: UploadTarget,
    policy: UploadPolicy | None = None,
) -> UploadReport:
    """Send the outbox until it is empty, the collector refuses a batch, or the deadline."""
    policy = policy or UploadPolicy()
    report = UploadReport()
    deadline = time.monotonic() + policy.deadline_s
    timeout = aiohttp.ClientTimeout(
        total=policy.request_timeout_s, sock_connect=policy.connect_timeout_s
    )
    headers = {
        "Authorization": f"Bearer {target.token}",
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
    }
    connector = aiohttp.TCPConnector(ssl=target.ssl_context or True, limit=1)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=connector, trust_env=False
    ) as session:
        attempt = 0
        last_reason: str | None = None  # what the collector did, not our deadline
        while True:
            prepared = await asyncio.to_thread(prepare_batch, store, policy)
            if prepared is None:
                break
            run_ids = [run.id for run in prepared.batch.runs]
            try:
                added = await _post(session, target, headers, prepared.body, deadline)
            except _Refusal as exc:
                report.error, report.refused = str(exc), True
                await asyncio.to_thread(record_failure, store, run_ids, str(exc))
                break
            except _Transient as exc:
                if not exc.deadline or last_reason is None:
                    last_reason = str(exc)
                delay = min(policy.backoff_cap_s, policy.backoff_base_s * 2**attempt)
                delay = random.uniform(0, delay)  # full jitter: probes never retry in step
                if exc.retry_after is not None:
                    delay = max(delay, min(exc.retry_after, policy.backoff_cap_s))
                attempt += 1
                if time.monotonic() + delay >= deadline:
                    report.error = last_reason
                    await asyncio.to_thread(record_failure, store, run_ids, last_reason)
                    break
                await asyncio.sleep(delay)
                continue
            attempt = 0
            await asyncio.to_thread(acknowledge, store, list(prepared.acks))
            report.batches += 1
            report.runs_done += sum(1 for ack in prepared.acks if ack.done)
            report.measurements_sent += len(prepared.batch.measurements)
            report.measurements_added += added
    if report.error is not None:
        report.queued_left = len(await asyncio.to_thread(queued_runs, store))
    return report


async def _post(
    session: aiohttp.ClientSession,
    target: UploadTarget,
    headers: dict[str, str],
    body: bytes,
    deadline: float,
) -> int:
    """POST one batch; return the measurements the collector added."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _Transient("the upload ran out of time", deadline=True)
    try:
        async with asyncio.timeout(remaining):
            async with session.post(
                target.batches_url, data=body, headers=headers, proxy=target.proxy
            ) as response:
                text = await response.text(errors="replace")
                status = response.status
                retry_after = _retry_after(response.headers.get("Retry-After"))
                document = await _json(response) if status == 200 else None
    except TimeoutError:
        cut = deadline - time.monotonic() <= 0.05
        raise _Transient("the collector did not answer in time", deadline=cut) from None
    except aiohttp.ClientError as exc:
        raise _Transient(f"cannot reach the collector ({type(exc).__name__}: {exc})") from None
    if status == 200:
        added = (document or {}).get("added", {}) if isinstance(document, dict) else {}
        value = added.get("measurements", 0) if isinstance(added, dict) else 0
        return value if isinstance(value, int) else 0
    reason = _reason(text) or f"HTTP {status}"
    if status in _TRANSIENT:
        raise _Transient(f"the collector answered {status}: {reason}", retry_after)
    raise _Refusal(f"the collector refused the batch ({status}): {reason}")


async def _json(response: aiohttp.ClientResponse) -> object:
    try:
        return await response.json(content_type=None)
    except ValueError:
        return None


def _reason(text: str) -> str:
    try:
        document = json.loads(text)
    except ValueError:
        return text.strip()[:200]
    error = document.get("error") if isinstance(document, dict) else None
    if isinstance(error, str):
        return error[:300]
    return text.strip()[:200]


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def upload_now(
    store: Store, target: UploadTarget, policy: UploadPolicy | None = None
) -> UploadReport:
    """Synchronous upload (the CLI's and the run's entry point)."""
    return asyncio.run(upload(store, target, policy))


@dataclass(frozen=True, slots=True)
class UploadStatus:
    """What `probe upload --status` shows."""

    queued: list[QueuedRun] = field(default_factory=list)
    measurements: int = 0


def upload_status(store: Store) -> UploadStatus:
    return UploadStatus(queued_runs(store), unacknowledged_measurements(store))


def upload_summary(store: Store, target: UploadTarget, policy: UploadPolicy) -> str:
    """Upload within `policy`; never raises for a collector or store problem: a one-line note."""
    try:
        return upload_now(store, target, policy).describe()
    except StoreError as exc:
        return f"upload skipped: {exc}"


def upload_target(settings: Settings) -> UploadTarget | None:
    """The [upload] collector of the settings (trust store: [tls] ca_file, else the system's), or
    None when none is configured."""
    if not (settings.upload_url and settings.upload_token):
        return None
    return UploadTarget(
        settings.upload_url,
        settings.upload_token,
        settings.upload_proxy,
        default_ssl_context(settings.ca_file),
    )
