"""A spacy-transformers pipeline (seed 001's kind of model) through the spaCy adapter."""

import pytest

from tests.frameworks.helpers import invoke, invoke_many, load
from tests.models import spacy_transformers_ner


@pytest.fixture(scope="module")
def trf_ner(tmp_path_factory):
    root = tmp_path_factory.mktemp("spacy-trf")
    return load(spacy_transformers_ner(root / "model", root / "scratch"))


def test_served_by_the_spacy_adapter_from_its_own_folder(trf_ner):
    assert trf_ner.framework == "spacy"
    assert "transformer" in trf_ner.pipeline.model.pipe_names
    [result] = invoke(trf_ner, ["STARBUCKS Vancouver"])
    assert set(result) == {"entities"}
    for entity in result["entities"]:
        assert "STARBUCKS Vancouver"[entity["start"] : entity["end"]] == entity["text"]


def test_batches_match_one_by_one(trf_ner):
    texts = ["STARBUCKS Vancouver", "paid AMAZON online", "uber trip help"]
    one_by_one = [invoke(trf_ner, [text])[0] for text in texts]
    merged = [answer[0] for answer in invoke_many(trf_ner, [[text] for text in texts])]
    assert merged == one_by_one
