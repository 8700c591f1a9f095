"""`modelhost logs` and the API's log stream: the end of each instance log, then new lines as they come."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from modelhost.client import ClientError
from tests.platform.conftest import Platform

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_logs_show_the_load_and_follow_a_new_instance(platform: Platform, sentiment_model: Path) -> None:
    platform.deploy(sentiment_model, "talky")
    assert "loaded sklearn model" in platform.client.logs("talky")

    seen: list[bytes] = []
    stream = platform.client.follow_logs("talky")

    def read() -> None:
        for chunk in stream:
            seen.append(chunk)
            if b"loaded sklearn model" in b"".join(seen):
                break

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(1.0)  # the stream takes its starting offsets when it opens; the update must come after
    platform.deploy(sentiment_model, "talky")  # an update: a new instance writes its load lines
    reader.join(30)
    followed = b"".join(seen).decode()
    assert "[AllTraffic-0]" in followed
    assert "loaded sklearn model" in followed
    stream.close()  # the client goes; the platform drops the stream (the teardown checks nothing is left)

    with pytest.raises(ClientError) as missing:
        next(iter(platform.client.follow_logs("nope")))
    assert missing.value.status == 404
