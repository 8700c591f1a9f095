"""An endpoint's whole life through the `modelhost` CLI, against a real `modelhost up`.

deploy -> invoke -> ls -> describe -> logs -> update (a new artifact: -v2) -> rm, then nothing of
it is left: no process, no folder under run/ or logs/, no stored artifact, no model or config.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.platform.conftest import Platform, poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

WIDE = {"COLUMNS": "200"}  # rich's tables in a pipe: no wrapping of the cells


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_deploy_invoke_ls_describe_logs_update_rm(
    platform: Platform, sentiment_model: Path, sentiment_model_v2: Path
) -> None:
    state = platform.state_dir

    # deploy: uploads the folder, creates sentiment-v1, waits for InService
    deployed = platform.cli("deploy", str(sentiment_model), "--name", "sentiment")
    assert "sentiment is InService on config sentiment-v1" in deployed.stderr
    assert f"curl {platform.url}/endpoints/sentiment/invocations" in deployed.stderr

    # invoke: the model's answer on stdout
    answer = platform.cli("invoke", "sentiment", "--data", '["great amazing day", "awful broken app"]')
    assert json.loads(answer.stdout) == [1, 0]
    body = platform.root / "body.json"
    body.write_text('["love this wonderful app"]')
    assert json.loads(platform.cli("invoke", "sentiment", "--file", str(body)).stdout) == [1]
    assert json.loads(platform.cli("invoke", "sentiment", input='["the worst, so slow"]').stdout) == [0]

    # ls: one row, InService, its config and healthy instances
    listed = platform.cli("ls", env=WIDE).stdout
    row = next(line for line in listed.splitlines() if "sentiment" in line)
    assert "InService" in row
    assert "sentiment-v1" in row
    assert "AllTraffic 1/1" in row

    # describe: JSON of the endpoint, its variant and its running instance
    described = json.loads(platform.cli("describe", "sentiment").stdout)
    assert described["name"] == "sentiment"
    assert described["status"] == "InService"
    assert described["config_name"] == described["running_config_name"] == "sentiment-v1"
    assert described["failure_reason"] is None
    assert described["invocation_path"] == "/endpoints/sentiment/invocations"
    [variant] = described["variants"]
    assert variant["name"] == "AllTraffic"
    assert variant["model_name"] == "sentiment-v1"
    [instance] = variant["instances"]
    assert instance["state"] == "Healthy"
    assert instance["restarts"] == 0
    assert isinstance(instance["pid"], int)
    assert isinstance(instance["port"], int)
    v1_pid = instance["pid"]
    assert v1_pid in platform.descendants()

    # logs: the model server's own output
    logs = platform.cli("logs", "sentiment").stdout
    assert "==> AllTraffic-0 <==" in logs
    assert "loaded sklearn model" in logs

    # the upload went to the state dir's artifact store
    assert [p for p in files_under(state / "artifacts") if p.endswith("model.tar.gz")], files_under(state)

    # update: a new artifact (answers in words) becomes sentiment-v2; the v1 instance stops
    updated = platform.cli("update", "sentiment", str(sentiment_model_v2))
    assert "sentiment is InService on config sentiment-v2" in updated.stderr
    answer = platform.cli("invoke", "sentiment", "--data", '["great amazing day", "awful broken app"]')
    assert json.loads(answer.stdout) == ["positive", "negative"]
    described = json.loads(platform.cli("describe", "sentiment").stdout)
    assert described["status"] == "InService"
    assert described["config_name"] == described["running_config_name"] == "sentiment-v2"
    assert described["variants"][0]["model_name"] == "sentiment-v2"
    v2_pid = described["variants"][0]["instances"][0]["pid"]
    assert v2_pid != v1_pid
    poll(lambda: v1_pid not in platform.descendants(), 10, "the v1 instance to stop")
    assert {m["name"] for m in platform.client.list_models()} == {"sentiment-v1", "sentiment-v2"}
    assert {c["name"] for c in platform.client.list_endpoint_configs()} == {"sentiment-v1", "sentiment-v2"}
    assert len([p for p in files_under(state / "artifacts") if p.endswith("model.tar.gz")]) == 2

    # update of an endpoint that does not exist: refused, nothing uploaded
    missing = platform.cli("update", "nope", str(sentiment_model_v2), check=False)
    assert missing.returncode == 1
    assert "nope" in missing.stderr
    assert "does not exist" in missing.stderr

    # rm: the endpoint, its processes, its files and what deploy made for it are gone
    removed = platform.cli("rm", "sentiment")
    assert "deleted sentiment" in removed.stderr
    listed = platform.cli("ls", env=WIDE).stdout
    assert "sentiment" not in listed
    gone = platform.cli("describe", "sentiment", check=False)
    assert gone.returncode == 1
    assert "does not exist" in gone.stderr
    assert platform.descendants() == []
    assert not (state / "run" / "sentiment").exists()
    assert not (state / "logs" / "sentiment").exists()
    assert files_under(state / "artifacts") == []
    assert platform.client.list_models() == []
    assert platform.client.list_endpoint_configs() == []
    assert platform.client.list_endpoints() == []
    # the invocations path now knows nothing of it
    after = platform.cli("invoke", "sentiment", "--data", "[]", check=False)
    assert after.returncode == 1
    assert "Endpoint sentiment not found" in after.stderr


def test_rm_keep_models_keeps_what_deploy_made(platform: Platform, sentiment_model: Path) -> None:
    platform.cli("deploy", str(sentiment_model), "--name", "kept")
    platform.cli("rm", "kept", "--keep-models")
    assert platform.client.list_endpoints() == []
    assert [m["name"] for m in platform.client.list_models()] == ["kept-v1"]
    assert [c["name"] for c in platform.client.list_endpoint_configs()] == ["kept-v1"]
    assert platform.descendants() == []
    assert not (platform.state_dir / "run" / "kept").exists()
    assert not (platform.state_dir / "logs" / "kept").exists()
    artifact = platform.client.describe_model("kept-v1")["artifact_uri"]
    assert artifact.startswith("file://")
    assert Path(artifact.removeprefix("file://")).is_file()
    # deleting the model by hand then removes the artifact no model refers to any more
    platform.client.delete_endpoint_config("kept-v1")
    platform.client.delete_model("kept-v1")
    assert not Path(artifact.removeprefix("file://")).exists()
