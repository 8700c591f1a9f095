"""modelhost: turn a saved ML model into a production REST API, keeping SageMaker's contracts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Client", "__version__"]

if TYPE_CHECKING:
    from modelhost.client import Client


def __getattr__(name: str) -> Any:
    """``modelhost.Client`` without importing the HTTP client into every model-server process."""
    if name == "Client":
        from modelhost.client import Client

        return Client
    raise AttributeError(f"module 'modelhost' has no attribute {name!r}")
