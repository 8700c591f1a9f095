"""The platform survives its processes dying: an instance's master, and `modelhost up` itself.

The store is the truth: a restarted `up` brings back every endpoint; instances never outlive
the `up` that started them (SIGTERM stops them, and they stop by themselves after a kill -9).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from modelhost.client import ClientError
from tests.platform.conftest import Platform, StartPlatform, poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

TEXTS = ["great amazing day", "awful broken app"]


def invokes(platform: Platform, endpoint: str) -> bool:
    response = httpx.post(f"{platform.url}/endpoints/{endpoint}/invocations", json=TEXTS, timeout=10)
    return response.status_code == 200 and response.json() == [1, 0]


def children(pid: int) -> set[int]:
    try:
        return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()


def test_kill9_of_an_instance_master_brings_a_new_one(platform: Platform, sentiment_model: Path) -> None:
    client = platform.client
    platform.deploy(sentiment_model, "sentiment")
    [old_pid] = platform.instance_pids("sentiment")
    old_workers = children(old_pid)
    assert old_workers, "the instance has a worker process"

    killed_at = time.monotonic()
    os.kill(old_pid, signal.SIGKILL)

    def back() -> bool:
        [instance] = client.describe_endpoint("sentiment")["variants"][0]["instances"]
        return instance["state"] == "Healthy" and instance["pid"] != old_pid and invokes(platform, "sentiment")

    poll(back, 30, "the instance to come back", every_s=0.1)
    recovered_s = time.monotonic() - killed_at
    described = client.describe_endpoint("sentiment")
    assert described["status"] == "InService"
    [instance] = described["variants"][0]["instances"]
    assert instance["restarts"] == 1
    new_pid = instance["pid"]

    # the killed master's workers noticed and went; only the new instance's processes remain
    def only_the_new_instance() -> bool:
        left = set(platform.descendants())
        assert left == {new_pid} | children(new_pid), (left, new_pid, old_workers)
        return True

    poll(only_the_new_instance, 10, "the old workers to stop")
    assert not old_workers & set(platform.descendants())
    log = client.logs("sentiment")
    assert log.count("loaded sklearn model") == 2
    assert recovered_s < 30


def test_restart_and_kill9_of_up_bring_the_endpoints_back(platform: Platform, sentiment_model: Path) -> None:
    client = platform.client
    platform.deploy(sentiment_model, "sentiment")
    [first_pid] = platform.instance_pids("sentiment")
    assert first_pid in platform.descendants()

    # SIGTERM: `up` stops its instances before it exits
    assert platform.stop() == 0
    left = platform.descendants()
    assert left == [], left

    # the same state dir again: the endpoint is restored and serves
    platform.start()
    described = platform.wait_in_service("sentiment")
    assert described["config_name"] == "sentiment-v1"
    assert described["failure_reason"] is None
    assert invokes(platform, "sentiment")
    [second_pid] = platform.instance_pids("sentiment")
    assert second_pid != first_pid
    assert len(list((platform.state_dir / "run" / "sentiment").iterdir())) == 1

    # kill -9: nobody stops the instances; they notice their parent is gone and stop themselves
    instances = set(platform.descendants())
    assert second_pid in instances
    platform.kill9()
    killed_at = time.monotonic()
    poll(lambda: not set(platform.descendants()) & instances, 10, "the orphaned instances to stop")
    assert time.monotonic() - killed_at < 10
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{platform.url}/api/v1/health", timeout=2)

    # a new `up` on the same state dir brings it back once more
    platform.start()
    platform.wait_in_service("sentiment")
    assert invokes(platform, "sentiment")
    [third_pid] = platform.instance_pids("sentiment")
    assert third_pid not in (first_pid, second_pid)
    logs = client.logs("sentiment")
    assert logs.count("loaded sklearn model") == 3


def test_a_second_up_on_the_same_state_dir_refuses(start_platform: StartPlatform, tmp_path: Path) -> None:
    first = start_platform()
    command = [sys.executable, "-m", "modelhost", "up", "--state-dir", str(first.state_dir)]
    second = subprocess.run(
        [*command, "--port", str(first.port + 1 if first.port < 65535 else 1025)],
        capture_output=True,
        text=True,
        env=first.env,
        timeout=60,
        check=False,
    )
    assert second.returncode == 1, second
    output = second.stdout + second.stderr
    assert f"another modelhost up (pid {first.pid}) uses {first.state_dir}" in output
    assert "Traceback" not in output
    # the first one is unharmed and keeps its lock
    assert httpx.get(f"{first.url}/api/v1/health").status_code == 200
    assert (first.state_dir / "up.lock").read_text().strip() == str(first.pid)

    # another state dir on the port the first one holds: refused, saying why
    taken = subprocess.run(
        [sys.executable, "-m", "modelhost", "up", "--state-dir", str(tmp_path / "other"), "--port", str(first.port)],
        capture_output=True,
        text=True,
        env=first.env,
        timeout=60,
        check=False,
    )
    assert taken.returncode == 1, taken
    assert f"cannot listen on 127.0.0.1:{first.port}" in taken.stdout + taken.stderr
    assert "Traceback" not in taken.stdout + taken.stderr

    # a bad option is a usage error (exit 2), before anything starts
    short = subprocess.run(
        [*command, "--token", "short"], capture_output=True, text=True, env=first.env, timeout=60, check=False
    )
    assert short.returncode == 2
    assert "token" in short.stderr


def test_after_a_restart_inservice_means_serving(platform: Platform, sentiment_model: Path) -> None:
    """While `up` restores an endpoint after a restart, it must not say InService and answer 503."""
    platform.deploy(sentiment_model, "sentiment")
    platform.restart()
    described = platform.client.describe_endpoint("sentiment")
    response = httpx.post(f"{platform.url}/endpoints/sentiment/invocations", json=TEXTS, timeout=10)
    platform.wait_in_service("sentiment")  # it does come back
    assert described["status"] != "InService" or response.status_code == 200, (
        f"described as {described['status']} (running_config_name={described['running_config_name']}, "
        f"variants={described['variants']}) while invocations answered {response.status_code}: {response.text}"
    )


def test_a_model_in_use_cannot_be_deleted_and_its_instance_still_restarts(
    platform: Platform, sentiment_model: Path
) -> None:
    """The platform needs an endpoint's model (and config) to bring it back after a restart, so
    deleting one in use is refused (409, naming the endpoint); the endpoint keeps working, also
    when an instance crashes and is restarted."""
    client = platform.client
    stored = client.upload_artifact(sentiment_model, "kept")
    client.create_model("kept", stored["uri"], artifact_sha256=stored["sha256"])
    client.create_endpoint_config("kept", [{"model_name": "kept"}])
    client.create_endpoint("kept", "kept")
    platform.wait_in_service("kept")
    for delete in (client.delete_model, client.delete_endpoint_config):
        with pytest.raises(ClientError) as refused:
            delete("kept")
        assert refused.value.status == 409
        assert refused.value.code == "ResourceInUse"
        assert "endpoint 'kept'" in refused.value.message
    assert client.describe_model("kept")["artifact_uri"] == stored["uri"]
    assert client.describe_endpoint("kept")["status"] == "InService"
    assert invokes(platform, "kept")

    [old_pid] = platform.instance_pids("kept")
    log_path = platform.state_dir / "logs" / "kept" / "AllTraffic-0.log"
    log_before = log_path.read_text()
    os.kill(old_pid, signal.SIGKILL)

    def back() -> bool:
        restarted = log_path.read_text()[len(log_before) :]
        if "failed to load" in restarted:  # fail at once: it cannot come back
            pytest.fail(f"the restarted instance cannot load its model:\n{restarted[-1500:]}")
        described = client.describe_endpoint("kept")
        if described["status"] == "Failed":
            pytest.fail(f"the endpoint failed: {described['failure_reason']}")
        [instance] = described["variants"][0]["instances"]
        return instance["state"] == "Healthy" and instance["pid"] != old_pid and invokes(platform, "kept")

    poll(back, 30, "the instance to come back", every_s=0.1)


def test_stopping_up_while_its_first_instance_starts_is_clean(platform: Platform, sentiment_model: Path) -> None:
    """The first spawn waits for the launcher to start; stopping meanwhile cancels the spawn, which
    must not cancel the launcher's own start (it then failed with InvalidStateError in its reader)."""
    platform.client.deploy(sentiment_model, "early", wait=False)
    time.sleep(0.05)
    assert platform.stop() == 0
    log = platform.log()
    assert "InvalidStateError" not in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
