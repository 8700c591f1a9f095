"""modelhost: turn a saved ML model into a production REST API, keeping SageMaker's contracts."""

__version__ = "0.1.0"

__all__ = ["__version__"]
