"""Errors of the serving layer; each carries the HTTP status it maps to."""

from __future__ import annotations

from workbench.errors import WorkbenchError

__all__ = [
    "AuthError",
    "BadRequest",
    "ModelFailure",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "ServingError",
]


class ServingError(WorkbenchError):
    """A serving call failed; ``status`` is the HTTP status code, ``message`` the server's text.

    Parameters
    ----------
    status
        HTTP status code (400, 401, 403, 404, 413, 500, 503...).
    message
        What went wrong, naming the input and what was expected.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = int(status)
        self.message = str(message)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.status, self.message))


class AuthError(ServingError):
    """Authentication (401) or authorisation (403) failed."""


class BadRequest(ServingError, ValueError):
    """The request is malformed (400)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(status, message)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.message, self.status))


class NotFound(ServingError, LookupError):
    """The serving, model, version or label does not exist (404)."""

    def __init__(self, message: str) -> None:
        super().__init__(404, message)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.message,))


class PayloadTooLarge(ServingError):
    """The request body exceeds the server's limit (413)."""

    def __init__(self, message: str) -> None:
        super().__init__(413, message)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.message,))


class Overloaded(ServingError):
    """The server's queue is full or the model is not loaded yet (503)."""

    def __init__(self, message: str) -> None:
        super().__init__(503, message)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.message,))


class ModelFailure(ServingError):
    """The model raised while predicting (500)."""

    def __init__(self, message: str) -> None:
        super().__init__(500, message)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.message,))
