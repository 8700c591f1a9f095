"""Data capture (modelhost.frontdoor.capture): SageMaker's record format, sampling, and DataCapture's
spool-and-ship loop on real files, with a LocalArtifactStore in tmp_path as the destination.

A destination that is down is a small store class whose put_bytes raises while a flag says so; a
spool that cannot be written is a spool dir path that is a regular file (the tests run as root, so
permissions would not stop a write). DataCapture.run() is driven by asyncio.run with short flush
intervals; each test waits for what it expects by polling, never by a fixed long sleep.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import logging
import re
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

import modelhost.frontdoor.capture as capture_module
from modelhost.control.artifact_store import LocalArtifactStore
from modelhost.errors import ArtifactError
from modelhost.frontdoor.capture import DataCapture, capture_record

pytestmark = pytest.mark.timeout(20)

TARGET = re.compile(
    r"^(?:capture/)?(?P<endpoint>[^/]+)/(?P<variant>[^/]+)/(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/(?P<h>\d{2})/"
    r"(?P<stamp>(?P<sy>\d{4})(?P<sm>\d{2})(?P<sd>\d{2})T(?P<sh>\d{2})\d{4})-[0-9a-f]{12}\.jsonl$"
)
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


# -- helpers -------------------------------------------------------------------------------------------------


class FlakyStore:
    """A LocalArtifactStore that refuses every write while ``failing`` is set ("store unreachable")."""

    def __init__(self, root: Path, *, failing: bool = True) -> None:
        self.inner = LocalArtifactStore(root)
        self.root = self.inner.root
        self.root_uri = self.inner.root_uri
        self.failing = failing
        self.attempts = 0
        self.failures = 0

    def put_bytes(self, key: str, data: bytes) -> str:
        self.attempts += 1
        if self.failing:
            self.failures += 1
            raise ArtifactError(f"{key}: store unreachable")
        return self.inner.put_bytes(key, data)

    def put_file(self, key: str, source: Path) -> str:
        return self.inner.put_file(key, source)

    def owns(self, uri: str) -> bool:
        return self.inner.owns(uri)

    def delete(self, uri: str) -> None:
        self.inner.delete(uri)


class GatedStore(FlakyStore):
    """A store whose writes block until the test opens the gate (a slow or timing-out S3)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, failing=False)
        self.gate = threading.Event()
        self.entered = threading.Event()

    def put_bytes(self, key: str, data: bytes) -> str:
        self.entered.set()
        self.gate.wait(5)
        return super().put_bytes(key, data)


@functools.cache
def line(n: int, endpoint: str = "ep", inference_id: str | None = None) -> bytes:
    """The n-th record line (the same bytes every time it is asked for)."""
    return capture_record(
        orjson.dumps({"instances": [[n, n + 1]], "endpoint": endpoint}),
        "application/json",
        f"{n},{n * 2}\n".encode(),
        "text/csv",
        inference_id,
    )


def shipped(root: Path) -> dict[str, bytes]:
    """Every file in a destination store, by key (not one the store is still writing)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(".partial")
    }


def spool_files(spool: Path) -> list[Path]:
    return sorted(p for p in spool.rglob("*") if p.is_file()) if spool.is_dir() else []


def spooled_bytes(spool: Path) -> bytes:
    return b"".join(p.read_bytes() for p in spool_files(spool))


def lines_of(files: dict[str, bytes]) -> list[bytes]:
    return sorted(raw for data in files.values() for raw in data.splitlines(keepends=True))


async def wait_for(condition: Callable[[], bool], timeout: float = 1.5) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def until_kept(spool: Path, roots: list[Path], lines: list[bytes]) -> None:
    """Wait until every one of ``lines`` is in the spool or a store: no flush of them still in flight.

    The tests that are not about cancelling mid-flush let each flush finish before stopping, so
    what they check does not depend on when the cancel lands.
    """

    def kept() -> bool:
        found = spooled_bytes(spool)  # the spool first: a file leaves it only once it is in the store
        for root in roots:
            found += b"".join(shipped(root).values())
        return set(lines) <= set(found.splitlines(keepends=True))

    await wait_for(kept)


async def stop(task: asyncio.Task[None]) -> None:
    """Cancel DataCapture.run() the way the platform does, and wait for its last flush."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def ship_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "modelhost.capture" and "cannot ship" in r.getMessage()]


def spool_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "modelhost.capture" and "cannot write" in r.getMessage() and "record(s) to" in r.getMessage()
    ]


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def errors(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.ERROR, logger="modelhost.capture")
    return caplog


