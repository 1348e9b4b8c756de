"""The lazy CLI context: nothing touches the database until a command needs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

import click

from compliance.errors import InvalidInput

if TYPE_CHECKING:
    from compliance.api.service import Compliance


@dataclass
class Context:
    url: str | None = None
    actor: str | None = None
    on_behalf_of: str | None = None
    now: datetime | None = None
    tz: tzinfo | None = None  # --tz / COMPLIANCE_TZ: the zone instants are shown in
    _app: Any = field(default=None, repr=False)

    def app(self, *, create: bool = False) -> Compliance:
        """The API on the chosen database; only commands that make databases pass ``create``."""
        if self._app is None:
            from compliance.api.service import Compliance
            from compliance.clock import FixedClock

            clock = FixedClock(self.now) if self.now is not None else None
            self._app = Compliance.open(
                self.url, clock, simulated=self.now is not None, create=create
            )
        return self._app  # type: ignore[no-any-return]

    def who(self) -> str:
        if not self.actor:
            raise InvalidInput("--as", "name the person acting (--as ID or COMPLIANCE_ACTOR)")
        return self.actor

    def close(self) -> None:
        if self._app is not None:
            self._app.close()


pass_ctx = click.make_pass_decorator(Context)
