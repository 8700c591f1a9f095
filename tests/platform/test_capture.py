"""Data capture: invocations written as SageMaker capture records (JSON lines) to the artifact store.

One `modelhost up` serves the module's main traffic: endpoints whose configs capture 100 %, 0 %,
30 %, nothing (capture disabled) and 100 % to another folder (``destination_uri``). After the
traffic it is stopped cleanly (SIGTERM): the last flush ships what is left in the spool, and the
tests read the shipped files. Two more platforms: one with an S3 artifact store (the objects land
in the bucket), one killed with -9 and started again (the spool it left is shipped).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.platform.conftest import Platform, StartPlatform, platforms, poll
from tests.s3server import SeaweedS3

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

JSON = "application/json"
CSV = "text/csv"
SOME_REQUESTS = 300
SOME_PERCENT = 30
HOUR_PATH = r"(\d{4})/(\d{2})/(\d{2})/(\d{2})/[^/]+\.jsonl"

# (input data, input type, input encoding, output data, output type, output encoding, inference id)
Expected = tuple[str, str, str, str, str, str, str | None]


@dataclass
class Traffic:
    """What the module's traffic sent and got back, per endpoint."""

    platform: Platform
    elsewhere: Path
    started: datetime
    ended: datetime | None = None
    expected: dict[str, list[Expected]] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)
    spooled_in_s: float | None = None
    shipped_before_stop: list[Path] = field(default_factory=list)


# -- helpers --------------------------------------------------------------------------------------------
def make_endpoint(platform: Platform, name: str, model: str, capture: dict[str, Any], variant: str = "main") -> None:
    client = platform.client
    config = client.create_endpoint_config(
        f"{name}-config", [{"variant_name": variant, "model_name": model}], data_capture=capture
    )
    expected_capture = {"enabled": False, "sampling_percentage": 100, "destination_uri": None, **capture}
    assert config["data_capture"] == expected_capture
    client.create_endpoint(name, f"{name}-config")


def capture_files(root: Path, endpoint: str, variant: str = "main") -> list[Path]:
    """The shipped capture files of an endpoint's variant under ``root`` (checked: yyyy/mm/dd/hh/*.jsonl)."""
    found = []
    for path in sorted(root.rglob("*.jsonl")):
        relative = path.relative_to(root).as_posix()
        if f"/{endpoint}/{variant}/" not in f"/{relative}":
            continue
        assert re.fullmatch(rf"(?:.*/)?{re.escape(endpoint)}/{re.escape(variant)}/{HOUR_PATH}", relative), relative
        found.append(path)
    return found


def read_records(paths: list[Path]) -> list[dict[str, Any]]:
    records = []
    for path in paths:
        for line in path.read_bytes().splitlines():
            records.append(orjson.loads(line))
    return records


def spooled_lines(state_dir: Path) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in (state_dir / "capture-spool").rglob("*.jsonl"))


