"""Updates without downtime, rollback of a failed update, and an endpoint that cannot start.

A load generator sends requests through the front door all along; not one may fail.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest

from modelhost.client import ClientError
from tests.platform.conftest import Platform, poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

TEXTS = ["great amazing day", "awful broken app"]
NUMBERS = [1, 0]  # the sentiment model's answer
WORDS = ["positive", "negative"]  # the v2 model's answer
LOAD_ERROR = "could not unpickle model.joblib"


@dataclass
class Load:
    """Threads sending TEXTS to an endpoint until stopped; every answer or failure recorded."""

    url: str
    threads: int = 3
    answers: list[tuple[float, object]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    handed: int = 0  # answers from the worker a connection was handed to (request id "<pid>-h<n>")
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        for _ in range(self.threads):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._workers.append(thread)
        poll(lambda: len(self.answers) > 10 or self.failures, 30, "the load to get going")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._workers:
            thread.join(30)

    def _run(self) -> None:
        body = orjson.dumps(TEXTS)
        with httpx.Client(timeout=30) as http:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    response = http.post(self.url, content=body, headers={"content-type": "application/json"})
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code}: {response.text[:300]}")
                else:
                    self.answers.append((started, response.json()))
                    self.handed += "-h" in response.headers["x-amzn-requestid"]

    def since(self, moment: float) -> list[object]:
        return [answer for started, answer in list(self.answers) if started > moment]

    def count(self) -> int:
        return len(self.answers)


def test_update_under_load_then_a_failed_update_rolls_back(
    platform: Platform, sentiment_model: Path, sentiment_model_v2: Path, broken_model: Path
) -> None:
    client = platform.client
    platform.deploy(sentiment_model, "live")
    [v1_pid] = platform.instance_pids("live")

    # the new config: another model (answers in words), made through the SDK
    stored = client.upload_artifact(sentiment_model_v2, "words")
    client.create_model("words", stored["uri"], artifact_sha256=stored["sha256"])
    client.create_endpoint_config("live-words", [{"variant_name": "AllTraffic", "model_name": "words"}])

    with Load(f"{platform.url}/endpoints/live/invocations") as load:
        # 1. a good update: the new instances serve before the old one stops
        accepted = client.update_endpoint("live", "live-words")
        assert accepted["status"] == "Updating"
        platform.wait_in_service("live", config_name="live-words")
        updated_at = time.monotonic()
        poll(lambda: len(load.since(updated_at)) >= 20, 30, "answers after the update")
        assert load.failures == [], load.failures[:5]
        answers = [answer for _, answer in load.answers]
        assert NUMBERS in answers
        assert WORDS in answers
        assert all(answer == WORDS for answer in load.since(updated_at))  # only the new model once InService

        described = client.describe_endpoint("live")
        assert described["status"] == "InService"
        assert described["config_name"] == described["running_config_name"] == "live-words"
        assert described["failure_reason"] is None
        assert [v["model_name"] for v in described["variants"]] == ["words"]
        [v2_pid] = platform.instance_pids("live")
        assert v2_pid != v1_pid
        poll(lambda: v1_pid not in platform.descendants(), 10, "the old instance to stop")

        # 2. an update to an artifact that cannot load: rolled back, serving all along
        before = load.count()
        with pytest.raises(ClientError) as failed:
            client.deploy(broken_model, "live", timeout_s=90)
        assert failed.value.code == "UpdateFailed"
        assert LOAD_ERROR in failed.value.message
        described = client.describe_endpoint("live")
        assert described["status"] == "InService"
        assert described["config_name"] == described["running_config_name"] == "live-words"
        assert "rolled back" in described["failure_reason"]
        assert LOAD_ERROR in described["failure_reason"]
        assert platform.instance_pids("live") == [v2_pid]  # the same instance, untouched
        poll(lambda: load.count() > before + 20, 30, "answers after the rollback")
        assert load.failures == [], load.failures[:5]
        assert load.since(updated_at)[-1] == WORDS

        # 3. a good update after the failed one: InService on it, the failure reason cleared
        deployed = platform.deploy(sentiment_model, "live")
        assert deployed["config_name"] == "live-v3"  # live-v1: the first deploy; live-v2: the broken one
        assert deployed["failure_reason"] is None
        moved_at = time.monotonic()
        poll(lambda: len(load.since(moved_at)) >= 20, 30, "answers after the last update")
        assert all(answer == NUMBERS for answer in load.since(moved_at))

    assert load.failures == [], load.failures[:5]
    assert load.count() > 100
    assert load.handed > 0  # connection hand-off was in play: its connections moved across the updates
    # one instance left running: the last config's (master + its worker)
    [last_pid] = platform.instance_pids("live")
    poll(lambda: len(platform.descendants()) == 2, 10, "only the last instance left")
    assert last_pid in platform.descendants()


def test_create_with_a_broken_artifact_fails_with_the_load_error(
    platform: Platform, broken_model: Path, sentiment_model: Path
) -> None:
    client = platform.client
    with pytest.raises(ClientError) as failed:
        client.deploy(broken_model, "broken", timeout_s=90)
    assert failed.value.code == "EndpointFailed"

    described = client.describe_endpoint("broken")
    assert described["status"] == "Failed"
    assert described["running_config_name"] is None
    assert described["variants"] == []
    reason = described["failure_reason"]
    assert "broken/AllTraffic/0" in reason
    assert "exited with code 1 while starting" in reason
    assert LOAD_ERROR in reason  # the line from the instance's own log
    assert "the model failed to load" in reason
    assert LOAD_ERROR in client.logs("broken")
    assert platform.descendants() == []

    # invocations say it is Failed, and not to retry (a Failed endpoint does not come back by itself)
    response = httpx.post(f"{platform.url}/endpoints/broken/invocations", json=TEXTS)
    assert response.status_code == 400
    assert response.headers["x-amzn-errortype"] == "ValidationError"
    assert "Failed" in response.json()["Message"]
    assert "retry-after" not in response.headers

    # a good artifact deployed onto the Failed endpoint brings it into service
    deployed = platform.deploy(sentiment_model, "broken")
    assert deployed["status"] == "InService"
    assert deployed["failure_reason"] is None
    assert client.invoke("broken", TEXTS).json() == NUMBERS

    client.delete_endpoint("broken", with_deployed_resources=True)
    assert platform.descendants() == []
    assert client.list_models() == []


def test_an_artifact_whose_sha256_differs_from_the_recorded_one_is_refused(
    platform: Platform, sentiment_model: Path
) -> None:
    """ModelIn.artifact_sha256 is "checked by each instance when it loads the artifact"."""
    client = platform.client
    stored = client.upload_artifact(sentiment_model, "checked")
    client.create_model("checked", stored["uri"], artifact_sha256="0" * 64)
    client.create_endpoint_config("checked", [{"model_name": "checked"}])
    client.create_endpoint("checked", "checked")
    with pytest.raises(ClientError) as failed:
        client.wait_in_service("checked", 90)
    assert failed.value.code == "EndpointFailed"
    described = client.describe_endpoint("checked")
    assert described["status"] == "Failed"
    assert "SHA-256" in described["failure_reason"]
    assert stored["sha256"] in described["failure_reason"]


def test_the_config_an_update_moves_to_cannot_be_deleted_meanwhile(platform: Platform, sentiment_model: Path) -> None:
    """The target of an update in progress (like an endpoint's current config) is needed to bring
    the endpoint back after a restart: deleting it is refused, and the update completes."""
    client = platform.client
    platform.deploy(sentiment_model, "moving")
    client.create_endpoint_config("moving-next", [{"model_name": "moving-v1"}])
    client.update_endpoint("moving", "moving-next")
    poll(lambda: platform.log().count("instance moving/AllTraffic/0: started pid") == 2, 30, "the new instance")
    with pytest.raises(ClientError) as refused:
        client.delete_endpoint_config("moving-next")
    assert refused.value.status == 409
    described = client.wait_in_service("moving", 60, config_name="moving-next")
    assert client.invoke("moving", TEXTS).json() == NUMBERS
    with pytest.raises(ClientError):  # now the endpoint's own config: still in use
        client.delete_endpoint_config("moving-next")
    assert described["running_config_name"] == "moving-next"
