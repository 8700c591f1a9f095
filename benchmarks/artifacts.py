"""The model folders the benchmark serves, built from the workload files under ``.cache/benchmarks``.

    sentiment-pipeline/  model.joblib: one sklearn Pipeline, what modelhost serves with no code
    sentiment-seed/      the seed tutorial's two pickles + inference.py + modelhost.yaml (batching)

The NER scenario serves the workload's spaCy folder as it is, so it needs nothing built here.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

SEED_TEMPLATE = Path(__file__).parent / "seed_artifact"
PICKLES = ("tfidf_vectorizer.pkl", "classifier.pkl")


def sentiment_pipeline(sentiment_dir: Path, out_root: Path) -> Path:
    """Join the vectorizer and the classifier into one Pipeline; rebuilt only when they change."""
    folder = out_root / "sentiment-pipeline"
    target = folder / "model.joblib"
    newest_source = max((sentiment_dir / name).stat().st_mtime for name in PICKLES)
    if target.is_file() and target.stat().st_mtime >= newest_source:
        return folder

    import joblib
    from sklearn.pipeline import make_pipeline

    vectorizer, classifier = (joblib.load(sentiment_dir / name) for name in PICKLES)
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / ".model.joblib.tmp"
    joblib.dump(make_pipeline(vectorizer, classifier), staging)
    os.replace(staging, target)  # a run cut short never leaves half a model behind
    return folder


def sentiment_seed(sentiment_dir: Path, out_root: Path) -> Path:
    """The seed layout: the two pickles wired together by an inference.py, with batching opted in."""
    folder = out_root / "sentiment-seed"
    folder.mkdir(parents=True, exist_ok=True)
    for name in PICKLES:
        shutil.copy2(sentiment_dir / name, folder / name)
    for name in ("inference.py", "modelhost.yaml"):
        shutil.copy2(SEED_TEMPLATE / name, folder / name)
    return folder
