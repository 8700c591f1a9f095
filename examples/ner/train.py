"""Train the example NER model: merchant names in bank-statement lines, as the spaCy seed tutorial does.

    python examples/ner/train.py [OUT_DIR]     # writes a spaCy pipeline folder (label BRD)

A blank English pipeline trained here on made-up statement lines, so nothing is downloaded.
modelhost serves the folder with no inference.py: POST text, get the entities back.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import spacy
from spacy.training import Example

MERCHANTS = ["STARBUCKS", "AMAZON", "UBER", "NETFLIX", "WALMART", "SHELL", "IKEA", "SPOTIFY"]
TEMPLATES = [
    "{m} Vancouver BC",
    "paid {m} online",
    "POS purchase {m} store 042",
    "{m} monthly subscription",
    "card payment to {m}",
    "refund from {m} ref 8812",
]
NO_MERCHANT = ["ATM WITHDRAWAL", "interest charge", "transfer to savings", "monthly account fee"]


def statements(seed: int = 3) -> list[tuple[str, list[tuple[int, int, str]]]]:
    rng = random.Random(seed)
    data = []
    for merchant in MERCHANTS:
        for template in rng.sample(TEMPLATES, 4):
            text = template.format(m=merchant)
            start = text.index(merchant)
            data.append((text, [(start, start + len(merchant), "BRD")]))
    data += [(text, []) for text in NO_MERCHANT]
    rng.shuffle(data)
    return data


def train(out: Path) -> None:
    spacy.util.fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("ner").add_label("BRD")
    examples = [Example.from_dict(nlp.make_doc(text), {"entities": spans}) for text, spans in statements()]
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(25):
        nlp.update(examples, sgd=optimizer, drop=0.1)
    out.mkdir(parents=True, exist_ok=True)
    nlp.to_disk(out)
    found = [(ent.text, ent.label_) for ent in nlp("card payment to SPOTIFY").ents]
    print(f"wrote {out}; 'card payment to SPOTIFY' -> {found}")


if __name__ == "__main__":
    train(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "model"))
