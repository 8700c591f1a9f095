"""Data capture: a sample of requests and responses, as SageMaker's capture records, in the artifact store.

    front door ─► record()            an in-memory list per (endpoint, variant); no I/O on the loop
    every 0.5 s ─► spool (thread)     appended to a local spool file: on disk within half a second
    rotation   ─► ship (thread)       a spool file past its size or age goes to the destination as
                                      <destination>/<endpoint>/<variant>/yyyy/mm/dd/hh/<time>-<id>.jsonl
                                      (SageMaker's layout), or to capture/<endpoint>/... in the
                                      platform's artifact store
    start      ─► ship leftovers      spool files a crash left behind are shipped first

A full disk or an unreachable store degrades capture, never a prediction: the error is logged
(once per kind per minute), records that cannot be spooled are counted as dropped, and a spool
file that cannot be shipped stays on disk for the next try.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson

from modelhost.control.artifact_store import ArtifactStore

log = logging.getLogger("modelhost.capture")

RETRY_S = 10.0  # how often spool files that could not be shipped are tried again
_TEXT_TYPES = {"text/csv": "CSV", "application/json": "JSON", "application/jsonlines": "JSON", "text/plain": "CSV"}


def _encode(body: bytes, content_type: str) -> tuple[str, str]:
    """SageMaker's (data, encoding): text kept as it is for CSV/JSON, anything else base64."""
    kind = _TEXT_TYPES.get(content_type.split(";", 1)[0].strip().lower())
    if kind is not None:
        try:
            return body.decode("utf-8"), kind
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), "BASE64"


def capture_record(  # noqa: PLR0917 (one call site, on the hot path)
    request: bytes,
    request_type: str,
    response: bytes,
    response_type: str,
    inference_id: str | None,
    capture_input: bool = True,
    capture_output: bool = True,
) -> bytes:
    """One line of SageMaker's data capture format (with only the parts the config's CaptureOptions ask for)."""
    metadata: dict[str, str] = {
        "eventId": str(uuid.uuid4()),
        "inferenceTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
    }
    if inference_id:
        metadata["inferenceId"] = inference_id
    captured: dict[str, dict[str, str]] = {}
    if capture_input:
        in_data, in_encoding = _encode(request, request_type)
        captured["endpointInput"] = {
            "observedContentType": request_type,
            "mode": "INPUT",
            "data": in_data,
            "encoding": in_encoding,
        }
    if capture_output:
        out_data, out_encoding = _encode(response, response_type)
        captured["endpointOutput"] = {
            "observedContentType": response_type,
            "mode": "OUTPUT",
            "data": out_data,
            "encoding": out_encoding,
        }
    record = {
        "captureData": captured,
        "eventMetadata": metadata,
        "eventVersion": "0",
    }
    return orjson.dumps(record) + b"\n"


@dataclass
class _Spool:
    path: Path
    opened: float
    size: int = 0


@dataclass
class CaptureStats:
    captured: int = 0
    dropped: int = 0
    shipped_files: int = 0
    errors: dict[str, float] = field(default_factory=dict)  # kind -> when last logged


