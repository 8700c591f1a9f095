"""The front door: one port in front of every endpoint (``/endpoints/{name}/invocations``)."""