def check_shape(record: dict[str, Any]) -> Expected:
    """SageMaker's capture record, exactly; what it says, as an Expected tuple."""
    assert set(record) == {"captureData", "eventMetadata", "eventVersion"}, record
    assert record["eventVersion"] == "0"
    data = record["captureData"]
    assert set(data) == {"endpointInput", "endpointOutput"}, record
    for part, mode in (("endpointInput", "INPUT"), ("endpointOutput", "OUTPUT")):
        assert set(data[part]) == {"observedContentType", "mode", "data", "encoding"}, record
        assert data[part]["mode"] == mode
    metadata = record["eventMetadata"]
    assert set(metadata) <= {"eventId", "inferenceTime", "inferenceId"}, record
    uuid.UUID(metadata["eventId"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", metadata["inferenceTime"]), metadata
    given, answer = data["endpointInput"], data["endpointOutput"]
    return (
        given["data"],
        given["observedContentType"],
        given["encoding"],
        answer["data"],
        answer["observedContentType"],
        answer["encoding"],
        metadata.get("inferenceId"),
    )


def inference_time(record: dict[str, Any]) -> datetime:
    return datetime.strptime(record["eventMetadata"]["inferenceTime"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def check_hour_folders(paths: list[Path], started: datetime, ended: datetime) -> None:
    """Each file's yyyy/mm/dd/hh folder is an hour (UTC) of the traffic."""
    first = started.replace(minute=0, second=0, microsecond=0)
    for path in paths:
        year, month, day, hour = (int(part) for part in path.parts[-5:-1])
        folder = datetime(year, month, day, hour, tzinfo=UTC)
        assert first <= folder <= ended, (path, started, ended)


def post(http: httpx.Client, endpoint: str, body: bytes, content_type: str, **headers: str) -> httpx.Response:
    return http.post(
        f"/endpoints/{endpoint}/invocations", content=body, headers={"content-type": content_type, **headers}
    )


def captured_ok(
    traffic: Traffic, http: httpx.Client, endpoint: str, body: bytes, content_type: str, **headers: str
) -> httpx.Response:
    """An invocation that succeeds, recorded as what its capture record must say."""
    response = post(http, endpoint, body, content_type, **headers)
    assert response.status_code == 200, response.text
    kind = {JSON: "JSON", CSV: "CSV"}
    answer_type = response.headers["content-type"]
    traffic.expected.setdefault(endpoint, []).append(
        (
            body.decode(),
            content_type,
            kind[content_type],
            response.text,
            answer_type,
            kind[answer_type.split(";")[0].strip()],
            headers.get("x-amzn-sagemaker-inference-id"),
        )
    )
    traffic.sent[endpoint] = traffic.sent.get(endpoint, 0) + 1
    return response


# -- the module's platform and traffic ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory, sentiment_model: Path) -> Iterator[Traffic]:
    root = tmp_path_factory.mktemp("capture")
    elsewhere = root / "elsewhere"
    with platforms(root) as start:
        platform = start()
        client = platform.client
        stored = client.upload_artifact(sentiment_model, "sentiment")
        client.create_model("sentiment", stored["uri"], artifact_sha256=stored["sha256"])
        make_endpoint(platform, "full", "sentiment", {"enabled": True, "sampling_percentage": 100})
        make_endpoint(platform, "off", "sentiment", {"enabled": True, "sampling_percentage": 0})
        make_endpoint(platform, "some", "sentiment", {"enabled": True, "sampling_percentage": SOME_PERCENT})
        make_endpoint(platform, "disabled", "sentiment", {"enabled": False})
        make_endpoint(
            platform,
            "elsewhere",
            "sentiment",
            {"enabled": True, "sampling_percentage": 100, "destination_uri": elsewhere.as_uri()},
        )
        config = client.create_endpoint_config(
            "split-config",
            [
                {"variant_name": "a", "model_name": "sentiment", "weight": 1},
                {"variant_name": "b", "model_name": "sentiment", "weight": 1},
            ],
            data_capture={"enabled": True},
        )
        assert config["data_capture"] == {"enabled": True, "sampling_percentage": 100, "destination_uri": None}
        client.create_endpoint("split", "split-config")
        for name in ("full", "off", "some", "disabled", "elsewhere", "split"):
            platform.wait_in_service(name)

        result = Traffic(platform, elsewhere, datetime.now(UTC))
        with httpx.Client(base_url=platform.url, timeout=30) as http:
            # full: JSON and CSV bodies, an inference id, an answer in another type, and model errors
            for i in range(20):
                text = f"great amazing day {i}" if i % 2 else f"awful broken app {i}"
                captured_ok(result, http, "full", orjson.dumps([text]), JSON)
            for i in range(10):
                captured_ok(result, http, "full", f"wonderful happy day {i}\nterrible slow app {i}\n".encode(), CSV)
            captured_ok(result, http, "full", b'["love it"]', JSON, **{"x-amzn-sagemaker-inference-id": "inference-42"})
            captured_ok(result, http, "full", b'["hate it"]', JSON, **{"x-request-id": "not-an-inference-id"})
            as_csv = captured_ok(result, http, "full", b'["best coffee", "worst coffee"]', JSON, accept=CSV)
            assert as_csv.headers["content-type"].startswith(CSV)
            for _ in range(3):  # the model's errors are not captured
                malformed = post(http, "full", b'["great day"', JSON)
                assert malformed.status_code == 424, malformed.text
                assert malformed.headers["x-amzn-errortype"] == "ModelError"
                unsupported = post(http, "full", b"\x00\x01", "application/x-unknown")
                assert unsupported.status_code == 424, unsupported.text

            for i in range(50):
                assert post(http, "off", orjson.dumps([f"great day {i}"]), JSON).status_code == 200
            for i in range(20):
                assert post(http, "disabled", orjson.dumps([f"great day {i}"]), JSON).status_code == 200
            for i in range(SOME_REQUESTS):
                assert post(http, "some", orjson.dumps([f"great day {i}"]), JSON).status_code == 200
            for i in range(5):
                captured_ok(result, http, "elsewhere", orjson.dumps([f"great day {i}"]), JSON)
            for i in range(40):  # two variants: each one's records in its own folder
                body = orjson.dumps([f"split day {i}"])
                response = post(http, "split", body, JSON)
                assert response.status_code == 200, response.text
                variant = response.headers["x-amzn-invoked-production-variant"]
                result.expected.setdefault(f"split/{variant}", []).append(
                    (body.decode(), JSON, "JSON", response.text, response.headers["content-type"], "JSON", None)
                )

        # on local disk (the spool) within about half a second; nothing shipped before a rotation
        waited_from = datetime.now(UTC)
        total = sum(len(expected) for expected in result.expected.values())
        poll(lambda: spooled_lines(platform.state_dir) >= total, 3.0, "the records reach the spool")
        result.spooled_in_s = (datetime.now(UTC) - waited_from).total_seconds()
        result.shipped_before_stop = sorted((platform.state_dir / "artifacts" / "capture").rglob("*.jsonl"))
        result.shipped_before_stop += sorted(elsewhere.rglob("*.jsonl"))

        code = platform.stop()
        assert code == 0, platform.log()[-3000:]
        result.ended = datetime.now(UTC)
        yield result


def store_root(traffic: Traffic) -> Path:
    return traffic.platform.state_dir / "artifacts"


# -- the tests ------------------------------------------------------------------------------------------------
def test_every_successful_invocation_is_captured_in_sagemakers_shape(traffic: Traffic) -> None:
    assert traffic.ended is not None
    paths = capture_files(store_root(traffic), "full")
    assert paths, sorted(store_root(traffic).rglob("*"))
    for path in paths:
        assert path.relative_to(store_root(traffic)).parts[:3] == ("capture", "full", "main"), path
    check_hour_folders(paths, traffic.started, traffic.ended)
    records = read_records(paths)
    assert len(records) == traffic.sent["full"] == 33

    seen = sorted((check_shape(r) for r in records), key=repr)
    assert seen == sorted(traffic.expected["full"], key=repr)
    event_ids = [r["eventMetadata"]["eventId"] for r in records]
    assert len(set(event_ids)) == len(event_ids)
    for record in records:
        assert traffic.started - timedelta(seconds=1) <= inference_time(record) <= traffic.ended

    # the inference id is the one the caller gave, and only that header makes one
    tagged = [r for r in records if "inferenceId" in r["eventMetadata"]]
    assert [r["eventMetadata"]["inferenceId"] for r in tagged] == ["inference-42"]
    assert tagged[0]["captureData"]["endpointInput"]["data"] == '["love it"]'
    assert tagged[0]["captureData"]["endpointOutput"]["data"] == "[1]"

    # bodies kept as they were: CSV as CSV, JSON as JSON
    csv_records = [r for r in records if r["captureData"]["endpointInput"]["observedContentType"] == CSV]
    assert len(csv_records) == 10
    for record in csv_records:
        assert record["captureData"]["endpointInput"]["encoding"] == "CSV"
        assert record["captureData"]["endpointOutput"]["data"].split() == ["1", "0"]


def test_model_errors_are_not_captured(traffic: Traffic) -> None:
    records = read_records(capture_files(store_root(traffic), "full"))
    inputs = [r["captureData"]["endpointInput"]["data"] for r in records]
    assert '["great day"' not in inputs
    assert not any(r["captureData"]["endpointInput"]["observedContentType"] == "application/x-unknown" for r in records)
    assert all(r["captureData"]["endpointOutput"]["data"] for r in records)


def test_records_reach_the_spool_quickly_and_are_shipped_at_the_stop(traffic: Traffic) -> None:
    assert traffic.spooled_in_s is not None
    assert traffic.spooled_in_s < 2.0
    assert traffic.shipped_before_stop == []  # no file was due (8 MB or 60 s) before the stop
    leftovers = sorted((traffic.platform.state_dir / "capture-spool").rglob("*.jsonl"))
    assert leftovers == []  # the stop shipped everything


def test_sampling_zero_and_disabled_capture_nothing(traffic: Traffic) -> None:
    assert capture_files(store_root(traffic), "off") == []
    assert capture_files(store_root(traffic), "disabled") == []
    assert not (store_root(traffic) / "capture" / "off").exists()
    assert not (store_root(traffic) / "capture" / "disabled").exists()


def test_sampling_thirty_percent_captures_about_that_share(traffic: Traffic) -> None:
    records = read_records(capture_files(store_root(traffic), "some"))
    expected = SOME_REQUESTS * SOME_PERCENT / 100  # 90; the standard deviation is about 8
    assert expected - 45 <= len(records) <= expected + 45, len(records)
    inputs = [r["captureData"]["endpointInput"]["data"] for r in records]
    assert len(set(inputs)) == len(inputs)  # each sampled request once
    for record in records:
        check_shape(record)


def test_a_destination_uri_receives_the_files(traffic: Traffic) -> None:
    assert capture_files(store_root(traffic), "elsewhere") == []  # not in the platform's store
    paths = capture_files(traffic.elsewhere, "elsewhere")
    assert paths, sorted(traffic.elsewhere.rglob("*"))
    records = read_records(paths)
    assert sorted(map(check_shape, records), key=repr) == sorted(traffic.expected["elsewhere"], key=repr)
    assert not [p for p in traffic.elsewhere.rglob("*") if p.is_file() and p.suffix != ".jsonl"]  # no partials


def test_each_variant_has_its_own_folder(traffic: Traffic) -> None:
    assert set(traffic.expected) >= {"split/a", "split/b"}  # both variants served some
    for variant in ("a", "b"):
        paths = capture_files(store_root(traffic), "split", variant)
        for path in paths:
            assert path.relative_to(store_root(traffic)).parts[:3] == ("capture", "split", variant)
        records = read_records(paths)
        assert sorted(map(check_shape, records), key=repr) == sorted(traffic.expected[f"split/{variant}"], key=repr)


# -- restart safety ------------------------------------------------------------------------------------------
def test_a_spool_left_by_a_kill_is_shipped_at_the_next_start(
    start_platform: StartPlatform, sentiment_model: Path, tmp_path: Path
) -> None:
    """Also: a destination that cannot be written keeps its records in the spool until it can."""
    platform = start_platform()
    client = platform.client
    stored = client.upload_artifact(sentiment_model, "sentiment")
    client.create_model("sentiment", stored["uri"], artifact_sha256=stored["sha256"])
    make_endpoint(platform, "kept", "sentiment", {"enabled": True, "sampling_percentage": 100})
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the destination folder should be\n")
    make_endpoint(
        platform,
        "blocked",
        "sentiment",
        {"enabled": True, "sampling_percentage": 100, "destination_uri": blocked.as_uri()},
    )
    platform.wait_in_service("kept")
    platform.wait_in_service("blocked")
    capture_root = platform.state_dir / "artifacts"

    before = [f"great day {i}" for i in range(25)]
    to_blocked = [f"blocked day {i}" for i in range(4)]
    with httpx.Client(base_url=platform.url, timeout=30) as http:
        for text in before:
            assert post(http, "kept", orjson.dumps([text]), JSON).status_code == 200
        for text in to_blocked:
            assert post(http, "blocked", orjson.dumps([text]), JSON).status_code == 200
    total = len(before) + len(to_blocked)
    poll(lambda: spooled_lines(platform.state_dir) == total, 3.0, "the records reach the spool")
    assert capture_files(capture_root, "kept") == []

    platform.kill9()
    poll(lambda: platform.descendants() == [], 15, "the instances stop when up is killed")
    assert spooled_lines(platform.state_dir) == total

    # started again on the same state dir: the leftover spool is shipped at once, without a stop
    platform.start()
    poll(
        lambda: len(read_records(capture_files(capture_root, "kept"))) == len(before),
        10,
        "the leftover spool is shipped",
    )
    # the blocked destination's records stay in the spool (the error is logged, predictions go on)
    poll(lambda: spooled_lines(platform.state_dir) == len(to_blocked), 5, "only the unshippable records stay")
    poll(lambda: "cannot ship" in platform.log(), 5, "the shipping error is logged")
    platform.wait_in_service("kept")
    platform.wait_in_service("blocked")
    after = [f"awful day {i}" for i in range(5)]
    with httpx.Client(base_url=platform.url, timeout=30) as http:
        for text in after:
            assert post(http, "kept", orjson.dumps([text]), JSON).status_code == 200
        assert post(http, "blocked", b'["one more"]', JSON).status_code == 200

    # once the destination can be written, what was kept is shipped (at the latest at the stop)
    blocked.unlink()
    assert platform.stop() == 0

    records = read_records(capture_files(capture_root, "kept"))
    inputs = sorted(r["captureData"]["endpointInput"]["data"] for r in records)
    assert inputs == sorted(orjson.dumps([text]).decode() for text in before + after)
    assert len({r["eventMetadata"]["eventId"] for r in records}) == len(records)
    shipped = read_records(capture_files(blocked, "blocked"))
    assert sorted(r["captureData"]["endpointInput"]["data"] for r in shipped) == sorted(
        orjson.dumps([text]).decode() for text in [*to_blocked, "one more"]
    )
    assert spooled_lines(platform.state_dir) == 0


# -- an S3 artifact store ------------------------------------------------------------------------------------
def test_capture_objects_land_in_the_s3_bucket(
    start_platform: StartPlatform, s3: SeaweedS3, sentiment_model: Path
) -> None:
    bucket, prefix, other = "platform-artifacts", "team/store", "capture-elsewhere"
    s3.client().create_bucket(Bucket=bucket)
    s3.client().create_bucket(Bucket=other)
    credentials = {k: v for k, v in s3.env().items() if k != "MODELHOST_S3_ENDPOINT_URL"}
    platform = start_platform(
        "--artifacts", f"s3://{bucket}/{prefix}", "--s3-endpoint-url", s3.endpoint_url, env=credentials
    )
    client = platform.client
    stored = client.upload_artifact(sentiment_model, "sentiment")
    assert stored["uri"].startswith(f"s3://{bucket}/{prefix}/")
    client.create_model("sentiment", stored["uri"], artifact_sha256=stored["sha256"])
    destinations = {"cap": None, "cap-other": f"s3://{other}/captures"}
    for name, destination in destinations.items():
        capture = {"enabled": True, "sampling_percentage": 100, "destination_uri": destination}
        make_endpoint(platform, name, "sentiment", capture)
    for name in destinations:
        platform.wait_in_service(name)

    texts = {name: [f"{name} great day {i}" for i in range(12)] for name in destinations}
    with httpx.Client(base_url=platform.url, timeout=30) as http:
        for name, bodies in texts.items():
            for text in bodies:
                response = post(http, name, orjson.dumps([text]), JSON)
                assert response.status_code == 200, response.text
    assert platform.stop() == 0

    def objects(bucket_name: str, under: str) -> dict[str, bytes]:
        listed = s3.client().list_objects_v2(Bucket=bucket_name, Prefix=under)
        return {
            item["Key"]: s3.client().get_object(Bucket=bucket_name, Key=item["Key"])["Body"].read()
            for item in listed.get("Contents", [])
        }

    def check_bucket(bucket_name: str, root: str, name: str) -> None:
        found = objects(bucket_name, root)
        keys = [k for k in found if f"/{name}/" in f"/{k}"]
        assert keys, (bucket_name, sorted(found))
        for key in keys:
            assert re.fullmatch(rf"{re.escape(root)}(?:capture/)?{name}/main/{HOUR_PATH}", key), key
        records = [orjson.loads(line) for key in keys for line in found[key].splitlines()]
        assert sorted(r["captureData"]["endpointInput"]["data"] for r in records) == sorted(
            orjson.dumps([text]).decode() for text in texts[name]
        )
        for record in records:
            assert check_shape(record)[4].startswith(JSON)

    check_bucket(bucket, f"{prefix}/capture/", "cap")
    check_bucket(other, "captures/", "cap-other")
    # each endpoint's records went to its own destination only
    assert [k for k in objects(bucket, f"{prefix}/capture/") if "/cap-" in k] == []
    assert not (platform.state_dir / "artifacts").exists()
    assert spooled_lines(platform.state_dir) == 0
