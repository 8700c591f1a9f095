"""Small real models built inside the tests: nothing is downloaded."""

from __future__ import annotations

import random
from pathlib import Path

POSITIVE = ["great", "amazing", "love", "wonderful", "excellent", "happy", "fantastic", "best"]
NEGATIVE = ["awful", "terrible", "hate", "horrible", "worst", "bad", "broken", "slow"]
FILLER = ["the", "flight", "app", "service", "day", "coffee", "team", "support", "phone", "was", "so", "today"]


def sentiment_corpus(n: int = 400, seed: int = 3) -> tuple[list[str], list[int]]:
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = rng.sample(FILLER, 4) + rng.sample(POSITIVE if label else NEGATIVE, 2)
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


def sklearn_text_pipeline(out: Path) -> Path:
    """TF-IDF + logistic regression in one joblib file; labels 1 (positive) / 0 (negative)."""
    import joblib
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    out.mkdir(parents=True, exist_ok=True)
    texts, labels = sentiment_corpus()
    joblib.dump(make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(texts, labels), out / "model.joblib")
    return out


def sklearn_two_pickles(out: Path) -> tuple[object, object]:
    """The seed's layout: tfidf_vectorizer.pkl + classifier.pkl, to be wired by an inference.py."""
    import joblib
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    out.mkdir(parents=True, exist_ok=True)
    texts, labels = sentiment_corpus()
    vectorizer = TfidfVectorizer().fit(texts)
    classifier = LogisticRegression().fit(vectorizer.transform(texts), labels)
    joblib.dump(vectorizer, out / "tfidf_vectorizer.pkl")
    joblib.dump(classifier, out / "classifier.pkl")
    return vectorizer, classifier


SEED_INFERENCE_PY = """
import json
import os

import joblib


def model_fn(model_dir):
    return (joblib.load(os.path.join(model_dir, "tfidf_vectorizer.pkl")),
            joblib.load(os.path.join(model_dir, "classifier.pkl")))


def input_fn(body, content_type):
    if content_type != "application/json":
        raise ValueError("only application/json")
    return [item["text"] for item in json.loads(body)["input"]]


def predict_fn(texts, model):
    vectorizer, classifier = model
    return ["positive" if y == 1 else "negative" for y in classifier.predict(vectorizer.transform(texts))]


def output_fn(labels, accept):
    return json.dumps({"output": [{"label": label} for label in labels]}), "application/json"
"""


def seed_sentiment_with_inference_py(out: Path, batching: bool = False) -> Path:
    sklearn_two_pickles(out)
    (out / "inference.py").write_text(SEED_INFERENCE_PY)
    if batching:
        (out / "modelhost.yaml").write_text("batching:\n  enabled: true\n")
    return out


def sklearn_regression(out: Path, n_features: int = 3) -> Path:
    import joblib
    import numpy as np
    from sklearn.linear_model import LinearRegression

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, n_features))
    y = x @ np.arange(1, n_features + 1) + 0.5
    joblib.dump(LinearRegression().fit(x, y), out / "model.pkl")
    return out


def spacy_ner(out: Path) -> Path:
    """A blank English pipeline with an NER trained a few rounds on merchant strings (label BRD)."""
    import spacy
    from spacy.training import Example

    spacy.util.fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("ner").add_label("BRD")
    data = [
        ("STARBUCKS Vancouver", [(0, 9, "BRD")]),
        ("paid AMAZON online", [(5, 11, "BRD")]),
        ("UBER trip help", [(0, 4, "BRD")]),
        ("NETFLIX monthly", [(0, 7, "BRD")]),
        ("coffee at STARBUCKS", [(10, 19, "BRD")]),
        ("ATM WITHDRAWAL", []),
    ]
    examples = [Example.from_dict(nlp.make_doc(t), {"entities": e}) for t, e in data]
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(30):
        nlp.update(examples, sgd=optimizer, drop=0.0)
    out.mkdir(parents=True, exist_ok=True)
    nlp.to_disk(out)
    return out


def tiny_transformer(out: Path, task: str) -> Path:
    """A BERT of 16 hidden units with random weights and a word-level vocabulary, from a config."""
    import torch
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        BertForTokenClassification,
        BertTokenizerFast,
    )

    out.mkdir(parents=True, exist_ok=True)
    words = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "the",
        "a",
        "great",
        "day",
        "bad",
        "awful",
        "starbucks",
        "vancouver",
        "amazon",
        "paid",
        "at",
    ]
    (out / "vocab.txt").write_text("\n".join(words) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(out / "vocab.txt"))
    if task == "token-classification":
        labels = {0: "O", 1: "B-BRD", 2: "I-BRD"}
        model_class = BertForTokenClassification
    else:
        labels = {0: "NEGATIVE", 1: "POSITIVE"}
        model_class = BertForSequenceClassification
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
    )
    torch.manual_seed(0)
    model_class(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def xgboost_booster(out: Path, name: str = "xgboost-model") -> Path:
    """A binary classifier on 4 features; the score rises with the first feature."""
    import numpy as np
    import xgboost

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    y = (x[:, 0] > 0).astype(int)
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": 2}, xgboost.DMatrix(x, label=y), 10)
    suffix = ".json" if name.endswith(".json") else ".ubj"
    booster.save_model(str(out / f"booster{suffix}"))
    (out / f"booster{suffix}").rename(out / name)
    return out


def spacy_transformers_ner(out: Path, scratch: Path) -> Path:
    """A spaCy pipeline with a transformer component (a 16-unit BERT built from a config in
    ``scratch``) and an NER listening to it, trained a few rounds; the BERT folder is removed
    afterwards to show the saved pipeline carries everything it needs."""
    import shutil

    import spacy
    from spacy.training import Example
    from transformers import BertConfig, BertModel, BertTokenizerFast

    bert = scratch / "tiny-bert"
    bert.mkdir(parents=True, exist_ok=True)
    words = "[PAD] [UNK] [CLS] [SEP] [MASK] starbucks vancouver amazon uber paid at online trip help coffee"
    (bert / "vocab.txt").write_text("\n".join(words.split()) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(bert / "vocab.txt"), do_lower_case=True)
    config = BertConfig(
        vocab_size=len(words.split()),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(bert)
    tokenizer.save_pretrained(bert)

    spacy.util.fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "transformer",
        config={
            "model": {
                "@architectures": "spacy-transformers.TransformerModel.v3",
                "name": str(bert),
                "tokenizer_config": {"use_fast": True},
                "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 32, "stride": 24},
            }
        },
    )
    listener = {
        "@architectures": "spacy-transformers.TransformerListener.v1",
        "grad_factor": 1.0,
        "upstream": "transformer",
        "pooling": {"@layers": "reduce_mean.v1"},
    }
    ner_model = {
        "@architectures": "spacy.TransitionBasedParser.v2",
        "state_type": "ner",
        "extra_state_tokens": False,
        "hidden_width": 16,
        "maxout_pieces": 2,
        "use_upper": False,
        "tok2vec": listener,
    }
    nlp.add_pipe("ner", config={"model": ner_model}).add_label("BRD")
    data = [("STARBUCKS Vancouver", [(0, 9, "BRD")]), ("paid AMAZON online", [(5, 11, "BRD")])]
    examples = [Example.from_dict(nlp.make_doc(t), {"entities": e}) for t, e in data]
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(10):
        nlp.update(examples, sgd=optimizer)
    nlp.to_disk(out)
    shutil.rmtree(bert)
    return out
