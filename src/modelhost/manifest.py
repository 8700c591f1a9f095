"""``modelhost.yaml``: what an artifact may say about itself instead of being sniffed.

framework: sklearn          # sklearn | spacy | transformers | xgboost | custom
task: text-classification   # transformers only
model_file: model.joblib    # which file to load when there are several
program: inference.py       # the handler script (SAGEMAKER_PROGRAM wins)
batching:
  enabled: true             # custom handlers opt in here
  max_batch_size: 32
  max_delay_ms: 2
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelhost.errors import ArtifactError

MANIFEST_NAME = "modelhost.yaml"
Framework = Literal["sklearn", "spacy", "transformers", "xgboost", "custom"]


class BatchingManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool | None = None
    max_batch_size: int | None = Field(default=None, ge=1, le=4096)
    max_delay_ms: float | None = Field(default=None, ge=0, le=10_000)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    framework: Framework | None = None
    task: str | None = None
    model_file: str | None = None
    program: str | None = None
    batching: BatchingManifest = BatchingManifest()


def read_manifest(model_dir: Path) -> Manifest:
    """The artifact's manifest, or an empty one; a bad manifest is an error that names the field."""
    path = model_dir / MANIFEST_NAME
    if not path.is_file():
        return Manifest()
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ArtifactError(f"{MANIFEST_NAME} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ArtifactError(f"{MANIFEST_NAME} must be a mapping of settings")
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ArtifactError(f"{MANIFEST_NAME}: {problems}") from exc
