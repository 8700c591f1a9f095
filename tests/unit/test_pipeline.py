"""The inference core, driven with a small real predictor and real inference.py files."""

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from modelhost.codecs import default_codecs
from modelhost.errors import InvalidInput, InvocationError, ModelLoadError
from modelhost.frameworks.base import Predictor
from modelhost.inference.handlers import load_handlers
from modelhost.inference.pipeline import Pipeline
from modelhost.inference.types import Invocation, Rendered


class Doubler(Predictor):
    """Doubles numbers; anything else is an invalid instance. Counts its calls."""

    def __init__(self) -> None:
        super().__init__(model="doubler")
        self.calls: list[int] = []

    def predict(self, instances: Sequence[Any]) -> Sequence[Any]:
        self.calls.append(len(instances))
        if not all(isinstance(x, (int, float)) for x in instances):
            raise InvalidInput("instances must be numbers")
        return [2 * x for x in instances]


def pipeline(tmp_path: Path, predictor: Predictor | None = None, handlers_source: str | None = None, batchable=True):
    handlers = None
    if handlers_source is not None:
        (tmp_path / "inference.py").write_text(handlers_source)
        handlers = load_handlers(tmp_path / "inference.py")
    return Pipeline(
        model="the-model",
        model_dir=tmp_path,
        predictor=predictor,
        adapter=None,
        handlers=handlers,
        codecs=default_codecs(),
        batchable=batchable,
    )


def call(body: bytes, content_type: str = "application/json", accept: str | None = None, **kw) -> Invocation:
    return Invocation(body, content_type, accept, **kw)


def test_merged_batch_gives_each_caller_its_own_slice(tmp_path):
    doubler = Doubler()
    outcomes = pipeline(tmp_path, doubler).run_batch(
        [call(b"[1, 2]"), call(b'{"instances": [3]}'), call(b"4"), call(b"5\n6\n", "text/csv")]
    )
    assert [o.body for o in outcomes] == [b"[2,4]", b'{"predictions":[6]}', b"8", b"10\n12\n"]
    assert outcomes[3].content_type == "text/csv"
    assert doubler.calls == [6]  # one predict for the whole batch


def test_a_bad_request_fails_alone(tmp_path):
    doubler = Doubler()
    outcomes = pipeline(tmp_path, doubler).run_batch(
        [call(b"[1]"), call(b"[oops"), call(b'["text"]'), call(b"[2]", accept="image/png"), call(b"[3]")]
    )
    assert isinstance(outcomes[0], Rendered)
    assert outcomes[0].body == b"[2]"
    assert isinstance(outcomes[1], InvocationError)
    assert outcomes[1].status == 400
    assert isinstance(outcomes[2], InvocationError)
    assert "numbers" in outcomes[2].message
    assert isinstance(outcomes[3], InvocationError)
    assert outcomes[3].status == 406
    assert isinstance(outcomes[4], Rendered)
    assert outcomes[4].body == b"[6]"


TOOLKIT = """
import json

def model_fn(model_dir):
    return "loaded"

def input_fn(body, content_type, context):
    assert isinstance(body, str), "JSON bodies reach input_fn as text"
    return {"numbers": json.loads(body), "attributes": context.custom_attributes}

def predict_fn(data, model):
    if data["numbers"] == "boom":
        raise RuntimeError("the model exploded")
    return {"sum": sum(data["numbers"]), "model": model, "attributes": data["attributes"]}

def output_fn(prediction, accept):
    return json.dumps(prediction), "application/vnd.sum+json"
"""


def test_toolkit_handlers_run_with_their_semantics(tmp_path):
    handlers_pipeline = pipeline(tmp_path, None, TOOLKIT, batchable=False)
    [ok, boom] = handlers_pipeline.run_batch(
        [call(b"[1, 2, 3]", custom_attributes="trace=7"), call(b'"boom"', request_id="r-2")]
    )
    assert ok.content_type == "application/vnd.sum+json"
    assert ok.body == b'{"sum": 6, "model": "the-model", "attributes": "trace=7"}'
    assert boom.status == 500
    assert boom.message == "RuntimeError: the model exploded"


def test_a_handler_error_with_a_status_code_keeps_it(tmp_path):
    source = """
class Unsupported(Exception):
    status_code = 415

def transform_fn(model, body, content_type, accept):
    raise Unsupported(f"cannot read {content_type}")
"""
    [outcome] = pipeline(tmp_path, None, source, batchable=False).run_batch([call(b"x", "text/weird")])
    assert outcome.status == 415
    assert "cannot read text/weird" in outcome.message


def test_transform_fn_output_defaults_to_the_accept_type(tmp_path):
    source = "def transform_fn(model, body, content_type, accept):\n    return b'raw:' + body\n"
    [outcome] = pipeline(tmp_path, None, source, batchable=False).run_batch(
        [call(b"\x00\x01", "application/octet-stream", "application/x-raw")]
    )
    assert outcome == Rendered(b"raw:\x00\x01", "application/x-raw")
    [default] = pipeline(tmp_path, None, source, batchable=False).run_batch([call(b"[]", "application/x-raw")])
    assert default.content_type == "application/json"  # no Accept: SageMaker's default accept