# -- capture_record: SageMaker's shape -------------------------------------------------------------------------


def test_a_record_has_sagemakers_shape() -> None:
    raw = capture_record(b'{"instances": [1, 2]}', "application/json", b"0.25,0.75", "text/csv", "req-42")
    record = orjson.loads(raw)

    assert set(record) == {"captureData", "eventMetadata", "eventVersion"}
    assert record["eventVersion"] == "0"
    assert record["captureData"] == {
        "endpointInput": {
            "observedContentType": "application/json",
            "mode": "INPUT",
            "data": '{"instances": [1, 2]}',
            "encoding": "JSON",
        },
        "endpointOutput": {
            "observedContentType": "text/csv",
            "mode": "OUTPUT",
            "data": "0.25,0.75",
            "encoding": "CSV",
        },
    }
    assert set(record["eventMetadata"]) == {"eventId", "inferenceTime", "inferenceId"}
    assert record["eventMetadata"]["inferenceId"] == "req-42"


def test_a_record_is_one_line_ending_in_a_newline_even_when_the_bodies_have_newlines() -> None:
    raw = capture_record(b"1,2\n3,4\n", "text/csv", b'{"a": 1}\n{"a": 2}\n', "application/jsonlines", None)

    assert raw.endswith(b"\n")
    assert raw.count(b"\n") == 1
    record = orjson.loads(raw)
    assert record["captureData"]["endpointInput"]["data"] == "1,2\n3,4\n"
    assert record["captureData"]["endpointInput"]["encoding"] == "CSV"
    assert record["captureData"]["endpointOutput"]["data"] == '{"a": 1}\n{"a": 2}\n'
    assert record["captureData"]["endpointOutput"]["encoding"] == "JSON"


@pytest.mark.parametrize(
    ("content_type", "encoding"),
    [
        ("application/json", "JSON"),
        ("application/json; charset=utf-8", "JSON"),
        ("Application/JSON", "JSON"),
        ("application/jsonlines", "JSON"),
        ("text/csv", "CSV"),
        ("text/csv; header=present", "CSV"),
        ("text/plain", "CSV"),
    ],
)
def test_text_bodies_are_kept_as_text(content_type: str, encoding: str) -> None:
    body = 'héllo,"wörld"\n1,2'.encode()
    record = orjson.loads(capture_record(body, content_type, body, content_type, None))

    for side in ("endpointInput", "endpointOutput"):
        assert record["captureData"][side]["data"] == body.decode("utf-8")
        assert record["captureData"][side]["encoding"] == encoding
        assert record["captureData"][side]["observedContentType"] == content_type  # as sent, not normalised


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"\x93NUMPY\x01\x00v\x00{'descr': '<f8'}\x00\xff\xfe", "application/x-npy"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "image/png"),
        (b"plain ascii but an unknown type", "application/octet-stream"),
        (b'{"bad utf-8": "\xff\xfe"}', "application/json"),  # says JSON, cannot be decoded: base64
        (b"1,2,\xc3", "text/csv"),  # a truncated multi-byte character
        (b"", "application/x-protobuf"),
    ],
)
def test_binary_or_undecodable_bodies_are_base64_and_round_trip(body: bytes, content_type: str) -> None:
    record = orjson.loads(capture_record(body, content_type, body, content_type, None))

    for side in ("endpointInput", "endpointOutput"):
        assert record["captureData"][side]["encoding"] == "BASE64"
        assert base64.b64decode(record["captureData"][side]["data"], validate=True) == body
        assert record["captureData"][side]["observedContentType"] == content_type


def test_input_and_output_are_encoded_independently() -> None:
    record = orjson.loads(capture_record(b"1,2", "text/csv", b"\x00\x01\x02", "application/x-npy", None))

    assert record["captureData"]["endpointInput"]["encoding"] == "CSV"
    assert record["captureData"]["endpointOutput"]["encoding"] == "BASE64"
    assert base64.b64decode(record["captureData"]["endpointOutput"]["data"]) == b"\x00\x01\x02"


def test_event_ids_are_unique() -> None:
    ids = [orjson.loads(line(n))["eventMetadata"]["eventId"] for n in range(2000)]

    assert len(set(ids)) == len(ids)


def test_inference_time_is_iso_8601_utc_with_a_z() -> None:
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    stamp = orjson.loads(capture_record(b"1", "text/csv", b"2", "text/csv", None))["eventMetadata"]["inferenceTime"]
    after = datetime.now(UTC) + timedelta(milliseconds=1)

    assert ISO_Z.match(stamp), stamp
    when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert when.tzinfo is not None
    assert before - timedelta(milliseconds=1) <= when <= after


