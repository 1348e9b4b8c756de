"""compliance: pregnancy-prevention programme engine for teratogenic drugs.

Importing the package is cheap: the database layer loads only when ``Compliance`` is first used,
so the command line starts fast and no engine exists until a host opens one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Compliance",
    "FixedClock",
    "SystemClock",
    "__version__",
    "errors",
]

if TYPE_CHECKING:
    from compliance import errors
    from compliance.api.service import Compliance
    from compliance.clock import FixedClock, SystemClock


def __getattr__(name: str) -> Any:
    if name == "Compliance":
        from compliance.api.service import Compliance

        return Compliance
    if name in {"FixedClock", "SystemClock"}:
        from compliance import clock

        return getattr(clock, name)
    if name == "errors":
        from compliance import errors

        return errors
    raise AttributeError(f"module 'compliance' has no attribute {name!r}")
