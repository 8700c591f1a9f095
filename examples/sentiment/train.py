"""Train the example sentiment model (TF-IDF + logistic regression, like the seed tutorial).

    python examples/sentiment/train.py [OUT_DIR]     # writes OUT_DIR/model.joblib

The corpus is built here from word lists, so nothing is downloaded. One scikit-learn pipeline
in one joblib file: modelhost serves it with no inference.py.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import joblib
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

POSITIVE = "great amazing love loved wonderful excellent happy fantastic best nice smooth friendly".split()
NEGATIVE = "awful terrible hate hated horrible worst bad broken slow rude delayed disappointing".split()
FILLER = "the flight app service day coffee team support phone hotel food delivery was is so really today".split()


def corpus(n: int, seed: int = 7) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        label = rng.choice(["positive", "negative"])
        words = rng.sample(FILLER, 5) + rng.sample(POSITIVE if label == "positive" else NEGATIVE, 2)
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "model")
    out.mkdir(parents=True, exist_ok=True)
    texts, labels = corpus(2000)
    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression(max_iter=500))
    model.fit(texts, labels)
    joblib.dump(model, out / "model.joblib")
    print(f"wrote {out / 'model.joblib'}")


if __name__ == "__main__":
    main()
