"""Multi-model endpoints: one variant serving every archive under a prefix, each loaded on its first request.

One `modelhost up` for the module; each test makes its own MultiModel model, config and endpoint
over the same prefix folder:

    a.tar.gz       the sentiment model (answers 1 / 0)
    b.tar.gz       the same task answered with words ("positive" / "negative")
    sub/c.tar.gz   the sentiment model behind an inference.py that answers {"model": "c", ...}
    broken.tar.gz  a model.joblib that is not a pickle (fails to load)

The model's environment sets MODELHOST_MME_MAX_MODELS=2, so a third target unloads the least
recently used one.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
import shutil
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from modelhost.artifacts.pack import pack
from modelhost.client import ClientError
from tests.platform.conftest import Platform, platforms, poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TEXTS = ["great amazing day", "awful broken app"]
ANSWERS: dict[str, Any] = {
    "a.tar.gz": [1, 0],
    "b.tar.gz": ["positive", "negative"],
    "sub/c.tar.gz": {"model": "c", "labels": [1, 0]},
}
JSON = {"content-type": "application/json"}
TARGET_HEADER = "x-amzn-sagemaker-target-model"

C_INFERENCE_PY = """
import json
import os

import joblib


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def transform_fn(model, input_data, content_type, accept):
    texts = json.loads(input_data)
    return json.dumps({"model": "c", "labels": [int(y) for y in model.predict(texts)]}), "application/json"
