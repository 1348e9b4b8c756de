"""The example timelines shipped inside the package, so they replay by name from any folder."""

from __future__ import annotations

from pathlib import Path

from compliance.errors import InvalidInput

FOLDER = Path(__file__).with_name("timelines")


def names() -> list[str]:
    """Every shipped example, by the name ``compliance simulate`` accepts."""
    return sorted(p.stem for p in FOLDER.glob("*.toml"))


def resolve(argument: str) -> Path:
    """A timeline file: the path given when it is a file, else the shipped example of that name."""
    given = Path(argument)
    if given.is_file():
        return given
    shipped = FOLDER / f"{argument.removesuffix('.toml')}.toml"
    if "/" not in argument and "\\" not in argument and shipped.is_file():
        return shipped
    raise InvalidInput(
        "TIMELINE",
        f"{argument} is neither a file nor a shipped example (one of: {', '.join(names())})",
    )
