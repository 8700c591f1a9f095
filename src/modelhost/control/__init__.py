"""The control plane: resources (Model, EndpointConfig, Endpoint) and the store that keeps them.

Work in progress toward issue 3; nothing here runs a process yet.
"""
