"""How each server wants its texts, and how to read its answer back into the reference outputs.

A dialect turns texts into a request body and a parsed response into one reference-shaped output
per text (what ``expected.json`` holds), so one live answer can be checked before measuring.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Dialect:
    name: str
    encode: Callable[[Sequence[str]], bytes]
    decode: Callable[[Any], list[Any]] | None  # None: nothing to check (no model behind it)


def _json(value: Any) -> bytes:
    """Compact JSON on one line: the wrk script reads one body per line."""
    return json.dumps(value, separators=(",", ":")).encode()


def _text_list(texts: Sequence[str]) -> bytes:
    return _json(list(texts))


def _seed_input(texts: Sequence[str]) -> bytes:
    return _json({"input": [{"text": text} for text in texts]})


def _ner_canonical(texts: Sequence[str]) -> bytes:
    if len(texts) != 1:
        raise ValueError("the canonical NER request holds exactly one text")
    return _json({"text": texts[0]})


def _sklearn_labels(response: Any) -> list[Any]:
    """modelhost's default sklearn answer is the raw class per text: 1 positive, 0 negative."""
    return [{"label": "positive" if int(label) == 1 else "negative"} for label in response]


def _seed_output(response: Any) -> list[Any]:
    return list(response["output"])


def _spacy_entities(response: Any) -> list[Any]:
    return [item["entities"] for item in response]


def _ner_canonical_output(response: Any) -> list[Any]:
    return [response]


MODELHOST_SENTIMENT = Dialect("modelhost sklearn default", _text_list, _sklearn_labels)
MODELHOST_NER = Dialect("modelhost spaCy default", _text_list, _spacy_entities)
SEED_SENTIMENT = Dialect("seed sentiment", _seed_input, _seed_output)
SEED_NER = Dialect("canonical ner", _ner_canonical, _ner_canonical_output)
BARE = Dialect("bare HTTP", _text_list, None)