def test_predict_fn_alone_gets_the_decoded_body_and_default_encoding(tmp_path):
    source = "def predict_fn(data, model):\n    return {'got': data}\n"
    [outcome] = pipeline(tmp_path, Doubler(), source, batchable=False).run_batch([call(b'{"a": [1]}')])
    assert outcome.body == b'{"got":{"a":[1]}}'


def test_input_fn_alone_falls_back_to_the_adapter_predict(tmp_path):
    source = "def input_fn(body, content_type):\n    return [int(x) for x in body.split(',')]\n"
    [outcome] = pipeline(tmp_path, Doubler(), source, batchable=False).run_batch([call(b"1,2", "text/csv")])
    assert outcome.body == b"2\n4\n"  # one CSV row per instance


def test_batched_user_handlers_see_one_merged_list(tmp_path):
    source = """
import json
SEEN = []

def input_fn(body, content_type):
    return json.loads(body)["input"]

def predict_fn(items, model):
    SEEN.append(len(items))
    return [x * 10 for x in items]

def output_fn(predictions, accept):
    return json.dumps({"output": predictions})
"""
    merged = pipeline(tmp_path, None, source, batchable=True)
    outcomes = merged.run_batch([call(b'{"input": [1, 2]}'), call(b'{"input": [3]}'), call(b'{"nope": 1}')])
    assert outcomes[0].body == b'{"output": [10, 20]}'
    assert outcomes[1].body == b'{"output": [30]}'
    assert outcomes[2].status == 500
    assert "KeyError" in outcomes[2].message
    assert sys.modules["modelhost_user_inference"].SEEN == [3]


def test_batched_input_fn_must_return_a_list(tmp_path):
    source = "def input_fn(body, content_type):\n    return 42\n\ndef predict_fn(x, model):\n    return x\n"
    [outcome] = pipeline(tmp_path, None, source, batchable=True).run_batch([call(b"1")])
    assert "must return a list" in outcome.message


def test_predict_returning_the_wrong_count_is_an_error(tmp_path):
    source = "def predict_fn(items, model):\n    return [1]\n"
    [outcome] = pipeline(tmp_path, None, source, batchable=True).run_batch([call(b"[1, 2]")])
    assert outcome.status == 500
    assert "1 outputs for 2 instances" in outcome.message


def test_contract_is_checked_when_the_model_loads(tmp_path):
    with pytest.raises(ModelLoadError, match="cannot use transform_fn together"):
        pipeline(tmp_path, None, "def transform_fn(m, b, c, a): pass\ndef input_fn(b, c): pass\n")
    with pytest.raises(ModelLoadError, match="predict_fn must take 2 arguments"):
        pipeline(tmp_path, None, "def predict_fn(data): pass\n")
    with pytest.raises(ModelLoadError, match="ZeroDivisionError"):
        pipeline(tmp_path, None, "1 / 0\n")
    with pytest.raises(ModelLoadError, match="neither predict_fn nor transform_fn"):
        pipeline(tmp_path, None, "def input_fn(b, c): pass\n")


def test_an_invalid_content_type_from_a_handler_is_an_error_not_a_broken_response(tmp_path):
    source = "def transform_fn(model, body, content_type, accept):\n    return b'x', 'text/plain\\r\\nX-Evil: 1'\n"
    [outcome] = pipeline(tmp_path, None, source, batchable=False).run_batch([call(b"1")])
    assert outcome.status == 500
    assert "invalid content type" in outcome.message


ATTRIBUTES_TOOLKIT = """
def transform_fn(model, body, content_type, accept, context):
    if body != "quiet":
        context.response_custom_attributes = body or f"echo={context.custom_attributes}"
    return "ok"
"""


def test_a_handler_answers_with_custom_attributes_set_on_its_context(tmp_path):
    answering = pipeline(tmp_path, None, ATTRIBUTES_TOOLKIT, batchable=False)
    [echoed, quiet] = answering.run_batch(
        [call(b"", "text/csv", custom_attributes="trace=7"), call(b"quiet", "text/csv")]
    )
    assert echoed == Rendered(b"ok", "application/json", "echo=trace=7")
    assert quiet == Rendered(b"ok", "application/json")  # none set: no header
    assert quiet.custom_attributes is None


@pytest.mark.parametrize("value", ["a\r\nX-Evil: 1", "é", "x" * 1025])
def test_custom_attributes_that_cannot_be_a_header_are_an_error(tmp_path, value):
    [outcome] = pipeline(tmp_path, None, ATTRIBUTES_TOOLKIT, batchable=False).run_batch(
        [call(value.encode(), "text/csv")]
    )
    assert isinstance(outcome, InvocationError)
    assert outcome.status == 500
    assert "response_custom_attributes" in outcome.message


def test_batched_output_fn_sets_each_requests_own_custom_attributes(tmp_path):
    source = """
import json

def predict_fn(items, model):
    return items

def output_fn(predictions, accept, context):
    context.response_custom_attributes = f"count={len(predictions)}; of={context.custom_attributes}"
    return json.dumps(predictions)
"""
    merged = pipeline(tmp_path, None, source, batchable=True)
    first, second = merged.run_batch([call(b"[1, 2]", custom_attributes="a"), call(b"[3]", custom_attributes="b")])
    assert (first.body, first.custom_attributes) == (b"[1, 2]", "count=2; of=a")
    assert (second.body, second.custom_attributes) == (b"[3]", "count=1; of=b")
