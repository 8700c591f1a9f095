"""Defaults the platform and its clients share (kept import-free: the CLI reads them)."""

DEFAULT_PORT = 7070
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
