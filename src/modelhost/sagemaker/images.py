"""Which modelhost runtime a SageMaker ``PrimaryContainer.Image`` stands for.

    modelhost                     the framework is detected from the artifact
    modelhost/<framework>[:tag]   that framework (also modelhost-<framework>, under any registry)
    anything else                 recorded as given (an ECR URI of a built-in algorithm, a BYOC
                                  image); the framework is detected from the artifact

modelhost runs no containers: every image is served by its own model server, which speaks the
same container contract (``/ping``, ``/invocations``, ``inference.py``).
"""

from __future__ import annotations

from modelhost.control.resources import FRAMEWORKS
from modelhost.errors import ValidationFailed

ACCEPTED = ("modelhost", *(f"modelhost/{framework}" for framework in FRAMEWORKS))


def framework_for(image: str | None) -> str | None:
    """The framework ``image`` names, or None when it is to be detected from the artifact."""
    if not image:
        return None
    name = image.split("@", 1)[0]
    last_slash = name.rfind("/")
    if ":" in name[last_slash + 1 :]:
        name = name[: name.rindex(":")]
    parts = name.split("/")
    for index, part in enumerate(parts):
        if part == "modelhost":
            if index == len(parts) - 1:
                return None
            return _known(parts[index + 1], image)
        if part.startswith("modelhost-") and index == len(parts) - 1:
            return _known(part.removeprefix("modelhost-"), image)
    return None


def _known(framework: str, image: str) -> str:
    if framework not in FRAMEWORKS:
        raise ValidationFailed(
            f"PrimaryContainer.Image: {image!r} names no modelhost runtime; use one of {', '.join(ACCEPTED)} "
            "(or any other image: its framework is then detected from the artifact)"
        )
    return framework
