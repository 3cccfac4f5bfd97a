"""Keyword checking for public functions: an unknown keyword is a clear error with a "did you mean"."""

from __future__ import annotations

import difflib
import functools
import inspect
from typing import Any, Callable, Iterable, TypeVar

from workbench.errors import ArgumentError

__all__ = ["checked_keywords", "did_you_mean"]

F = TypeVar("F", bound=Callable[..., Any])


def did_you_mean(name: str, choices: Iterable[str], *, n: int = 1, cutoff: float = 0.6) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices`` to ``name``, or an empty string."""
    close = difflib.get_close_matches(name, sorted(choices), n=n, cutoff=cutoff)
    return f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""


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
                    hints.append(f"{key!r}{did_you_mean(key, names, n=2, cutoff=0.5)}")
                raise ArgumentError(
                    f"{func.__name__}() has no parameter {', '.join(hints)}; it takes {', '.join(names)}"
                )
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