"""


# -- fixtures -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def prefix(
    tmp_path_factory: pytest.TempPathFactory, sentiment_model: Path, sentiment_model_v2: Path, broken_model: Path
) -> Path:
    """The multi-model prefix folder with its archives."""
    root = tmp_path_factory.mktemp("mme-prefix")
    pack(sentiment_model, root / "a.tar.gz")
    pack(sentiment_model_v2, root / "b.tar.gz")
    c_model = tmp_path_factory.mktemp("mme-c")
    shutil.copy(sentiment_model / "model.joblib", c_model / "model.joblib")
    (c_model / "inference.py").write_text(C_INFERENCE_PY)
    (root / "sub").mkdir()
    pack(c_model, root / "sub" / "c.tar.gz")
    pack(broken_model, root / "broken.tar.gz")
    return root


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with platforms(tmp_path_factory.mktemp("mme")) as start:
        yield start()


@pytest.fixture(scope="module")
def http(served: Platform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=60) as client:
        yield client


_numbers = itertools.count(1)


@pytest.fixture
def endpoint(served: Platform, prefix: Path) -> Iterator[str]:
    """A fresh multi-model endpoint over ``prefix`` (nothing loaded yet); deleted afterwards."""
    name = f"mme-{next(_numbers)}"
    client = served.client
    model = client.create_model(
        f"{name}-model",
        prefix.as_uri() + "/",
        mode="MultiModel",
        environment={"MODELHOST_MME_MAX_MODELS": "2"},
    )
    assert model["mode"] == "MultiModel"
    client.create_endpoint_config(f"{name}-config", [{"variant_name": "AllTraffic", "model_name": f"{name}-model"}])
    client.create_endpoint(name, f"{name}-config")
    try:
        described = client.wait_in_service(name, 60)
    except ClientError as exc:
        raise AssertionError(f"{name}: {exc.message}\n{served.diagnostics(name)}") from exc
    # a multi-model variant starts nothing until a request names a model
    assert [v["instances"] for v in described["variants"]] == [[]]
    yield name
    if any(e["name"] == name for e in client.list_endpoints()):
        client.delete_endpoint(name)
    client.delete_endpoint_config(f"{name}-config")
    client.delete_model(f"{name}-model")


# -- helpers --------------------------------------------------------------------------------------------
def invoke(http: httpx.Client, endpoint: str, target: str | None, body: Any = TEXTS) -> httpx.Response:
    headers = dict(JSON)
    if target is not None:
        headers[TARGET_HEADER] = target
    return http.post(f"/endpoints/{endpoint}/invocations", content=orjson.dumps(body), headers=headers)


def loaded(platform: Platform, endpoint: str) -> dict[str, dict[str, Any]]:
    """target model -> its instance, as describe shows them."""
    described = platform.client.describe_endpoint(endpoint)
    found: dict[str, dict[str, Any]] = {}
    for variant in described["variants"]:
        for instance in variant["instances"]:
            assert instance["target_model"] is not None, instance
            assert instance["target_model"] not in found, described
            found[instance["target_model"]] = instance
    return found


def loading_lines(platform: Platform, endpoint: str, target: str) -> int:
    pattern = rf"multi-model {re.escape(endpoint)}/\S+: loading {re.escape(target)}$"
    return len(re.findall(pattern, platform.log(), flags=re.MULTILINE))


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return b") Z " not in stat and b") X " not in stat


def parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return int(stat[stat.rfind(b")") + 2 :].split()[1])


def all_gone(pids: list[int]) -> bool:
    return not any(alive(pid) for pid in pids)


def assert_answers(response: httpx.Response, target: str, platform: Platform, endpoint: str) -> None:
    assert response.status_code == 200, f"{target}: {response.status_code} {response.text}\n" + platform.diagnostics(
        endpoint
    )
    assert response.json() == ANSWERS[target], target
    assert response.headers["x-amzn-invoked-production-variant"] == "AllTraffic"


# -- tests ------------------------------------------------------------------------------------------------
def test_a_request_must_name_its_target_model(served: Platform, http: httpx.Client, endpoint: str) -> None:
    response = invoke(http, endpoint, None)
    assert response.status_code == 400, response.text
    assert response.headers["x-amzn-errortype"] == "ValidationError"
    body = response.json()
    assert body["error"] == "ValidationError"
    assert "X-Amzn-SageMaker-Target-Model" in body["Message"]
    assert endpoint in body["Message"]

    empty = invoke(http, endpoint, "")
    assert empty.status_code == 400, empty.text
    assert empty.headers["x-amzn-errortype"] == "ValidationError"
    assert loaded(served, endpoint) == {}
    assert served.descendants() == []


def test_each_target_answers_with_its_own_model(served: Platform, http: httpx.Client, endpoint: str) -> None:
    # two models side by side (the endpoint's limit); the third, below, takes the place of one
    for target in ("a.tar.gz", "b.tar.gz"):
        assert_answers(invoke(http, endpoint, target), target, served, endpoint)
    models = loaded(served, endpoint)
    assert set(models) == {"a.tar.gz", "b.tar.gz"}
    for instance in models.values():
        assert instance["state"] == "Healthy"
        assert instance["pid"]
        assert alive(instance["pid"])
        assert instance["port"]
    assert models["a.tar.gz"]["pid"] != models["b.tar.gz"]["pid"]
    assert models["a.tar.gz"]["port"] != models["b.tar.gz"]["port"]

    # later requests go straight to the loaded servers: nothing loads again
    for _ in range(10):
        for target in ("a.tar.gz", "b.tar.gz"):
            assert_answers(invoke(http, endpoint, target), target, served, endpoint)
    assert loaded(served, endpoint) == models
    assert loading_lines(served, endpoint, "a.tar.gz") == 1
    assert loading_lines(served, endpoint, "b.tar.gz") == 1

    # a model in a sub-folder of the prefix, through the SDK
    answer = served.client.invoke(endpoint, TEXTS, target_model="sub/c.tar.gz")
    assert answer.json() == ANSWERS["sub/c.tar.gz"]
    assert answer.variant == "AllTraffic"
    assert "sub/c.tar.gz" in loaded(served, endpoint)

    # and through the CLI
    for target in ("b.tar.gz", "sub/c.tar.gz"):
        printed = served.cli("invoke", endpoint, "--data", json.dumps(TEXTS), "--target-model", target)
        assert json.loads(printed.stdout) == ANSWERS[target]
    refused = served.cli("invoke", endpoint, "--data", json.dumps(TEXTS), check=False)
    assert refused.returncode == 1
    assert "X-Amzn-SageMaker-Target-Model" in refused.stderr


def test_least_recently_used_model_is_unloaded(served: Platform, http: httpx.Client, endpoint: str) -> None:
    for target in ("a.tar.gz", "b.tar.gz", "a.tar.gz"):
        assert_answers(invoke(http, endpoint, target), target, served, endpoint)
    before = loaded(served, endpoint)
    assert set(before) == {"a.tar.gz", "b.tar.gz"}
    b_pid = before["b.tar.gz"]["pid"]

    # a third model: b (used before the last a) is the least recently used, and goes
    assert_answers(invoke(http, endpoint, "sub/c.tar.gz"), "sub/c.tar.gz", served, endpoint)
    after = loaded(served, endpoint)
    assert set(after) == {"a.tar.gz", "sub/c.tar.gz"}
    assert after["a.tar.gz"]["pid"] == before["a.tar.gz"]["pid"]  # a kept its server
    poll(lambda: not alive(b_pid), 10, "the unloaded model's server exits")
    assert re.search(rf"multi-model {endpoint}/\S+: unloading b\.tar\.gz", served.log())
    run_dirs = list((served.state_dir / "run" / endpoint).glob("*/*b.tar.gz"))
    assert run_dirs == [], run_dirs  # its extracted files went with it
    live = set(served.descendants())
    assert {i["pid"] for i in after.values()} <= live
    assert b_pid not in live

    # b again: loaded anew (a, now the least recently used, goes)
    assert_answers(invoke(http, endpoint, "b.tar.gz"), "b.tar.gz", served, endpoint)
    again = loaded(served, endpoint)
    assert set(again) == {"sub/c.tar.gz", "b.tar.gz"}
    assert again["b.tar.gz"]["pid"] != b_pid
    assert loading_lines(served, endpoint, "b.tar.gz") == 2
    poll(lambda: not alive(after["a.tar.gz"]["pid"]), 10, "a's server exits once a is unloaded")
    for target in ("b.tar.gz", "sub/c.tar.gz"):
        assert_answers(invoke(http, endpoint, target), target, served, endpoint)


def test_a_target_that_cannot_load_is_a_400_with_the_load_error(
    served: Platform, http: httpx.Client, endpoint: str
) -> None:
    missing = invoke(http, endpoint, "nope.tar.gz")
    assert missing.status_code == 400, missing.text
    assert missing.headers["x-amzn-errortype"] == "ValidationError"
    message = missing.json()["Message"]
    assert "'nope.tar.gz' could not be loaded" in message
    assert "no model at" in message  # the model server's own load error
    assert "nope.tar.gz" in message

    broken = invoke(http, endpoint, "broken.tar.gz")
    assert broken.status_code == 400, broken.text
    assert broken.headers["x-amzn-errortype"] == "ValidationError"
    message = broken.json()["Message"]
    assert "'broken.tar.gz' could not be loaded" in message
    assert "exited with code" in message
    assert "model.joblib" in message or "pickle" in message.lower() or "load" in message.lower(), message

    # nothing of them is kept running; a real model still loads and serves beside them
    assert loaded(served, endpoint) == {}
    assert served.descendants() == []
    assert_answers(invoke(http, endpoint, "a.tar.gz"), "a.tar.gz", served, endpoint)
    assert set(loaded(served, endpoint)) == {"a.tar.gz"}

    # a missing target starts no server and leaves no log file, however often it is asked for
    for _ in range(5):
        assert invoke(http, endpoint, "nope.tar.gz").status_code == 400
    assert loading_lines(served, endpoint, "nope.tar.gz") == 0
    assert not list((served.state_dir / "logs" / endpoint).glob("*nope*"))
    # a failed load is not remembered as loaded: asked again, it is tried again (and fails again)
    assert invoke(http, endpoint, "broken.tar.gz").status_code == 400
    assert loading_lines(served, endpoint, "broken.tar.gz") == 2


@pytest.mark.parametrize(
    "target",
    [
        "../x",
        "../a.tar.gz",
        "sub/../../a.tar.gz",
        "sub/../a.tar.gz",
        "./a.tar.gz",
        "sub//c.tar.gz",
        "/etc/passwd",
        str(Path(__file__).resolve()),
        "file:///etc/passwd",
        "s3://bucket/model.tar.gz",
        "a.tar.gz\\..\\..\\x",
        "x" * 1025,
    ],
)
def test_target_names_outside_the_prefix_are_refused(
    served: Platform, http: httpx.Client, endpoint: str, target: str
) -> None:
    response = invoke(http, endpoint, target)
    assert response.status_code == 400, response.text
    assert response.headers["x-amzn-errortype"] == "ValidationError"
    assert "relative path under the endpoint's prefix" in response.json()["Message"]
    assert loaded(served, endpoint) == {}
    assert f"loading {target}" not in served.log()


def test_concurrent_first_requests_load_the_model_once(served: Platform, endpoint: str) -> None:
    threads = 10
    barrier = threading.Barrier(threads)

    def ask(_: int) -> tuple[int, Any]:
        with httpx.Client(base_url=served.url, timeout=60) as client:
            barrier.wait()
            response = invoke(client, endpoint, "b.tar.gz")
            return response.status_code, response.json()

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(ask, range(threads)))
    assert results == [(200, ANSWERS["b.tar.gz"])] * threads, results
    assert loading_lines(served, endpoint, "b.tar.gz") == 1
    models = loaded(served, endpoint)
    assert list(models) == ["b.tar.gz"]
    assert len(served.descendants()) >= 1
    # one server (master and worker) for it: every process of the platform is this one's
    pid = models["b.tar.gz"]["pid"]
    others = [p for p in served.descendants() if p != pid and parent(p) != pid]
    assert others == [], others


def test_a_killed_model_server_is_loaded_again_by_the_next_request(
    served: Platform, http: httpx.Client, endpoint: str
) -> None:
    assert_answers(invoke(http, endpoint, "a.tar.gz"), "a.tar.gz", served, endpoint)
    assert_answers(invoke(http, endpoint, "b.tar.gz"), "b.tar.gz", served, endpoint)
    first = loaded(served, endpoint)["a.tar.gz"]["pid"]

    # a request right after the kill (before the platform may have noticed) is answered still
    # (by the killed master's worker, until it notices its master is gone, or by a new server)
    os.kill(first, signal.SIGKILL)
    assert_answers(invoke(http, endpoint, "a.tar.gz"), "a.tar.gz", served, endpoint)
    poll(
        lambda: loaded(served, endpoint).get("a.tar.gz", {}).get("pid") != first,
        10,
        "the killed model's server is forgotten",
    )
    assert_answers(invoke(http, endpoint, "a.tar.gz"), "a.tar.gz", served, endpoint)
    models = loaded(served, endpoint)
    assert set(models) == {"a.tar.gz", "b.tar.gz"}
    second = models["a.tar.gz"]["pid"]
    assert second != first
    assert alive(second)
    assert models["a.tar.gz"]["state"] == "Healthy"
    assert loading_lines(served, endpoint, "a.tar.gz") == 2
    servers = {i["pid"] for i in models.values()}
    poll(
        lambda: all(p in servers or parent(p) in servers for p in served.descendants()),
        10,
        "nothing of the killed server is left (its worker included)",
    )

    # killed again, with time for the platform to notice: it is forgotten, then loaded on demand
    os.kill(second, signal.SIGKILL)
    poll(lambda: "a.tar.gz" not in loaded(served, endpoint), 10, "the killed model is forgotten")
    assert_answers(invoke(http, endpoint, "a.tar.gz"), "a.tar.gz", served, endpoint)
    third = loaded(served, endpoint)["a.tar.gz"]["pid"]
    assert third not in (first, second)
    for _ in range(5):
        assert_answers(invoke(http, endpoint, "a.tar.gz"), "a.tar.gz", served, endpoint)
    assert loaded(served, endpoint)["a.tar.gz"]["pid"] == third
    assert_answers(invoke(http, endpoint, "b.tar.gz"), "b.tar.gz", served, endpoint)  # b untouched


def test_the_request_right_after_a_server_group_is_killed_reloads_it(
    served: Platform, http: httpx.Client, endpoint: str
) -> None:
    """The whole server (master and worker, as an OOM kill or a crash takes them) dies between requests."""
    assert_answers(invoke(http, endpoint, "a.tar.gz"), "a.tar.gz", served, endpoint)
    seen = []
    for _ in range(3):
        pid = loaded(served, endpoint)["a.tar.gz"]["pid"]
        seen.append(pid)
        group = [pid, *(p for p in served.descendants() if parent(p) == pid)]
        os.killpg(pid, signal.SIGKILL)
        poll(functools.partial(all_gone, group), 5, "the killed server is gone", every_s=0.001)

        # the next request: the platform finds the server gone and loads the model again
        assert_answers(invoke(http, endpoint, "a.tar.gz"), "a.tar.gz", served, endpoint)
        assert loaded(served, endpoint)["a.tar.gz"]["pid"] not in seen
    for _ in range(5):
        assert_answers(invoke(http, endpoint, "a.tar.gz"), "a.tar.gz", served, endpoint)


def test_a_memory_limit_unloads_models_too(served: Platform, http: httpx.Client, prefix: Path) -> None:
    """MODELHOST_MME_MAX_MEMORY_MB: past it the least recently used model goes (the last one always stays)."""
    client = served.client
    client.create_model(
        "mme-memory-model", prefix.as_uri(), mode="MultiModel", environment={"MODELHOST_MME_MAX_MEMORY_MB": "1"}
    )
    client.create_endpoint_config("mme-memory-config", [{"model_name": "mme-memory-model"}])
    client.create_endpoint("mme-memory", "mme-memory-config")
    client.wait_in_service("mme-memory", 60)
    try:
        for target in ("a.tar.gz", "b.tar.gz", "sub/c.tar.gz", "a.tar.gz"):
            assert_answers(invoke(http, "mme-memory", target), target, served, "mme-memory")
            assert list(loaded(served, "mme-memory")) == [target]
    finally:
        client.delete_endpoint("mme-memory")
        client.delete_endpoint_config("mme-memory-config")
        client.delete_model("mme-memory-model")
    assert served.descendants() == []


def test_an_update_away_from_a_multi_model_config_stops_its_models(
    served: Platform, http: httpx.Client, endpoint: str, sentiment_model_v2: Path
) -> None:
    for target in ("a.tar.gz", "b.tar.gz"):
        assert_answers(invoke(http, endpoint, target), target, served, endpoint)
    pids = [i["pid"] for i in loaded(served, endpoint).values()]
    run = served.state_dir / "run" / endpoint
    old_generations = sorted(p.name for p in run.iterdir())

    client = served.client
    stored = client.upload_artifact(sentiment_model_v2, f"{endpoint}-single")
    client.create_model(f"{endpoint}-single", stored["uri"], artifact_sha256=stored["sha256"])
    client.create_endpoint_config(f"{endpoint}-single", [{"model_name": f"{endpoint}-single"}])
    try:
        client.update_endpoint(endpoint, f"{endpoint}-single", wait=True, timeout_s=60)
        served.wait_in_service(endpoint)
        answer = invoke(http, endpoint, None)  # a single model: no target needed
        assert answer.status_code == 200, answer.text
        assert answer.json() == ["positive", "negative"]
        assert not any(alive(pid) for pid in pids)
        single = set(served.instance_pids(endpoint))
        assert [p for p in served.descendants() if p not in single and parent(p) not in single] == []
        # the multi-model deployment's folders went with it
        assert not [name for name in old_generations if (run / name).exists()], sorted(run.rglob("*"))
    finally:
        client.delete_endpoint(endpoint)
        client.delete_endpoint_config(f"{endpoint}-single")
        client.delete_model(f"{endpoint}-single")


def test_deleting_the_endpoint_while_a_model_loads(served: Platform, endpoint: str) -> None:
    outcome: dict[str, httpx.Response] = {}

    def ask() -> None:
        with httpx.Client(base_url=served.url, timeout=60) as client:
            outcome["response"] = invoke(client, endpoint, "b.tar.gz")

    asking = threading.Thread(target=ask)
    asking.start()
    poll(lambda: loading_lines(served, endpoint, "b.tar.gz") == 1, 10, "the load starts")
    served.client.delete_endpoint(endpoint)
    asking.join(60)
    response = outcome["response"]
    assert response.status_code in (400, 503), response.text  # refused, not left hanging
    assert response.headers["x-amzn-errortype"] in ("ValidationError", "ServiceUnavailable")
    poll(lambda: served.descendants() == [], 10, "nothing of the endpoint left running")
    assert not (served.state_dir / "run" / endpoint).exists()
    assert not (served.state_dir / "logs" / endpoint).exists()


def test_deleting_the_endpoint_leaves_no_process_and_no_files(
    served: Platform, http: httpx.Client, endpoint: str
) -> None:
    for target in ("a.tar.gz", "sub/c.tar.gz"):
        assert_answers(invoke(http, endpoint, target), target, served, endpoint)
    pids = [i["pid"] for i in loaded(served, endpoint).values()]
    assert len(pids) == 2
    assert (served.state_dir / "run" / endpoint).is_dir()
    assert (served.state_dir / "logs" / endpoint).is_dir()

    served.client.delete_endpoint(endpoint)
    assert served.descendants() == []
    assert not any(alive(pid) for pid in pids)
    assert not (served.state_dir / "run" / endpoint).exists()
    assert not (served.state_dir / "logs" / endpoint).exists()
    gone = invoke(http, endpoint, "a.tar.gz")
    assert gone.status_code == 400
    assert gone.headers["x-amzn-errortype"] == "ValidationError"


def test_after_a_restart_the_models_load_on_demand_again(served: Platform, endpoint: str) -> None:
    """Last in the module: it restarts `up`."""
    with httpx.Client(base_url=served.url, timeout=60) as client:
        for target in ("a.tar.gz", "b.tar.gz"):
            assert_answers(invoke(client, endpoint, target), target, served, endpoint)
    served.restart()
    described = served.client.wait_in_service(endpoint, 60)
    assert [v["instances"] for v in described["variants"]] == [[]]  # nothing loaded until asked
    assert served.descendants() == []
    with httpx.Client(base_url=served.url, timeout=60) as client:
        for target in ("b.tar.gz", "sub/c.tar.gz"):
            assert_answers(invoke(client, endpoint, target), target, served, endpoint)
        assert set(loaded(served, endpoint)) == {"b.tar.gz", "sub/c.tar.gz"}
        missing = invoke(client, endpoint, None)
        assert missing.status_code == 400
