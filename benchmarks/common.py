"""What every benchmark shares: the simulated instant, statistics, results and database helpers."""

from __future__ import annotations

import math
import os
import re
import statistics
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

# Decisions are taken at this instant (ipledge/2026-mod is in force); the parties were created at
# WORLD_AT, and every generated course lies between the two.
AS_OF = datetime(2027, 6, 1, 15, 0, tzinfo=UTC)
WORLD_AT = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)
ADMIN_KEY = "benchmarks.admin"  # settings key under which the generator remembers its admin

DEFAULT_PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_ADMIN_ENV = "BENCH_PG_URL"
PG_PREFIX = "bench_"


# --- statistics -------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass(frozen=True)
class Stats:
    """Latencies in seconds, summarised."""

    n: int
    mean: float
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        return cls(
            n=len(values),
            mean=statistics.fmean(values) if values else math.nan,
            p50=percentile(values, 50),
            p90=percentile(values, 90),
            p99=percentile(values, 99),
            max=max(values) if values else math.nan,
        )

    def to_dict(self) -> dict[str, float]:
        return {k: (v if isinstance(v, int) else round(v, 9)) for k, v in asdict(self).items()}


# --- results ----------------------------------------------------------------------------------


@dataclass
class Measurement:
    """One row of the report: the engine's figure beside the physical limit of the same work.

    ``higher_is_better`` says how to read ``ratio`` (engine / limit): a throughput ratio should
    be high (the engine's share of the limit's rate), a latency or time ratio low (how many
    times the limit the engine takes). ``target`` is ``(">=" | "<=" | "<", value)`` or None.
    """

    group: str
    name: str
    unit: str
    engine: float
    limit: float
    limit_label: str
    higher_is_better: bool
    target: tuple[str, float] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.engine / self.limit if self.limit else math.nan

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        op, value = self.target
        r = self.ratio
        return {">=": r >= value, "<=": r <= value, "<": r < value, ">": r > value}[op]

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "name": self.name,
            "unit": self.unit,
            "engine": self.engine,
            "limit": self.limit,
            "limit_label": self.limit_label,
            "ratio": self.ratio,
            "higher_is_better": self.higher_is_better,
            "target": None if self.target is None else f"{self.target[0]} {self.target[1]}",
            "met": self.met,
            "details": self.details,
        }


# --- databases --------------------------------------------------------------------------------


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database:
        raise ValueError(f"{url!r} names no SQLite file")
    return Path(database)


def is_postgres(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


def pg_admin_url() -> str:
    return os.environ.get(PG_ADMIN_ENV, DEFAULT_PG_ADMIN_URL)


def pg_url(database: str, admin_url: str | None = None) -> str:
    base = (admin_url or pg_admin_url()).rsplit("/", 1)[0]
    return f"{base}/{database}"


def pg_dsn(url: str) -> str:
    """A libpq connection string from a SQLAlchemy-style URL (``postgresql+psycopg://``)."""
    return re.sub(r"^postgresql\+psycopg://", "postgresql://", url)


def pg_database(url: str) -> str:
    database = make_url(url).database
    if not database or not re.fullmatch(r"[a-z_][a-z0-9_]*", database):
        raise ValueError(f"{url!r}: database names must be lower-case identifiers")
    return database


def pg_reachable(admin_url: str | None = None) -> str | None:
    """None when the server answers, else why not."""
    try:
        with psycopg.connect(admin_url or pg_admin_url(), connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip()
    return None


def _admin(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(pg_dsn(url).rsplit("/", 1)[0] + "/postgres", autocommit=True)


def pg_exists(url: str) -> bool:
    with _admin(url) as conn:
        row = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (pg_database(url),)
        ).fetchone()
    return row is not None


def pg_create(url: str, template: str | None = None) -> None:
    name = pg_database(url)
    suffix = f" TEMPLATE {pg_database(template)}" if template else ""
    with _admin(url) as conn:
        conn.execute(f"CREATE DATABASE {name}{suffix}")


def pg_drop(url: str) -> None:
    with _admin(url) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {pg_database(url)} WITH (FORCE)")


def scratch_pg_url(label: str) -> str:
    """A fresh, unused database name for one benchmark's copy."""
    return pg_url(f"{PG_PREFIX}{label}_{uuid.uuid4().hex[:8]}")


def remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}/s" if value >= 100 else f"{value:,.1f}/s"


def fmt_seconds(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.2f} ms"
    return f"{value * 1e6:.1f} µs"
