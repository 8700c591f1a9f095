"""examples/chain.py, the seeds' whole AWS chain, run as a user runs it against a real `modelhost up`.

It trains the churn model (XGBoost + fitted transformers) and the NER model, deploys three
endpoints, the churn function (the seed's Lambda code) and three routes, calls them over HTTP,
checks the function's 0.39 threshold against the endpoint's raw scores, runs again (which updates
what it made), then ``--clean`` removes all of it.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from tests.platform.conftest import Platform

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "chain.py"
FUNCTION = EXAMPLE.parent / "churn" / "function" / "app.py"
THRESHOLD = 0.39  # the seed's, which the example gives its function as $THRESHOLD


def run_example(platform: Platform, build: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**platform.env, "MODELHOST_URL": platform.url, "EXAMPLES_BUILD_DIR": str(build)}
    env.pop("MODELHOST_TOKEN", None)
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args], env=env, capture_output=True, text=True, timeout=240, check=False
    )


def churn_function(build: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The example's function code itself (its process_data), loaded with the artifact the example trained."""
    monkeypatch.setenv("ENDPOINT_NAME", "churn")
    monkeypatch.setenv("MODELHOST_FUNCTION_ARTIFACTS_DIR", str(build / "churn"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    spec = importlib.util.spec_from_file_location("chain_churn_function", FUNCTION)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def customers() -> list[dict[str, str]]:
    """Customers from calm to very likely to churn: the drivers the model learned, on a grid."""
    template = json.loads((EXAMPLE.parent / "churn" / "request.json").read_text())  # the columns' order
    grid = itertools.product(range(7), [x / 2 for x in range(0, 33)], ["no", "yes"])
    return [
        {**template, "CustServ Calls": str(calls), "Day Mins": str(minutes), "Int'l Plan": plan}
        for calls, minutes, plan in grid
    ]


def assert_the_threshold_is_the_seeds(platform: Platform, build: Path, key: str) -> None:
    """The function answers "True" exactly when the endpoint's raw score is over 0.39: rows on both sides,
    the nearest ones to the threshold included, scored once by the endpoint directly and once through the route."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        function = churn_function(build, monkeypatch)
    rows = customers()
    features = "\n".join(function.process_data(row) for row in rows)
    as_json = {"content-type": "text/csv", "accept": "application/json"}
    raw = httpx.post(f"{platform.url}/endpoints/churn/invocations", content=features, headers=as_json, timeout=60)
    assert raw.status_code == 200, raw.text
    scores = raw.json()
    assert len(scores) == len(rows)
    by_score = sorted(zip(scores, range(len(rows)), strict=True))
    below = [item for item in by_score if item[0] <= THRESHOLD]
    above = [item for item in by_score if item[0] > THRESHOLD]
    assert below, "the grid should reach below the threshold"
    assert above, "the grid should reach above the threshold"
    picked = [*below[:1], *below[-3:], *above[:3], *above[-1:]]  # the extremes and the nearest to 0.39
    for score, index in picked:
        answer = httpx.post(f"{platform.url}/v1/churn", json=rows[index], headers={"x-api-key": key}, timeout=60)
        assert answer.status_code == 200, answer.text
        expected = "True" if score > THRESHOLD else "False"
        assert answer.json() == {"churn": expected, "score": round(score, 4)}, (score, rows[index])


def test_the_seed_chain_runs_end_to_end_and_cleans_up(platform: Platform, tmp_path: Path) -> None:
    build = tmp_path / "build"
    done = run_example(platform, build)
    assert done.returncode == 0, done.stdout + done.stderr

    churn = re.search(r"POST /v1/churn -> 200 (\{.*\})", done.stdout)
    assert churn is not None, done.stdout
    assert re.fullmatch(r'\{"churn": "(True|False)", "score": [0-9.]+\}', churn.group(1))
    assert 'POST /v1/sentiment -> 200 ["positive","negative"]' in done.stdout
    assert '"text":"SPOTIFY","label":"BRD"' in done.stdout
    assert "POST /v1/churn without a key -> 401" in done.stdout
    assert (build / "churn" / "transformation.sav").is_file()

    # What it left running is what a client sees: the routes answer, the key is required.
    routes = {(r["method"], r["path"]): r for r in platform.client.list_routes()}
    assert set(routes) == {("POST", "/v1/churn"), ("POST", "/v1/sentiment"), ("POST", "/v1/ner")}
    assert routes[("POST", "/v1/churn")]["api_key_required"] is True
    document = httpx.get(f"{platform.url}/api/v1/gateway/openapi.json").json()
    assert document["paths"]["/v1/churn"]["post"]["security"] == [{"apiKey": []}]
    invalid = httpx.post(f"{platform.url}/v1/churn", json={"State": "SCX"}, headers={"x-api-key": "x"})
    assert invalid.status_code == 403  # the key is checked before the body

    key = platform.client.create_api_key("test-key")["key"]
    assert_the_threshold_is_the_seeds(platform, build, key)

    # A second run brings what it made back to what it says (here: a route changed by hand).
    platform.client.update_route("POST", "/v1/sentiment", endpoint="sentiment", summary="changed by hand")
    again = run_example(platform, build)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "route POST /v1/sentiment: updated" in again.stdout
    sentiment = next(r for r in platform.client.list_routes() if r["path"] == "/v1/sentiment")
    assert sentiment["summary"] == "Sentiment of each text"
    assert sentiment["example"] == ["what a great day"]
    assert 'POST /v1/sentiment -> 200 ["positive","negative"]' in again.stdout
    assert "POST /v1/churn -> 200" in again.stdout

    cleaned = run_example(platform, build, "--clean")
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert platform.client.list_routes() == []
    assert platform.client.list_functions() == []
    assert platform.client.list_endpoints() == []
    assert os.path.isdir(build)
