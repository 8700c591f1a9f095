"""The linear fast path must answer exactly what scikit-learn's own predict answers."""

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge, SGDClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from modelhost.frameworks.sklearn_fast import fast_predict
from tests.models import sentiment_corpus

rng = np.random.default_rng(0)
X = rng.normal(size=(120, 4))
THREE_CLASSES = np.array(["a", "b", "c"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0).astype(int)]
TARGET = X @ [1.0, -2.0, 0.5, 3.0] + 0.25


@pytest.mark.parametrize(
    ("model", "y"),
    [
        (LogisticRegression(), X[:, 0] > 0),
        (LogisticRegression(), THREE_CLASSES),
        (make_pipeline(StandardScaler(), LogisticRegression()), THREE_CLASSES),
        (SGDClassifier(random_state=0), THREE_CLASSES),
        (LinearSVC(), X[:, 1] > 0),
        (LinearRegression(), TARGET),
        (Ridge(), np.column_stack([TARGET, -TARGET])),
        (make_pipeline(StandardScaler(), Ridge()), TARGET),
    ],
    ids=lambda value: type(value).__name__,
)
def test_numeric_models_answer_the_same(model, y):
    model.fit(X, y)
    fast = fast_predict(model)
    assert fast is not None
    queries = rng.normal(size=(50, 4))
    np.testing.assert_array_equal(fast(queries), model.predict(queries))
    np.testing.assert_array_equal(fast(queries[:1]), model.predict(queries[:1]))


def test_text_pipeline_answers_the_same():
    texts, labels = sentiment_corpus()
    model = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(texts, labels)
    fast = fast_predict(model)
    assert fast is not None
    queries = [*texts[:40], "unseen words only", ""]
    np.testing.assert_array_equal(fast(queries), model.predict(queries))


def test_other_models_keep_scikit_learns_predict():
    assert fast_predict(RandomForestClassifier(n_estimators=3).fit(X, X[:, 0] > 0)) is None

    class Thresholded(LogisticRegression):
        def predict(self, x):
            return self.predict_proba(x)[:, 1] > 0.39  # the seed's churn threshold

    assert fast_predict(Thresholded().fit(X, X[:, 0] > 0)) is None
    assert fast_predict(object()) is None


def test_odd_input_falls_back_to_scikit_learn_and_its_error():
    model = LogisticRegression().fit(X, X[:, 0] > 0)
    fast = fast_predict(model)
    with pytest.raises(ValueError, match="could not convert string to float|dtype"):
        fast(np.array([["a", "b", "c", "d"]]))


def test_nan_is_still_refused_as_scikit_learn_refuses_it():
    model = LogisticRegression().fit(X, X[:, 0] > 0)
    fast = fast_predict(model)
    with pytest.raises(ValueError, match="NaN"):
        fast(np.array([[np.nan, 0.0, 0.0, 0.0]]))
