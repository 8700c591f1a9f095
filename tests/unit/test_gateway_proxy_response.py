"""A handler's proxy answer made the client's: statuses HTTP can carry, bodies it allows, header values.

Pure logic over what an instance answered (``UpstreamResponse``), as the gateway hands it on.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelhost.frontdoor.answers import FrontDoorError
from modelhost.frontdoor.lambda_proxy import function_response
from modelhost.frontdoor.upstream import UpstreamResponse


def answered(value: Any) -> bytes:
    return function_response("fn", UpstreamResponse(200, [], json.dumps(value).encode()), "req-1")


def head_and_body(data: bytes) -> tuple[str, dict[str, list[str]], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines:
        name, _, value = line.partition(": ")
        headers.setdefault(name, []).append(value)
    return status_line, headers, body


@pytest.mark.parametrize("status", [100, 101, 103, 199, 600, 1000, -1])
def test_a_status_outside_200_to_599_is_a_502_naming_it(status: int) -> None:
    with pytest.raises(FrontDoorError) as raised:
        answered({"statusCode": status, "body": "x"})
    assert raised.value.status == 502
    assert raised.value.code == "FunctionError"
    assert f"statusCode {status}" in raised.value.message


@pytest.mark.parametrize("status", [204, 304])
def test_a_204_or_304_drops_the_body_and_sends_no_length(status: int) -> None:
    data = answered({"statusCode": status, "headers": {"ETag": '"v1"'}, "body": "should-not-have-body"})
    status_line, headers, body = head_and_body(data)
    assert status_line.split()[1] == str(status)
    assert data.endswith(b"\r\n\r\n")
    assert body == b""
    assert "content-length" not in headers
    assert "content-type" not in headers
    assert headers["etag"] == ['"v1"']
    assert headers["x-amzn-requestid"] == ["req-1"]


def test_other_statuses_keep_their_body() -> None:
    _, headers, body = head_and_body(answered({"statusCode": 202, "body": "queued"}))
    assert body == b"queued"
    assert headers["content-length"] == ["6"]


def test_numbers_and_booleans_become_header_text_as_api_gateway_writes_them() -> None:
    value = {
        "statusCode": 200,
        "headers": {"X-N": 5, "X-F": 1.5, "X-T": True, "X-Off": False},
        "multiValueHeaders": {"X-Multi": ["a", 2, True]},
    }
    _, headers, _ = head_and_body(answered(value))
    assert (headers["x-n"], headers["x-f"], headers["x-t"], headers["x-off"]) == (["5"], ["1.5"], ["true"], ["false"])
    assert headers["x-multi"] == ["a", "2", "true"]


@pytest.mark.parametrize("bad", [[1, 2], {"a": 1}, None])
def test_a_header_value_of_another_type_is_a_502_naming_the_header(bad: Any) -> None:
    with pytest.raises(FrontDoorError) as raised:
        answered({"statusCode": 200, "headers": {"X-Bad": bad}})
    assert raised.value.status == 502
    assert "'X-Bad'" in raised.value.message


def test_a_multi_value_header_that_is_not_a_list_is_a_502() -> None:
    with pytest.raises(FrontDoorError, match="'X-Bad'") as raised:
        answered({"statusCode": 200, "multiValueHeaders": {"X-Bad": "notalist"}})
    assert raised.value.status == 502
    with pytest.raises(FrontDoorError, match="'X-Bad'"):
        answered({"statusCode": 200, "multiValueHeaders": {"X-Bad": [[1]]}})


def test_headers_that_are_not_an_object_are_a_502() -> None:
    with pytest.raises(FrontDoorError, match="not an object"):
        answered({"statusCode": 200, "headers": ["X-A", "1"]})
