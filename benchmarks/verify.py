"""``compliance audit verify`` throughput beside plain hashing of the same canonical bytes.

The engine figure is the command itself, run as a subprocess on the whole database: events
verified over wall time. The physical limit is ``hashlib.sha256`` over canonical bytes computed
beforehand for a sample of the same events (the least any verification must do: one SHA-256 per
event). A middle row, canonical JSON (RFC 8785) and the hash computed in memory from records
already loaded, shows how much of the gap is canonicalisation and how much reading the rows.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from rich.console import Console

from benchmarks.common import AS_OF, Measurement
from compliance import Compliance, FixedClock
from compliance.audit.chain import compute_hash
from compliance.audit.store import LogFilter

MIN_SECONDS = 0.5
T = TypeVar("T")


def compliance_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m compliance``."""
    script = Path(sys.executable).with_name("compliance")
    return [str(script)] if script.exists() else [sys.executable, "-m", "compliance"]


def _rate(work: Sequence[T], fn: Callable[[T], object]) -> float:
    """Events per second of ``fn`` over ``work``, repeated until it has run ``MIN_SECONDS``."""
    done, started = 0, time.perf_counter()
    while True:
        for item in work:
            fn(item)
        done += len(work)
        elapsed = time.perf_counter() - started
        if elapsed >= MIN_SECONDS:
            return done / elapsed


def verify_benchmark(url: str, admin: str, sample: int, console: Console) -> list[Measurement]:
    command = [*compliance_command(), "--db", url, "--as", admin, "audit", "verify", "--json"]
    with console.status("audit verify: the command on the whole database"):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"audit verify failed ({done.returncode}): {done.stderr.strip()}")
    report = json.loads(done.stdout)
    events = int(report["events"])
    with console.status(f"audit verify: canonical bytes of {sample:,} events"):
        with Compliance.open(url, FixedClock(AS_OF)) as app:
            records = app.audit_log(admin, LogFilter(limit=sample))
        blobs = [r.canonical() for r in records]
        hashing = _rate(blobs, lambda b: hashlib.sha256(b).hexdigest())
        in_memory = _rate(records, compute_hash)
    mean_bytes = sum(len(b) for b in blobs) / len(blobs)
    details = {
        "events": events,
        "chains": report["chains"],
        "ok": report["ok"],
        "seconds": round(seconds, 3),
        "command": f"compliance --db URL --as {admin} audit verify --json",
        "sample_events": len(blobs),
        "mean_canonical_bytes": round(mean_bytes, 1),
        "canonical_and_hash_in_memory_events_per_s": round(in_memory, 1),
    }
    group = "Audit verification"
    limit_label = "hashlib.sha256 over pre-computed canonical bytes"
    return [
        Measurement(
            group,
            "compliance audit verify",
            "events/s",
            events / seconds,
            hashing,
            limit_label,
            True,
            None,
            details,
        ),
        Measurement(
            group,
            "RFC 8785 canonical JSON + SHA-256 in memory (part of the above)",
            "events/s",
            in_memory,
            hashing,
            limit_label,
            True,
            None,
            {"sample_events": len(records)},
        ),
    ]
