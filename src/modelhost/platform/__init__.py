"""``modelhost up``: the control plane, the front door and the local runtime in one process.

``run.py`` is the composition root; nothing is imported here, so that the CLI and the SDK can
read ``defaults`` without loading the server.
"""
