"""The seeds' whole AWS chain on one modelhost: endpoints, a function, routes, an API key.

    modelhost up &                       # in another shell (or MODELHOST_URL=... for one elsewhere)
    .venv/bin/python examples/chain.py   # trains what it needs into examples/build/, deploys, calls

What it sets up, and what each seed did on AWS:

    POST /v1/churn      API key, 50/s  ─► function churn-api (the seed's Lambda: fitted transformers
                                            as an artifact, one-hot + scaling, the 0.39 threshold)
                                            ─► endpoint churn (XGBoost, SageMaker's xgboost-model layout)
    POST /v1/sentiment  ─► endpoint sentiment (TF-IDF + logistic regression)
    POST /v1/ner        ─► endpoint ner (spaCy NER for merchant names)

Then it calls each route the way a client would (plain HTTP) and prints the answers. Run it
again to update everything in place; ``--clean`` removes what it made.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from modelhost.client import Client, ClientError

HERE = Path(__file__).resolve().parent
BUILD = Path(os.environ.get("EXAMPLES_BUILD_DIR") or HERE / "build")  # where trained models go
CHURN_SCHEMA = {
    "type": "object",
    "required": ["State", "Account Length", "Area Code", "Int'l Plan", "VMail Plan", "CustServ Calls"],
    "properties": {
        "State": {"type": "string", "minLength": 2, "maxLength": 2},
        "Area Code": {"type": "string", "pattern": "^[0-9]{3}$"},
        "Int'l Plan": {"enum": ["yes", "no"]},
        "VMail Plan": {"enum": ["yes", "no"]},
    },
    "additionalProperties": {"type": "string", "pattern": "^-?[0-9.]+$|^[0-9]{3}-[0-9]{4}$"},
}
CHURN_ANSWER = {
    "type": "object",
    "required": ["churn", "score"],
    "properties": {
        "churn": {"enum": ["True", "False"], "description": "score > THRESHOLD (0.39, the seed's)"},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
    },
}


def train() -> None:
    """Build the three models once (again after `rm -r examples/build`)."""
    if not (BUILD / "sentiment" / "model.joblib").is_file():
        subprocess.run([sys.executable, str(HERE / "sentiment" / "train.py"), str(BUILD / "sentiment")], check=True)
    if not (BUILD / "churn" / "model" / "xgboost-model").is_file():
        subprocess.run([sys.executable, str(HERE / "churn" / "train.py"), str(BUILD / "churn")], check=True)
    if not (BUILD / "ner" / "meta.json").is_file():
        subprocess.run([sys.executable, str(HERE / "ner" / "train.py"), str(BUILD / "ner")], check=True)


def deploy(client: Client) -> str:
    """Everything above, created or updated; returns a fresh API key for /v1/churn."""
    for name, source in (
        ("churn", BUILD / "churn" / "model"),
        ("sentiment", BUILD / "sentiment"),
        ("ner", BUILD / "ner"),
    ):
        client.deploy(source, name)
        print(f"endpoint {name}: InService")
    exists = any(f["name"] == "churn-api" for f in client.list_functions())
    client.create_function(
        "churn-api",
        HERE / "churn" / "function",
        "app.lambda_handler",
        update=exists,
        environment={"ENDPOINT_NAME": "churn", "THRESHOLD": "0.39"},
        artifacts={"transformation.sav": str(BUILD / "churn" / "transformation.sav")},
    )
    print("function churn-api: Active")
    routes = {(r["method"], r["path"]) for r in client.list_routes()}
    example = json.loads((HERE / "churn" / "request.json").read_text())
    wanted = [
        ("POST", "/v1/churn", {"function": "churn-api", "api_key_required": True, "rate": "50/s", "burst": 100,
                               "request_schema": CHURN_SCHEMA, "example": example,
                               "response_schema": CHURN_ANSWER, "response_example": {"churn": "True", "score": 0.8731},
                               "summary": "Will this customer churn? (the seed's Lambda + XGBoost)"}),
        ("POST", "/v1/sentiment", {"endpoint": "sentiment", "example": ["what a great day"],
                                   "response_example": ["positive"], "summary": "Sentiment of each text"}),
        ("POST", "/v1/ner", {"endpoint": "ner", "example": ["card payment to SPOTIFY"],
                             "summary": "Merchant names in statement lines"}),
    ]  # fmt: skip
    for method, path, settings in wanted:
        if (method, path) in routes:  # made by an earlier run: brought to what this run says
            client.update_route(method, path, **settings)
            print(f"route {method} {path}: updated")
        else:
            client.create_route(method, path, **settings)
            print(f"route {method} {path}: created")
    existing = {k["name"] for k in client.list_api_keys()}
    if "chain-example" in existing:
        client.revoke_api_key("chain-example")
    return str(client.create_api_key("chain-example")["key"])


def call(url: str, key: str) -> None:
    record = json.loads((HERE / "churn" / "request.json").read_text())
    calls = [
        ("/v1/churn", record, {"x-api-key": key}),
        ("/v1/sentiment", ["what a great day", "the delivery was awful"], {}),
        ("/v1/ner", ["card payment to SPOTIFY", "ATM WITHDRAWAL"], {}),
    ]
    for path, body, headers in calls:
        answer = httpx.post(f"{url}{path}", json=body, headers=headers, timeout=60)
        print(f"POST {path} -> {answer.status_code} {answer.text}")
        answer.raise_for_status()
    refused = httpx.post(f"{url}/v1/churn", json=record, timeout=60)
    print(f"POST /v1/churn without a key -> {refused.status_code} {refused.json()['message']}")
    print(f"OpenAPI page of these routes: {url}/api/v1/gateway/docs")


def clean(client: Client) -> None:
    for method, path in (("POST", "/v1/churn"), ("POST", "/v1/sentiment"), ("POST", "/v1/ner")):
        with contextlib.suppress(ClientError):
            client.delete_route(method, path)
    for remove in (lambda: client.delete_function("churn-api"), lambda: client.revoke_api_key("chain-example")):
        with contextlib.suppress(ClientError):
            remove()
    for name in ("churn", "sentiment", "ner"):
        try:
            client.delete_endpoint(name, with_deployed_resources=True)
            client.wait_deleted(name)
        except ClientError:
            pass
    print("removed the example's routes, function, key and endpoints")


def main() -> None:
    client = Client(os.environ.get("MODELHOST_URL"))
    if "--clean" in sys.argv:
        clean(client)
        return
    train()
    key = deploy(client)
    call(client.url, key)


if __name__ == "__main__":
    main()
