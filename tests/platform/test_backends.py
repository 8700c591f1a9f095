"""`modelhost up` on its other backends: PostgreSQL for the state, an S3 bucket for the artifacts.

Real servers, started for the module (tests/pgserver.py, tests/s3server.py); skipped when their
binaries are not installed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.pgserver import PostgresServer
from tests.platform.conftest import StartPlatform
from tests.s3server import SeaweedS3

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

TEXTS = ["great amazing day", "awful broken app"]


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    pytest.importorskip("psycopg")
    with PostgresServer() as server:
        yield server


def test_postgresql_state_store_keeps_the_endpoint_across_a_restart(
    start_platform: StartPlatform, postgres: PostgresServer, sentiment_model: Path
) -> None:
    database = postgres.new_database()
    platform = start_platform("--database", database)
    platform.deploy(sentiment_model, "sentiment")
    assert platform.client.invoke("sentiment", TEXTS).json() == [1, 0]
    assert not (platform.state_dir / "state.db").exists()  # not SQLite

    platform.restart()
    described = platform.wait_in_service("sentiment")
    assert described["config_name"] == "sentiment-v1"
    assert platform.client.invoke("sentiment", TEXTS).json() == [1, 0]
    assert [m["name"] for m in platform.client.list_models()] == ["sentiment-v1"]
    assert not (platform.state_dir / "state.db").exists()

    # the state is in PostgreSQL: read it there directly
    import psycopg

    conninfo = database.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo) as db:
        rows = db.execute("SELECT name, config_name, status FROM endpoints").fetchall()
    assert rows == [("sentiment", "sentiment-v1", "InService")]

    platform.cli("rm", "sentiment")
    with psycopg.connect(conninfo) as db:
        assert db.execute("SELECT count(*) FROM endpoints").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM models").fetchone() == (0,)


def test_s3_artifact_store(start_platform: StartPlatform, s3: SeaweedS3, sentiment_model: Path) -> None:
    bucket, prefix = "platform-artifacts", "team/models-store"
    s3.client().create_bucket(Bucket=bucket)
    credentials = {k: v for k, v in s3.env().items() if k != "MODELHOST_S3_ENDPOINT_URL"}  # the option says where
    platform = start_platform(
        "--artifacts", f"s3://{bucket}/{prefix}", "--s3-endpoint-url", s3.endpoint_url, env=credentials
    )

    def keys() -> list[str]:
        listed = s3.client().list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/")
        return sorted(item["Key"] for item in listed.get("Contents", []))

    # deploy of a local folder: uploaded through the API into the bucket, and served from there
    platform.cli("deploy", str(sentiment_model), "--name", "sentiment")
    [key] = keys()
    assert key.startswith(f"{prefix}/models/sentiment/")
    assert key.endswith("/model.tar.gz")
    model = platform.client.describe_model("sentiment-v1")
    assert model["artifact_uri"] == f"s3://{bucket}/{key}"
    assert json.loads(platform.cli("invoke", "sentiment", "--data", json.dumps(TEXTS)).stdout) == [1, 0]
    assert f"s3://{bucket}/{key}" in platform.client.logs("sentiment")
    assert not (platform.state_dir / "artifacts").exists()  # nothing kept on local disk
    assert not [p for p in (platform.state_dir / "tmp").rglob("*") if p.is_file()]  # nor the upload's scratch

    # rm deletes what deploy made, the object included
    platform.cli("rm", "sentiment")
    assert keys() == []
    assert platform.client.list_models() == []
    assert platform.descendants() == []


SEED_STYLE_HANDLER = """
import os
import pickle

import boto3

s3 = boto3.resource("s3")  # AWS_ENDPOINT_URL_S3 points it at the test's S3 server


def handler(event, context):
    from_artifact = open(os.path.join(os.environ["MODELHOST_FUNCTION_ARTIFACTS_DIR"], "transformation.sav"), "rb")
    with from_artifact:
        fetched = pickle.load(from_artifact)
    read_by_handler = pickle.loads(s3.Object(os.environ["BUCKET"], os.environ["KEY"]).get()["Body"].read())
    return {"fetched": fetched, "read": read_by_handler}
"""


def test_a_function_with_s3_artifacts_on_an_s3_store(
    start_platform: StartPlatform, s3: SeaweedS3, tmp_path: Path
) -> None:
    """The churn seed's way: fitted transformers in a bucket, fetched as an artifact or read with boto3."""
    import pickle

    bucket = "function-store"
    s3.client().create_bucket(Bucket=bucket)
    s3.client().put_object(Bucket=bucket, Key="churn/transformation.sav", Body=pickle.dumps({"num_cols": [1, 2]}))
    credentials = {k: v for k, v in s3.env().items() if k != "MODELHOST_S3_ENDPOINT_URL"}
    platform = start_platform(
        "--artifacts", f"s3://{bucket}/store", "--s3-endpoint-url", s3.endpoint_url, env=credentials
    )
    code = tmp_path / "churn-fn"
    code.mkdir()
    (code / "app.py").write_text(SEED_STYLE_HANDLER)
    platform.cli(
        "function", "create", "churn-api", str(code), "--handler", "app.handler",
        "--artifact", f"s3://{bucket}/churn/transformation.sav",
        "--env", f"AWS_ENDPOINT_URL_S3={s3.endpoint_url}", "--env", f"BUCKET={bucket}",
        "--env", "KEY=churn/transformation.sav",
    )  # fmt: skip
    stored = s3.client().list_objects_v2(Bucket=bucket, Prefix="store/")["Contents"]
    assert [item["Key"] for item in stored][-1].endswith("/model.tar.gz")  # the code went to the bucket
    platform.cli("route", "create", "POST", "/v1/churn", "--function", "churn-api")
    answer = httpx.post(f"{platform.url}/v1/churn", json={}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"fetched": {"num_cols": [1, 2]}, "read": {"num_cols": [1, 2]}}

    platform.cli("route", "rm", "POST", "/v1/churn")
    platform.cli("function", "rm", "churn-api")
    assert "Contents" not in s3.client().list_objects_v2(Bucket=bucket, Prefix="store/")  # its code went too
    assert platform.descendants() == []
