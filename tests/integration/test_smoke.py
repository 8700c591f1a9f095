from pathlib import Path

import httpx

from tests.conftest import Serve
from tests.models import sklearn_text_pipeline


def test_serves_a_sklearn_pipeline_folder(serve: Serve, tmp_path: Path) -> None:
    server = serve(sklearn_text_pipeline(tmp_path / "model"), "--workers", "1")
    response = httpx.post(f"{server.url}/invocations", json=["great amazing day", "awful broken app"])
    assert response.status_code == 200
    assert response.json() == [1, 0]
