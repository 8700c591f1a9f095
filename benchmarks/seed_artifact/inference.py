"""inference.py of the seed-style sentiment artifact: the tutorial's two pickles behind toolkit handlers.

Copied into the artifact folder next to ``tfidf_vectorizer.pkl`` and ``classifier.pkl``. The
request and response shapes are the seed tutorial's (``{"input": [{"text": ...}]}`` in,
``{"output": [{"label": ...}]}`` out); ``modelhost.yaml`` beside it opts these handlers into
adaptive batching, which is why ``input_fn`` returns a list of texts.
"""

import json
import os

import joblib


def model_fn(model_dir):
    vectorizer = joblib.load(os.path.join(model_dir, "tfidf_vectorizer.pkl"))
    classifier = joblib.load(os.path.join(model_dir, "classifier.pkl"))
    return vectorizer, classifier


def input_fn(input_data, content_type):
    if not content_type.startswith("application/json"):
        raise ValueError(f"this predictor only supports JSON data, not {content_type}")
    return [item["text"] for item in json.loads(input_data)["input"]]


def predict_fn(texts, model):
    vectorizer, classifier = model
    return classifier.predict(vectorizer.transform(texts))


def output_fn(prediction, accept):
    labels = [{"label": "positive" if int(y) == 1 else "negative"} for y in prediction]
    return json.dumps({"output": labels}), "application/json"
