import io

import numpy as np
import pytest

from modelhost.codecs import Envelope, default_codecs
from modelhost.codecs.csv import CsvCodec
from modelhost.codecs.json import JsonCodec
from modelhost.codecs.jsonlines import JsonLinesCodec
from modelhost.codecs.negotiation import parse_accept, parse_content_type
from modelhost.codecs.npy import NpyCodec
from modelhost.codecs.text import TextCodec
from modelhost.errors import InvalidInput, NotAcceptable, UnsupportedMediaType


@pytest.mark.parametrize(
    ("body", "instances", "envelope"),
    [
        (b'["a", "b"]', ["a", "b"], Envelope.LIST),
        (b'{"instances": [[1, 2], [3, 4]]}', [[1, 2], [3, 4]], Envelope.INSTANCES),
        (b'{"inputs": ["a"]}', ["a"], Envelope.INPUTS),
        (b'{"inputs": "a"}', ["a"], Envelope.SINGLE),
        (b'"just text"', ["just text"], Envelope.SINGLE),
        (b'{"text": "x", "lang": "en"}', [{"text": "x", "lang": "en"}], Envelope.SINGLE),
    ],
)
def test_json_finds_instances_and_remembers_the_envelope(body, instances, envelope):
    decoded = JsonCodec().decode(body, "utf-8")
    assert list(decoded.instances) == instances
    assert decoded.envelope is envelope


def test_json_answers_in_the_shape_of_the_request():
    codec = JsonCodec()
    assert codec.encode([1, 0], Envelope.LIST) == b"[1,0]"
    assert codec.encode([1, 0], Envelope.INSTANCES) == b'{"predictions":[1,0]}'
    assert codec.encode([{"label": "x"}], Envelope.SINGLE) == b'{"label":"x"}'
    assert codec.encode([np.float32(0.5), np.int64(2)], Envelope.LIST) == b"[0.5,2]"
    assert codec.encode([np.array([1, 2])], Envelope.LIST) == b"[[1,2]]"


def test_json_errors_are_client_errors_that_say_where():
    with pytest.raises(InvalidInput, match="malformed JSON"):
        JsonCodec().decode(b'{"instances": [1,', "utf-8")
    with pytest.raises(InvalidInput, match='"instances" must be a JSON list'):
        JsonCodec().decode(b'{"instances": 3}', "utf-8")


def test_json_refuses_predictions_it_cannot_write():
    with pytest.raises(NotAcceptable):
        JsonCodec().encode([object()], Envelope.LIST)


def test_csv_rows_and_numbers():
    decoded = CsvCodec().decode(b"1,2.5,x\n3,4,y\n", "utf-8")
    assert decoded.instances == [[1, 2.5, "x"], [3, 4, "y"]]
    single_column = CsvCodec().decode(b'hello\n"a, b"\n', "utf-8")
    assert single_column.instances == ["hello", "a, b"]


def test_csv_refuses_ragged_and_empty_bodies():
    with pytest.raises(InvalidInput, match="row 2 has 1 columns"):
        CsvCodec().decode(b"1,2\n3\n", "utf-8")
    with pytest.raises(InvalidInput, match="no rows"):
        CsvCodec().decode(b"\n\n", "utf-8")
    with pytest.raises(InvalidInput, match="not valid utf-8"):
        CsvCodec().decode(b"\xff\xfe", "utf-8")


def test_csv_writes_one_line_per_prediction_and_refuses_objects():
    assert CsvCodec().encode([0.25, 1], Envelope.ROWS) == b"0.25\n1\n"
    assert CsvCodec().encode([[1, 2], [3, 4]], Envelope.ROWS) == b"1,2\n3,4\n"
    with pytest.raises(NotAcceptable, match="application/json"):
        CsvCodec().encode([{"label": "x"}], Envelope.ROWS)


def test_jsonlines_round_trip_and_line_numbers_in_errors():
    codec = JsonLinesCodec()
    assert codec.decode(b'"a"\n\n{"text": "b"}\n', "utf-8").instances == ["a", {"text": "b"}]
    assert codec.encode([{"x": 1}, 2], Envelope.ROWS) == b'{"x":1}\n2\n'
    with pytest.raises(InvalidInput, match="line 2"):
        codec.decode(b'"a"\n{oops\n', "utf-8")


def test_text_is_one_instance():
    decoded = TextCodec().decode("héllo, world\nsecond line".encode(), "utf-8")
    assert decoded.instances == ["héllo, world\nsecond line"]
    assert TextCodec().encode(["positive"], Envelope.SINGLE) == b"positive"
    assert TextCodec().encode([{"a": 1}], Envelope.SINGLE) == b'{"a":1}'


def _npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def test_npy_rows_are_instances_and_predictions_go_back_as_npy():
    decoded = NpyCodec().decode(_npy(np.arange(6.0).reshape(3, 2)), "utf-8")
    assert len(decoded.instances) == 3
    encoded = NpyCodec().encode([0.5, 1.5], Envelope.ROWS)
    assert np.load(io.BytesIO(encoded)).tolist() == [0.5, 1.5]


def test_npy_never_unpickles_a_request():
    pickled = _npy(np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidInput, match="object arrays are refused"):
        NpyCodec().decode(pickled, "utf-8")
    with pytest.raises(InvalidInput):
        NpyCodec().decode(b"not numpy", "utf-8")


def test_content_type_and_accept_parsing():
    assert parse_content_type("Application/JSON; charset=UTF-8").type == "application/json"
    assert parse_content_type("text/csv; charset=latin-1").charset == "latin-1"
    assert parse_accept("text/csv;q=0.5, application/json") == ["application/json", "text/csv"]
    assert parse_accept("*/*") == []
    assert parse_accept("application/json;q=0, text/csv") == ["text/csv"]


def test_table_negotiates_request_and_response_codecs():
    table = default_codecs()
    csv_codec, _ = table.for_request("text/csv")
    assert table.for_request(None)[0].media_type == "application/json"
    assert table.for_request("application/jsonl")[0].media_type == "application/jsonlines"
    assert table.for_response(None, csv_codec) is csv_codec  # same as the request by default
    assert table.for_response("*/*", csv_codec) is csv_codec
    assert table.for_response("application/json;q=0.4, text/csv", csv_codec).media_type == "text/csv"
    assert table.for_response("text/*", table.json).media_type.startswith("text/")
    text_codec, _ = table.for_request("text/plain")
    assert table.for_response(None, text_codec).media_type == "application/json"
    with pytest.raises(UnsupportedMediaType, match="application/x-python-pickle"):
        table.for_request("application/x-python-pickle")
    with pytest.raises(NotAcceptable, match="image/png"):
        table.for_response("image/png", table.json)


def test_default_accept_setting_wins_over_request_type():
    table = default_codecs(default_accept="text/csv")
    assert table.for_response(None, table.json).media_type == "text/csv"
