"""examples/chain.py, the seeds' whole AWS chain, run as a user runs it against a real `modelhost up`.

It trains the churn model (XGBoost + fitted transformers) and the NER model, deploys three
endpoints, the churn function (the seed's Lambda code) and three routes, calls them over HTTP,
then ``--clean`` removes all of it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.platform.conftest import Platform

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "chain.py"


def run_example(platform: Platform, build: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**platform.env, "MODELHOST_URL": platform.url, "EXAMPLES_BUILD_DIR": str(build)}
    env.pop("MODELHOST_TOKEN", None)
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args], env=env, capture_output=True, text=True, timeout=240, check=False
    )


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

    # The threshold is the seed's: a low-risk customer is "False".
    calm = {
        **dict.fromkeys(("Day Mins", "Day Charge", "Eve Mins", "Eve Charge", "Night Mins", "Night Charge"), "1.0"),
        **dict.fromkeys(("Intl Mins", "Intl Charge"), "1.0"),
        "State": "NY", "Account Length": "100", "Area Code": "415", "Phone": "123-4567", "Int'l Plan": "no",
        "VMail Plan": "yes", "VMail Message": "10", "Day Calls": "90", "Eve Calls": "90", "Night Calls": "90",
        "Intl Calls": "3", "CustServ Calls": "0",
    }  # fmt: skip
    key = platform.client.create_api_key("test-key")["key"]
    answer = httpx.post(f"{platform.url}/v1/churn", json=calm, headers={"x-api-key": key}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["churn"] == "False"
    assert answer.json()["score"] < 0.39

    cleaned = run_example(platform, build, "--clean")
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert platform.client.list_routes() == []
    assert platform.client.list_functions() == []
    assert platform.client.list_endpoints() == []
    assert os.path.isdir(build)
