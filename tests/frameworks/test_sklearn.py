import pytest

from modelhost.errors import ArtifactError, InvalidInput, ModelLoadError
from tests.frameworks.helpers import invoke, invoke_many, load
from tests.models import (
    seed_sentiment_with_inference_py,
    sklearn_regression,
    sklearn_text_pipeline,
    sklearn_two_pickles,
)


def test_text_pipeline_is_detected_and_batched(tmp_path):
    loaded = load(sklearn_text_pipeline(tmp_path))
    assert loaded.framework == "sklearn"
    assert loaded.batching.enabled
    assert invoke(loaded, ["great amazing", "awful broken"]) == [1, 0]
    assert invoke(loaded, {"instances": ["great amazing"]}) == {"predictions": [1]}
    assert invoke(loaded, "awful broken") == 0
    assert invoke(loaded, b"great amazing\nawful broken\n", "text/csv") == b"1\n0\n"


def test_regression_rows_and_shape_errors(tmp_path):
    loaded = load(sklearn_regression(tmp_path, n_features=3))
    [prediction] = invoke(loaded, [[1.0, 1.0, 1.0]])
    assert prediction == pytest.approx(6.5)
    with pytest.raises(InvalidInput, match="3 features, got 2"):
        invoke(loaded, [[1.0, 2.0]])
    with pytest.raises(InvalidInput, match="row of 3 features"):
        invoke(loaded, [1.0, 2.0, 3.0])
    with pytest.raises(InvalidInput, match="equal length"):
        invoke(loaded, [[1.0, 2.0, 3.0], [1.0]])


def test_bad_rows_fail_alone_in_a_merged_batch(tmp_path):
    loaded = load(sklearn_regression(tmp_path, n_features=2))
    good, bad, also_good = invoke_many(loaded, [[[0.0, 0.0]], [["a", "b"]], [[1.0, 0.0]]])
    assert good == [pytest.approx(0.5)]
    assert isinstance(bad, Exception)
    assert also_good == [pytest.approx(1.5)]


def test_several_pickles_need_an_inference_py(tmp_path):
    sklearn_two_pickles(tmp_path)
    with pytest.raises(ArtifactError, match=r"several pickles \(classifier.pkl, tfidf_vectorizer.pkl\)"):
        load(tmp_path)


def test_seed_layout_with_inference_py(tmp_path):
    loaded = load(seed_sentiment_with_inference_py(tmp_path))
    assert loaded.framework == "sklearn+inference.py"
    assert not loaded.batching.enabled  # user handlers batch only when they opt in
    body = {"input": [{"text": "great amazing"}, {"text": "awful broken"}]}
    assert invoke(loaded, body) == {"output": [{"label": "positive"}, {"label": "negative"}]}


def test_seed_layout_opted_in_to_batching(tmp_path):
    loaded = load(seed_sentiment_with_inference_py(tmp_path, batching=True))
    assert loaded.batching.enabled
    answers = invoke_many(loaded, [{"input": [{"text": "great amazing"}]}, {"input": [{"text": "awful broken"}]}])
    assert answers == [{"output": [{"label": "positive"}]}, {"output": [{"label": "negative"}]}]


def test_model_file_names_the_pickle(tmp_path):
    sklearn_two_pickles(tmp_path)
    (tmp_path / "modelhost.yaml").write_text("model_file: missing.pkl\n")
    with pytest.raises(ArtifactError, match="missing.pkl"):
        load(tmp_path)


def test_an_unpicklable_file_is_a_load_error(tmp_path):
    (tmp_path / "model.pkl").write_bytes(b"not a pickle at all")
    with pytest.raises(ModelLoadError, match="could not unpickle model.pkl"):
        load(tmp_path)


def test_batching_can_be_switched_off(tmp_path):
    (sklearn_text_pipeline(tmp_path) / "modelhost.yaml").write_text("batching:\n  enabled: false\n")
    assert not load(tmp_path).batching.enabled


def test_text_objects_are_texts_and_other_objects_are_refused(tmp_path):
    loaded = load(sklearn_text_pipeline(tmp_path))
    assert invoke(loaded, [{"text": "great amazing"}, {"text": "awful broken"}]) == [1, 0]
    with pytest.raises(InvalidInput, match="not fitted on named columns"):
        invoke(loaded, {"input": [{"text": "great amazing"}]})
    with pytest.raises(InvalidInput, match="the model rejected the input"):
        invoke(loaded, [1, 2])


def test_objects_are_dataframe_rows_for_a_model_fitted_on_named_columns(tmp_path):
    import joblib
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = pd.DataFrame({"State": ["SC", "NY", "SC", "NY"] * 10, "Minutes": [10.0, 300.0, 20.0, 280.0] * 10})
    churned = [0, 1, 0, 1] * 10
    model = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["State"]), (StandardScaler(), ["Minutes"])),
        LogisticRegression(),
    ).fit(frame, churned)
    joblib.dump(model, tmp_path / "churn.joblib")
    loaded = load(tmp_path)
    rows = [{"State": "NY", "Minutes": 290.0}, {"Minutes": 15.0, "State": "SC", "extra": 1}]
    assert invoke(loaded, rows) == [1, 0]
    with pytest.raises(InvalidInput, match="missing fields: Minutes"):
        invoke(loaded, [{"State": "NY"}])


def test_nan_in_csv_is_a_client_error_not_a_silent_answer(tmp_path):
    loaded = load(sklearn_regression(tmp_path, n_features=3))
    with pytest.raises(InvalidInput, match="NaN"):
        invoke(loaded, b"1,nan,3\n", "text/csv")
