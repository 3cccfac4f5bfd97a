"""Keyword checking for public functions: an unknown keyword is a clear error with a "did you mean"."""

from __future__ import annotations

import difflib
import functools
import inspect
from typing import Any, Callable, TypeVar

from workbench.errors import ArgumentError

__all__ = ["checked_keywords"]

F = TypeVar("F", bound=Callable[..., Any])


def checked_keywords(func: F) -> F:
    """Wrap ``func`` so that a keyword it does not take raises :class:`ArgumentError` naming its parameters."""
    signature = inspect.signature(func)
    names = [p.name for p in signature.parameters.values()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not takes_any:
            unknown = [k for k in kwargs if k not in names]
            if unknown:
                hints = []
                for key in unknown:
                    close = difflib.get_close_matches(key, names, n=2, cutoff=0.5)
                    hints.append(f"{key!r}" + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""))
                raise ArgumentError(
                    f"{func.__name__}() has no parameter {', '.join(hints)}; it takes {', '.join(names)}"
                )
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
