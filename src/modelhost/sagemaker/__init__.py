"""SageMaker's APIs on the platform's port: the control API (AWS JSON 1.1) and request signing."""
