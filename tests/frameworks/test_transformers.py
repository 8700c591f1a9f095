import pytest

from tests.frameworks.helpers import invoke, invoke_many, load
from tests.models import tiny_transformer


@pytest.fixture(scope="module")
def token_classifier(tmp_path_factory):
    return load(tiny_transformer(tmp_path_factory.mktemp("ner"), "token-classification"))


def test_text_classification(tmp_path):
    loaded = load(tiny_transformer(tmp_path, "text-classification"))
    assert loaded.framework == "transformers"
    [result] = invoke(loaded, ["a great day"])
    assert result["label"] in {"POSITIVE", "NEGATIVE"}
    assert 0.0 <= result["score"] <= 1.0


def test_token_classification_entities_have_offsets_into_the_text(token_classifier):
    texts = ["paid at amazon", "starbucks vancouver", "the day"]
    for text, entities in zip(texts, invoke(token_classifier, texts), strict=True):
        for entity in entities:
            assert set(entity) == {"text", "label", "start", "end", "score"}
            assert text[entity["start"] : entity["end"]] == entity["text"]
            assert entity["label"] == "BRD"


def test_merged_batch_matches_one_by_one(token_classifier):
    texts = ["paid at amazon", "starbucks vancouver"]
    one_by_one = [invoke(token_classifier, [t])[0] for t in texts]
    merged = [answer[0] for answer in invoke_many(token_classifier, [[t] for t in texts])]
    for single, batched in zip(one_by_one, merged, strict=True):
        assert [e["text"] for e in single] == [e["text"] for e in batched]


def test_task_from_manifest_and_unknown_tasks(tmp_path):
    from modelhost.errors import ModelLoadError

    folder = tiny_transformer(tmp_path, "text-classification")
    (folder / "modelhost.yaml").write_text("task: summarization\n")
    with pytest.raises(ModelLoadError, match="summarization"):
        load(folder)
