import pytest

from modelhost.errors import InvalidInput
from tests.frameworks.helpers import invoke, invoke_many, load
from tests.models import spacy_ner


@pytest.fixture(scope="module")
def ner(tmp_path_factory):
    return load(spacy_ner(tmp_path_factory.mktemp("ner")))


def test_entities_with_offsets(ner):
    assert ner.framework == "spacy"
    [result] = invoke(ner, ["STARBUCKS Vancouver"])
    assert result == {"entities": [{"text": "STARBUCKS", "label": "BRD", "start": 0, "end": 9}]}
    assert invoke(ner, {"text": "coffee at STARBUCKS"})["entities"][0]["start"] == 10


def test_batch_goes_through_pipe_and_keeps_order(ner):
    answers = invoke_many(ner, [["STARBUCKS Vancouver"], ["ATM WITHDRAWAL"], ["paid AMAZON online", "UBER trip help"]])
    assert [e["text"] for e in answers[0][0]["entities"]] == ["STARBUCKS"]
    assert answers[1] == [{"entities": []}]
    assert [r["entities"][0]["text"] for r in answers[2]] == ["AMAZON", "UBER"]


def test_non_text_instances_are_refused(ner):
    with pytest.raises(InvalidInput, match="text"):
        invoke(ner, [42])


def test_pipeline_in_a_subfolder_is_found(tmp_path):
    spacy_ner(tmp_path / "model")  # the layout of nlp.to_disk("model") inside an artifact
    assert load(tmp_path).framework == "spacy"


def test_text_categories_are_returned(tmp_path):
    import spacy
    from spacy.training import Example

    nlp = spacy.blank("en")
    textcat = nlp.add_pipe("textcat")
    textcat.add_label("POS")
    textcat.add_label("NEG")
    examples = [
        Example.from_dict(nlp.make_doc("great"), {"cats": {"POS": 1.0, "NEG": 0.0}}),
        Example.from_dict(nlp.make_doc("awful"), {"cats": {"POS": 0.0, "NEG": 1.0}}),
    ]
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(20):
        nlp.update(examples, sgd=optimizer)
    nlp.to_disk(tmp_path)
    [result] = invoke(load(tmp_path), ["great"])
    assert set(result["cats"]) == {"POS", "NEG"}
    assert result["cats"]["POS"] > result["cats"]["NEG"]