@pytest.mark.parametrize("inference_id", [None, ""])
def test_the_inference_id_is_there_only_when_given(inference_id: str | None) -> None:
    metadata = orjson.loads(line(1, inference_id=inference_id))["eventMetadata"]

    assert "inferenceId" not in metadata
    assert set(metadata) == {"eventId", "inferenceTime"}


# -- sampled -------------------------------------------------------------------------------------------------


def test_sampled_100_is_always_and_0_is_never() -> None:
    assert all(DataCapture.sampled(100) for _ in range(10_000))
    assert not any(DataCapture.sampled(0) for _ in range(10_000))


def test_sampled_30_samples_about_30_percent() -> None:
    hits = sum(DataCapture.sampled(30) for _ in range(10_000))

    # mean 3000, standard deviation ~46: +-300 is more than six of them
    assert 2700 <= hits <= 3300


@pytest.mark.parametrize("percentage", [1, 50, 99])
def test_sampled_is_a_bool_and_never_raises(percentage: int) -> None:
    draws = [DataCapture.sampled(percentage) for _ in range(2000)]

    assert all(isinstance(d, bool) for d in draws)
    assert 0 < sum(draws) < 2000


# -- DataCapture end to end ------------------------------------------------------------------------------------


def test_the_final_flush_ships_every_record_to_its_endpoint_and_variant(store: LocalArtifactStore, spool: Path) -> None:
    capture = DataCapture(spool, lambda uri: store, flush_every_s=0.05, max_file_age_s=60, max_file_bytes=1 << 20)
    lines_a = [line(n, "ep-a") for n in range(5)]
    lines_b = [line(n, "ep-b") for n in range(3)]

    async def scenario() -> None:
        task = asyncio.create_task(capture.run())
        for raw in lines_a:
            capture.record(None, "ep-a", "variant-1", raw)
        for raw in lines_b:
            capture.record(None, "ep-b", "variant-2", raw)
        # on disk within a few flush intervals, not shipped yet (the files are young and small)
        await wait_for(lambda: len(spool_files(spool)) == 2)
        await wait_for(lambda: sorted(spooled_bytes(spool).splitlines(keepends=True)) == sorted(lines_a + lines_b))
        assert shipped(store.root) == {}
        assert not task.done()
        await stop(task)

    run(scenario)

    files = shipped(store.root)
    assert len(files) == 2
    by_endpoint: dict[tuple[str, str], bytes] = {}
    for key, data in files.items():
        match = TARGET.match(key)
        assert match, key
        assert (match["y"], match["m"], match["d"], match["h"]) == (match["sy"], match["sm"], match["sd"], match["sh"])
        when = datetime.strptime(match["stamp"], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
        assert abs(datetime.now(UTC) - when) < timedelta(minutes=5)
        by_endpoint[(match["endpoint"], match["variant"])] = data
    assert by_endpoint == {("ep-a", "variant-1"): b"".join(lines_a), ("ep-b", "variant-2"): b"".join(lines_b)}
    assert not any(p.name.endswith(".partial") for p in store.root.rglob("*"))

    assert list(spool.rglob("*")) == []  # no spool files, and no empty per-key folders
    assert capture.stats.captured == 8
    assert capture.stats.dropped == 0
    assert capture.stats.shipped_files == 2


def test_records_keep_their_order_within_a_file(store: LocalArtifactStore, spool: Path) -> None:
    capture = DataCapture(spool, lambda uri: store, flush_every_s=0.05, max_file_age_s=60)
    recorded = [line(n) for n in range(20)]

    async def scenario() -> None:
        task = asyncio.create_task(capture.run())
        for n, raw in enumerate(recorded):
            capture.record(None, "ep", "v", raw)
            if n % 5 == 4:
                await asyncio.sleep(0.06)  # spread over several flushes, appended to the same spool file
        await until_kept(spool, [store.root], recorded)
        await stop(task)

    run(scenario)

    assert list(shipped(store.root).values()) == [b"".join(recorded)]


def test_cancelling_before_the_first_flush_still_ships_what_was_recorded(
    store: LocalArtifactStore, spool: Path
) -> None:
    capture = DataCapture(spool, lambda uri: store, flush_every_s=30)

    async def scenario() -> None:
        task = asyncio.create_task(capture.run())
        capture.record(None, "ep", "v", line(1))
        await asyncio.sleep(0.05)
        await stop(task)

    run(scenario)

    assert list(shipped(store.root).values()) == [line(1)]
    assert spool_files(spool) == []


def test_rotation_by_size_ships_several_files_while_running(store: LocalArtifactStore, spool: Path) -> None:
    capture = DataCapture(spool, lambda uri: store, flush_every_s=0.05, max_file_age_s=60, max_file_bytes=1)
    recorded = [line(n) for n in range(3)]

    async def scenario() -> None:
        task = asyncio.create_task(capture.run())
        for n, raw in enumerate(recorded, start=1):
            capture.record(None, "ep", "v", raw)
            await wait_for(lambda n=n: len(shipped(store.root)) == n)  # past its size: shipped at the flush
        assert not task.done()
        await wait_for(lambda: spool_files(spool) == [])  # each removed once shipped
        await stop(task)

    run(scenario)

    files = shipped(store.root)
    assert len(files) == 3
    assert all(TARGET.match(key) for key in files)
    assert sorted(files.values()) == sorted(recorded)  # one flush's batch per file
    assert capture.stats.shipped_files == 3


def test_rotation_by_size_keeps_files_under_the_limit_together(store: LocalArtifactStore, spool: Path) -> None:
    size = len(line(0))
    capture = DataCapture(spool, lambda uri: store, flush_every_s=0.05, max_file_age_s=60, max_file_bytes=3 * size)
    recorded = [line(n) for n in range(6)]  # equal lengths: three a file

    async def scenario() -> None:
        task = asyncio.create_task(capture.run())
        for n, raw in enumerate(recorded, start=1):
            capture.record(None, "ep", "v", raw)
            await wait_for(
                lambda n=n: len(spooled_bytes(spool)) + sum(map(len, shipped(store.root).values())) >= n * size
            )
        await wait_for(lambda: len(shipped(store.root)) == 2)
        await wait_for(lambda: spool_files(spool) == [])
        await stop(task)

    run(scenario)

    assert sorted(shipped(store.root).values()) == sorted([b"".join(recorded[:3]), b"".join(recorded[3:])])


def test_rotation_by_age_ships_a_file_while_still_running(store: LocalArtifactStore, spool: Path) -> None:
    capture = DataCapture(spool, lambda uri: store, flush_every_s=0.05, max_file_age_s=0.5, max_file_bytes=1 << 20)

    async def scenario() -> None:
        task = asyncio.create_task(capture.run())
        capture.record(None, "ep", "v", line(1))
        await wait_for(lambda: len(spool_files(spool)) == 1)
        assert shipped(store.root) == {}  # young: not shipped on the flush that spooled it
        await wait_for(lambda: len(shipped(store.root)) == 1)
        assert not task.done()
        await wait_for(lambda: list(spool.iterdir()) == [])  # the file, and the per-key folder with it
        await stop(task)

    run(scenario)

    assert list(shipped(store.root).values()) == [line(1)]
    assert capture.stats.shipped_files == 1


def test_each_destination_is_resolved_with_none_for_the_platforms_store_and_the_uri_otherwise(
    tmp_path: Path, store: LocalArtifactStore, spool: Path
) -> None:
    other = LocalArtifactStore(tmp_path / "elsewhere")
    uri = "s3://customer-bucket/capture-here"
    asked: list[str | None] = []

    def destination(where: str | None) -> Any:
        asked.append(where)
        return store if where is None else other

    capture = DataCapture(spool, destination, flush_every_s=0.05)

    async def scenario() -> None:
        task = asyncio.create_task(capture.run())
        capture.record(None, "ep-platform", "v", line(1))
        capture.record(uri, "ep-custom", "v", line(2))
        capture.record("", "ep-empty", "v", line(3))  # an empty URI is the platform's store too
        await until_kept(spool, [store.root, other.root], [line(1), line(2), line(3)])
        await stop(task)

    run(scenario)

    assert set(asked) == {None, uri}
    assert "" not in asked
    platform_files, other_files = shipped(store.root), shipped(other.root)
    assert sorted(TARGET.match(k)["endpoint"] for k in platform_files) == ["ep-empty", "ep-platform"]  # type: ignore[index]
    assert [TARGET.match(k)["endpoint"] for k in other_files] == ["ep-custom"]  # type: ignore[index]
    assert list(other_files.values()) == [line(2)]


def test_same_endpoint_different_destinations_are_separate_files(
    tmp_path: Path, store: LocalArtifactStore, spool: Path
) -> None:
    other = LocalArtifactStore(tmp_path / "elsewhere")
    capture = DataCapture(spool, lambda where: store if where is None else other, flush_every_s=0.05)
    a, b = line(1), line(2)

    async def scenario() -> None:
        task = asyncio.create_task(capture.run())
        capture.record(None, "ep", "v", a)
        capture.record("file:///elsewhere", "ep", "v", b)
        await until_kept(spool, [store.root, other.root], [a, b])
        await stop(task)

    run(scenario)

    assert list(shipped(store.root).values()) == [a]
    assert list(shipped(other.root).values()) == [b]


# -- a destination that is down ----------------------------------------------------------------------------


def test_an_unreachable_store_loses_nothing_and_the_periodic_retry_ships_once_it_is_back(
    tmp_path: Path, spool: Path, errors: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(capture_module, "RETRY_S", 0.1)
    flaky = FlakyStore(tmp_path / "artifacts")
    capture = DataCapture(spool, lambda uri: flaky, flush_every_s=0.05, max_file_age_s=0.05)
    first, second = line(1), line(2)

    async def scenario() -> None:
        task = asyncio.create_task(capture.run())
        capture.record(None, "ep", "v", first)
        await wait_for(lambda: flaky.failures >= 3)  # rotated, failed, retried and failed again
        capture.record(None, "ep", "v", second)
        await wait_for(lambda: len(spool_files(spool)) == 2 and flaky.failures >= 6)

        assert shipped(flaky.root) == {}
        assert sorted(p.read_bytes() for p in spool_files(spool)) == sorted([first, second])  # nothing lost
        assert len(ship_errors(errors)) == 1  # once per kind per minute, however many failures
        assert capture.stats.shipped_files == 0

        flaky.failing = False
        await wait_for(lambda: len(shipped(flaky.root)) == 2)  # by the periodic retry, still running
        assert not task.done()
        await wait_for(lambda: spool_files(spool) == [])
        await stop(task)

    run(scenario)

    assert lines_of(shipped(flaky.root)) == sorted([first, second])
    assert all(TARGET.match(k) for k in shipped(flaky.root))
    assert list(spool.rglob("*")) == []
    assert len(ship_errors(errors)) == 1
    message = ship_errors(errors)[0].getMessage()
    assert "the artifact store" in message
    assert "store unreachable" in message
    assert "predictions are not affected" in message
    assert capture.stats.shipped_files == 2
    assert capture.stats.dropped == 0


def test_a_file_that_could_not_be_shipped_goes_at_the_final_flush(
    tmp_path: Path, spool: Path, errors: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(capture_module, "RETRY_S", 3600.0)
    flaky = FlakyStore(tmp_path / "artifacts")
    capture = DataCapture(spool, lambda uri: flaky, flush_every_s=0.05, max_file_age_s=0.05)

    async def scenario() -> None:
        task = asyncio.create_task(capture.run())
        capture.record(None, "ep", "v", line(1))
        await wait_for(lambda: flaky.failures >= 1)
        await asyncio.sleep(0.15)
        attempts = flaky.attempts
        flaky.failing = False
        await asyncio.sleep(0.2)
        assert flaky.attempts == attempts  # no retry before RETRY_S
        assert shipped(flaky.root) == {}
        assert len(spool_files(spool)) == 1
        await stop(task)

    run(scenario)

    assert list(shipped(flaky.root).values()) == [line(1)]
    assert spool_files(spool) == []
    assert len(ship_errors(errors)) == 1


def test_a_named_destination_that_is_down_names_it_in_the_log(
    tmp_path: Path, spool: Path, errors: pytest.LogCaptureFixture
) -> None:
    flaky = FlakyStore(tmp_path / "artifacts")
    capture = DataCapture(spool, lambda uri: flaky, flush_every_s=0.05)

    async def scenario() -> None:
        task = asyncio.create_task(capture.run())
        capture.record("s3://customer-bucket/cap", "ep", "v", line(1))
        await until_kept(spool, [], [line(1)])
        await stop(task)

    run(scenario)

    (record,) = ship_errors(errors)
    assert "s3://customer-bucket/cap" in record.getMessage()
    assert [p.read_bytes() for p in spool_files(spool)] == [line(1)]  # kept for the next run


def test_a_destination_resolver_that_raises_is_a_ship_error_not_a_crash(
    spool: Path, errors: pytest.LogCaptureFixture
) -> None:
    def destination(where: str | None) -> Any:
        raise ArtifactError(f"artifact store {where!r}: use a folder, file:// or s3://")

    capture = DataCapture(spool, destination, flush_every_s=0.05, max_file_age_s=0.05)

    async def scenario() -> None:
        task = asyncio.create_task(capture.run())
        capture.record("ftp://nope", "ep", "v", line(1))
        await wait_for(lambda: len(ship_errors(errors)) == 1)
        await until_kept(spool, [], [line(1)])
        assert not task.done()
        await stop(task)

    run(scenario)

    assert len(ship_errors(errors)) == 1
    assert [p.read_bytes() for p in spool_files(spool)] == [line(1)]


def test_errors_are_logged_once_per_kind_per_minute(
    tmp_path: Path, spool: Path, errors: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(capture_module, "RETRY_S", 0.05)
    flaky = FlakyStore(tmp_path / "artifacts")
    capture = DataCapture(spool, lambda uri: flaky, flush_every_s=0.05, max_file_age_s=0.05)
    # one key cannot be spooled: its per-key folder's path is taken by a regular file
    spool.mkdir()
    (spool / capture_module._encode_key(("", "ep-unspoolable", "v"))).write_bytes(b"in the way")

    async def scenario() -> None:
        task = asyncio.create_task(capture.run())
        for n in range(3):
            capture.record(None, "ep-unspoolable", "v", line(n))
            capture.record(None, "ep-unshippable", "v", line(n))
            await asyncio.sleep(0.07)
        await wait_for(lambda: capture.stats.dropped == 3 and flaky.failures >= 3)
        assert len(spool_errors(errors)) == 1
        assert len(ship_errors(errors)) == 1

        # a minute later the same kind of error is logged again
        capture.stats.errors["ship"] -= 61
        failures = flaky.failures
        await wait_for(lambda: flaky.failures > failures and len(ship_errors(errors)) == 2)
        assert len(spool_errors(errors)) == 1
        await stop(task)

    run(scenario)

    assert len(ship_errors(errors)) == 2
    assert len(spool_errors(errors)) == 1
    assert set(capture.stats.errors) == {"spool", "ship"}
    assert capture.stats.captured == 6
    assert capture.stats.dropped == 3
    kept = b"".join(p.read_bytes() for p in spool_files(spool) if p.suffix == ".jsonl")
    assert sorted(kept.splitlines(keepends=True)) == sorted(line(n) for n in range(3))  # not shipped, not lost


# -- leftovers of an earlier instance ----------------------------------------------------------------------


def test_spool_files_a_crash_left_behind_are_shipped_at_start(
    tmp_path: Path, store: LocalArtifactStore, spool: Path
) -> None:
    other = LocalArtifactStore(tmp_path / "elsewhere")
    uri = "s3://customer-bucket/cap"
    crashed = DataCapture(spool, lambda where: pytest.fail("the crashed instance never ships"), max_file_age_s=3600)
    crashed.record(None, "ep-a", "v1", line(1))
    crashed.record(None, "ep-a", "v1", line(2))
    crashed.record(uri, "ep-b", "v2", line(3))
    crashed._flush(crashed._pending, False)  # spooled; then the process died before shipping
    assert len(spool_files(spool)) == 2
    # things in the spool dir that are not per-key folders are left alone
    (spool / "README.txt").write_text("not a spool folder")
    (spool / "not-a-key").mkdir()
    (spool / "not-a-key" / "x.jsonl").write_bytes(b"{}\n")

    asked: list[str | None] = []

    def destination(where: str | None) -> Any:
        asked.append(where)
        return store if where is None else other

    restarted = DataCapture(spool, destination, flush_every_s=30)  # the loop itself would not ship for 30 s

    async def scenario() -> None:
        task = asyncio.create_task(restarted.run())
        await wait_for(lambda: len(shipped(store.root)) == 1 and len(shipped(other.root)) == 1)
        assert not task.done()
        await stop(task)

    run(scenario)

    assert list(shipped(store.root).values()) == [line(1) + line(2)]
    assert list(shipped(other.root).values()) == [line(3)]
    key_a, key_b = next(iter(shipped(store.root))), next(iter(shipped(other.root)))
    assert TARGET.match(key_a)["endpoint"] == "ep-a"  # type: ignore[index]
    assert TARGET.match(key_b)["variant"] == "v2"  # type: ignore[index]
    assert set(asked) == {None, uri}
    assert sorted(p.relative_to(spool).as_posix() for p in spool.rglob("*")) == [
        "README.txt",
        "not-a-key",
        "not-a-key/x.jsonl",
    ]
    assert restarted.stats.shipped_files == 2


def test_files_a_store_outage_kept_at_shutdown_are_shipped_by_the_next_instance(
    tmp_path: Path, spool: Path, errors: pytest.LogCaptureFixture
) -> None:
    flaky = FlakyStore(tmp_path / "artifacts")
    before = DataCapture(spool, lambda uri: flaky, flush_every_s=0.05, max_file_age_s=3600)

    async def first_life() -> None:
        task = asyncio.create_task(before.run())
        before.record(None, "ep", "v", line(1))
        before.record(None, "ep", "v", line(2))
        await until_kept(spool, [], [line(1), line(2)])
        await stop(task)  # the final flush cannot ship: the file stays

    run(first_life)
    assert flaky.failures >= 1
    assert shipped(flaky.root) == {}
    assert [p.read_bytes() for p in spool_files(spool)] == [line(1) + line(2)]
    assert len(ship_errors(errors)) == 1

    flaky.failing = False
    after = DataCapture(spool, lambda uri: flaky, flush_every_s=30)

    async def second_life() -> None:
        task = asyncio.create_task(after.run())
        await wait_for(lambda: len(shipped(flaky.root)) == 1)
        await stop(task)

    run(second_life)

    assert list(shipped(flaky.root).values()) == [line(1) + line(2)]
    assert list(spool.rglob("*")) == []


def test_leftovers_that_cannot_be_shipped_at_start_are_retried(
    tmp_path: Path, spool: Path, errors: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(capture_module, "RETRY_S", 0.1)
    crashed = DataCapture(spool, lambda where: pytest.fail("never ships"), max_file_age_s=3600)
    crashed.record(None, "ep", "v", line(1))
    crashed._flush(crashed._pending, False)

    flaky = FlakyStore(tmp_path / "artifacts")
    restarted = DataCapture(spool, lambda uri: flaky, flush_every_s=0.05)

    async def scenario() -> None:
        task = asyncio.create_task(restarted.run())
        await wait_for(lambda: flaky.failures >= 2)
        assert [p.read_bytes() for p in spool_files(spool)] == [line(1)]
        flaky.failing = False
        await wait_for(lambda: len(shipped(flaky.root)) == 1)
        assert not task.done()
        await stop(task)

    run(scenario)

    assert list(shipped(flaky.root).values()) == [line(1)]
    assert list(spool.rglob("*")) == []
    assert len(ship_errors(errors)) == 1


def test_a_missing_spool_dir_at_start_is_not_an_error(store: LocalArtifactStore, tmp_path: Path) -> None:
    spool = tmp_path / "not" / "yet" / "there"
    capture = DataCapture(spool, lambda uri: store, flush_every_s=0.05)

    async def scenario() -> None:
        task = asyncio.create_task(capture.run())
        await asyncio.sleep(0.06)
        assert not task.done()
        capture.record(None, "ep", "v", line(1))
        await stop(task)

    run(scenario)

    assert list(shipped(store.root).values()) == [line(1)]


def test_cancelled_while_a_flush_waits_for_a_thread_its_records_are_not_lost(
    store: LocalArtifactStore, spool: Path
) -> None:
    capture = DataCapture(spool, lambda uri: store, flush_every_s=0.1)
    recorded = line(1)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=1))  # a busy default executor
        task = asyncio.create_task(capture.run())
        await asyncio.sleep(0.03)  # leftovers checked (there are none)
        gate = threading.Event()
        busy = loop.run_in_executor(None, gate.wait, 5)  # another blocking job holds the only worker
        try:
            capture.record(None, "ep", "v", recorded)
            await wait_for(lambda: not capture._pending)  # run() took the record and queued its flush behind the job
            task.cancel()  # shutdown
            await asyncio.sleep(0.05)  # the cancellation reaches the queued job before the worker is free
        finally:
            gate.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await busy

    run(scenario)

    kept = b"".join(shipped(store.root).values()) + spooled_bytes(spool)
    assert recorded in kept.splitlines(keepends=True) or capture.stats.dropped == 1


def test_cancelled_while_leftovers_ship_the_records_captured_meanwhile_are_not_lost(
    tmp_path: Path, spool: Path
) -> None:
    crashed = DataCapture(spool, lambda where: pytest.fail("never ships"), max_file_age_s=3600)
    crashed.record(None, "ep", "v", line(1))
    crashed._flush(crashed._pending, False)

    slow = GatedStore(tmp_path / "artifacts")
    restarted = DataCapture(spool, lambda uri: slow, flush_every_s=0.05)
    fresh = line(2)

    async def scenario() -> None:
        task = asyncio.create_task(restarted.run())
        try:
            await wait_for(slow.entered.is_set)  # shipping the leftover, slowly
            restarted.record(None, "ep", "v", fresh)
            await asyncio.sleep(0.1)
            await stop(task)  # the platform shutting down
        finally:
            slow.gate.set()

    run(scenario)

    kept = b"".join(shipped(slow.root).values()) + spooled_bytes(spool)
    assert fresh in kept.splitlines(keepends=True)


def test_records_are_spooled_while_leftovers_are_still_shipping(tmp_path: Path, spool: Path) -> None:
    crashed = DataCapture(spool, lambda where: pytest.fail("never ships"), max_file_age_s=3600)
    crashed.record(None, "ep-old", "v", line(1))
    crashed._flush(crashed._pending, False)

    slow = GatedStore(tmp_path / "artifacts")
    restarted = DataCapture(spool, lambda uri: slow, flush_every_s=0.05)
    fresh = line(2)
    on_disk: list[bool] = []

    async def scenario() -> None:
        task = asyncio.create_task(restarted.run())
        try:
            await wait_for(slow.entered.is_set)
            restarted.record(None, "ep-new", "v", fresh)
            await asyncio.sleep(0.3)  # six flush intervals
            on_disk.append(fresh in spooled_bytes(spool).splitlines(keepends=True))
        finally:
            slow.gate.set()
        await stop(task)

    run(scenario)

    assert on_disk == [True]


# -- a spool that cannot be written ------------------------------------------------------------------------


def test_records_that_cannot_be_spooled_are_counted_as_dropped_and_logged_once(
    store: LocalArtifactStore, spool: Path, errors: pytest.LogCaptureFixture
) -> None:
    spool.write_bytes(b"a regular file where the spool dir should be")
    capture = DataCapture(spool, lambda uri: store, flush_every_s=0.05)

    async def scenario() -> None:
        task = asyncio.create_task(capture.run())
        for n in range(3):
            capture.record(None, "ep", "v", line(n))  # never raises
        await wait_for(lambda: capture.stats.dropped == 3)
        capture.record(None, "ep", "v", line(3))
        capture.record("s3://b/p", "ep-2", "v", line(4))
        await wait_for(lambda: capture.stats.dropped == 5)
        assert not task.done()
        await stop(task)

    run(scenario)

    assert capture.stats.captured == 5
    assert capture.stats.dropped == 5
    assert capture.stats.shipped_files == 0
    assert shipped(store.root) == {}
    assert spool.read_bytes() == b"a regular file where the spool dir should be"
    (record,) = spool_errors(errors)
    assert str(spool) in record.getMessage()
    assert "predictions are not affected" in record.getMessage()
    assert ship_errors(errors) == []


def test_record_never_raises_and_does_no_io(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.write_bytes(b"file")
    capture = DataCapture(spool, lambda where: pytest.fail("record() must not resolve stores"))

    for n in range(100):
        capture.record(None, f"ep-{n % 3}", "v", line(n))

    assert capture.stats.captured == 100
    assert capture.stats.dropped == 0
    assert spool.read_bytes() == b"file"


# -- max_pending -----------------------------------------------------------------------------------------------


def test_past_max_pending_record_sheds_instead_of_growing(store: LocalArtifactStore, spool: Path) -> None:
    capture = DataCapture(spool, lambda uri: store, flush_every_s=0.05, max_pending=3)
    capture.record(None, "ep-a", "v", line(1))
    capture.record(None, "ep-a", "v", line(2))
    capture.record("s3://b/p", "ep-b", "v", line(3))  # the cap counts every key's pending records
    for n in range(4, 10):
        capture.record(None, "ep-c", "v", line(n))

    assert capture.stats.captured == 3
    assert capture.stats.dropped == 6
    assert sum(len(lines) for lines in capture._pending.values()) == 3

    async def scenario() -> None:
        task = asyncio.create_task(capture.run())
        await wait_for(lambda: len(spool_files(spool)) == 2)  # flushed: room again
        capture.record(None, "ep-a", "v", line(10))
        await until_kept(spool, [store.root], [line(10)])
        await stop(task)

    run(scenario)

    assert capture.stats.captured == 4
    assert capture.stats.dropped == 6
    kept = lines_of(shipped(store.root))
    assert kept == sorted([line(1), line(2), line(3), line(10)])
