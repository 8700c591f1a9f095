"""Lambda-style functions: a user's ``handler(event, context)``, served by the model server (see bridge.py)."""