class DataCapture:
    def __init__(
        self,
        spool_dir: Path,
        destination: Callable[[str | None], ArtifactStore],
        *,
        max_file_bytes: int = 8 * 1024 * 1024,
        max_file_age_s: float = 60.0,
        flush_every_s: float = 0.5,
        max_pending: int = 100_000,
    ) -> None:
        self._spool_dir = spool_dir
        self._destination = destination  # the store for a config's destination_uri (None: the platform's)
        self._max_file_bytes = max_file_bytes
        self._max_file_age_s = max_file_age_s
        self._flush_every_s = flush_every_s
        self._max_pending = max_pending
        self._pending: dict[tuple[str, str, str], list[bytes]] = {}  # (destination, endpoint, variant)
        self._pending_count = 0
        self._spools: dict[tuple[str, str, str], _Spool] = {}
        self._lock = threading.Lock()  # the spool files: appended in one thread at a time
        self._ship_lock = threading.Lock()  # the queues of files to ship
        self._to_ship: list[tuple[tuple[str, str, str], Path]] = []  # closed spool files, next to ship
        self._unshipped: list[tuple[tuple[str, str, str], Path]] = []  # failed once; retried every RETRY_S
        self._last_retry = time.monotonic()
        self.stats = CaptureStats()

    # -- the front door's side (event loop, no I/O) ---------------------------------------------------------
    @staticmethod
    def sampled(percentage: int) -> bool:
        return percentage >= 100 or random.random() * 100 < percentage

    def record(self, destination: str | None, endpoint: str, variant: str, line: bytes) -> None:
        if self._pending_count >= self._max_pending:
            self.stats.dropped += 1  # the spool is not keeping up: shed, never block
            return
        self._pending.setdefault((destination or "", endpoint, variant), []).append(line)
        self._pending_count += 1
        self.stats.captured += 1

    # -- background ---------------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Spool and ship until cancelled; then everything pending is spooled and shipped.

        Spooling and shipping run in separate threads, so a slow or unreachable store never
        holds records in memory; a cancel waits for the thread work already handed out.
        """
        self._queue_leftovers()
        shipper = asyncio.get_running_loop().create_task(self._ship_forever())
        try:
            while True:
                await asyncio.sleep(self._flush_every_s)
                await self._spool_pending(final=False)
        finally:
            shipper.cancel()
            await asyncio.gather(shipper, return_exceptions=True)
            await self._spool_pending(final=True)
            await asyncio.to_thread(self._ship_due, True)

    async def _spool_pending(self, *, final: bool) -> None:
        pending, self._pending, self._pending_count = self._pending, {}, 0
        job = asyncio.ensure_future(asyncio.to_thread(self._flush, pending, final))
        try:
            await asyncio.shield(job)  # a cancel must not drop records already taken out of _pending
        finally:
            if not job.done():
                await asyncio.wait([job])

    async def _ship_forever(self) -> None:
        while True:  # leftovers first, at once; then every flush interval
            if self._to_ship or self._unshipped:
                job = asyncio.ensure_future(asyncio.to_thread(self._ship_due, False))
                try:
                    await asyncio.shield(job)
                finally:
                    if not job.done():
                        await asyncio.wait([job])
            await asyncio.sleep(self._flush_every_s)

    def _flush(self, pending: dict[tuple[str, str, str], list[bytes]], final: bool) -> None:
        """Append what was recorded to the spool files; queue the ones due (size, age, final) to ship."""
        with self._lock:
            for key, lines in pending.items():
                self._append(key, lines)
            now = time.monotonic()
            for key, spool in list(self._spools.items()):
                if final or spool.size >= self._max_file_bytes or now - spool.opened >= self._max_file_age_s:
                    del self._spools[key]
                    with self._ship_lock:
                        self._to_ship.append((key, spool.path))

    def _ship_due(self, final: bool) -> None:
        """Ship the queued files, and (every RETRY_S, or at the end) those that failed before."""
        with self._ship_lock:
            now = time.monotonic()
            due, self._to_ship = self._to_ship, []
            if self._unshipped and (final or now - self._last_retry >= RETRY_S):
                self._last_retry = now
                due, self._unshipped = self._unshipped + due, []
            for key, path in due:
                self._ship(key, path)

    def _append(self, key: tuple[str, str, str], lines: list[bytes]) -> None:
        spool = self._spools.get(key)
        try:
            if spool is None:
                folder = self._spool_dir / _encode_key(key)
                folder.mkdir(parents=True, exist_ok=True)
                name = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}.jsonl"
                spool = self._spools[key] = _Spool(folder / name, time.monotonic())
            data = b"".join(lines)
            with spool.path.open("ab") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            spool.size += len(data)
        except OSError as exc:
            self.stats.dropped += len(lines)
            self._error("spool", f"data capture: cannot write {len(lines)} record(s) to {self._spool_dir}: {exc}")

    def _ship(self, key: tuple[str, str, str], path: Path) -> None:
        destination, endpoint, variant = key
        stamp = path.name[:15]  # yyyymmddThhmmss
        hour = f"{stamp[0:4]}/{stamp[4:6]}/{stamp[6:8]}/{stamp[9:11]}"
        # SageMaker's layout under a destination of the config's own; under "capture/" in the
        # platform's artifact store, beside the models.
        target = f"{'' if destination else 'capture/'}{endpoint}/{variant}/{hour}/{path.name}"
        try:
            store = self._destination(destination or None)
            store.put_bytes(target, path.read_bytes())
        except Exception as exc:
            self._error(
                "ship", f"data capture: cannot ship {path.name} to {destination or 'the artifact store'}: {exc}"
            )
            self._unshipped.append((key, path))
            return
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # the folder goes once its last file is shipped
            path.parent.rmdir()
        self.stats.shipped_files += 1

    def _queue_leftovers(self) -> None:
        """Spool files from an earlier run (a crash, or a store that was down) go first in line to ship."""
        if not self._spool_dir.is_dir():
            return
        with self._ship_lock:
            for folder in sorted(self._spool_dir.iterdir()):
                key = _decode_key(folder.name) if folder.is_dir() else None
                if key is None:
                    continue
                for path in sorted(folder.glob("*.jsonl")):
                    if key not in self._spools or self._spools[key].path != path:
                        self._to_ship.append((key, path))

    def _error(self, kind: str, message: str) -> None:
        now = time.monotonic()
        if now - self.stats.errors.get(kind, -1e9) >= 60:
            self.stats.errors[kind] = now
            log.error("%s (capture goes on; predictions are not affected)", message)


def _encode_key(key: tuple[str, str, str]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).decode("ascii")


def _decode_key(name: str) -> tuple[str, str, str] | None:
    try:
        destination, endpoint, variant = orjson.loads(base64.urlsafe_b64decode(name.encode("ascii")))
    except (ValueError, TypeError):
        return None
    return str(destination), str(endpoint), str(variant)
