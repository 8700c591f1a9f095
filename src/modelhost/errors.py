"""The one error hierarchy of modelhost; every error carries the HTTP status it maps to.

    ModelhostError (500)
     ├── ArtifactError (400)            artifact cannot be fetched, unpacked or recognised
     ├── ResourceError (400)            a control-plane request the state cannot take
     │    ├── ValidationFailed (400)    a field is missing or wrong (the message names it)
     │    ├── ResourceNotFound (404)
     │    ├── ResourceExists (409)
     │    ├── ResourceInUse (409)       still referenced, or in a state that forbids it
     │    │    └── InvalidTransition     the endpoint's status forbids the change now
     │    └── ResourceLimitExceeded (429) more instances than the platform may run
     ├── ModelLoadError (500)           the model (or its inference.py) failed to load
     └── InvocationError (400)          a request the server refuses or cannot answer
          ├── UnsupportedMediaType (415)
          ├── NotAcceptable (406)
          ├── PayloadTooLarge (413)
          ├── RequestTimeout (408)      the client did not send its body in time
          ├── InvalidInput (400)        malformed JSON/CSV/npy, wrong shape
          ├── ModelRaised (500)         the user's model or handler raised
          ├── PredictionTimeout (504)   the model did not answer in time
          └── ServiceUnavailable (503)  the model is not loaded (yet)

Errors become responses in exactly one place, `server.responses.error_body`.
"""

from __future__ import annotations


class ModelhostError(Exception):
    """Base of every error modelhost raises on purpose."""

    status: int = 500
    code: str = "InternalError"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class ArtifactError(ModelhostError):
    status = 400
    code = "ArtifactError"


class ResourceError(ModelhostError):
    status = 400
    code = "ResourceError"


class ValidationFailed(ResourceError):
    status = 400
    code = "ValidationException"


class ResourceNotFound(ResourceError):
    status = 404
    code = "ResourceNotFound"


class ResourceExists(ResourceError):
    status = 409
    code = "ResourceExists"


class ResourceInUse(ResourceError):
    status = 409
    code = "ResourceInUse"


class InvalidTransition(ResourceInUse):
    """The endpoint's status does not allow the change now (e.g. an update while it is Creating)."""


class ResourceLimitExceeded(ResourceError):
    status = 429
    code = "ResourceLimitExceeded"


class ModelLoadError(ModelhostError):
    status = 500
    code = "ModelLoadError"


class InvocationError(ModelhostError):
    status = 400
    code = "InvocationError"


class UnsupportedMediaType(InvocationError):
    status = 415
    code = "UnsupportedMediaType"


class NotAcceptable(InvocationError):
    status = 406
    code = "NotAcceptable"


class PayloadTooLarge(InvocationError):
    status = 413
    code = "PayloadTooLarge"


class RequestTimeout(InvocationError):
    status = 408
    code = "RequestTimeout"


class InvalidInput(InvocationError):
    status = 400
    code = "InvalidInput"


class ModelRaised(InvocationError):
    status = 500
    code = "ModelError"


class PredictionTimeout(InvocationError):
    status = 504
    code = "PredictionTimeout"


class ServiceUnavailable(InvocationError):
    status = 503
    code = "ServiceUnavailable"
