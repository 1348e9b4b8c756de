"""``compliance audit verify`` and ``audit export`` beside hand-written programs doing the same.

The engine figures are the commands themselves, run as subprocesses on the whole database:
events over wall time, and the subprocess's peak resident memory (``os.wait4``). The limit of
the verification is an honest hand-written verifier of the same trail in the same run: plain
``sqlite3`` / ``psycopg`` rows in chain order, the same canonical bytes (RFC 8785, which for
these values the C JSON encoder with sorted keys and no whitespace writes), SHA-256, and the link
checks (sequence, each event's previous hash is the preceding event's hash, every chain head
matches). It knows its data, so it checks no value for what the fast encoder cannot write, reads
neither checkpoints nor the subject index, and checks no business table, all of which the command
does. It runs once before and once after the command; the faster run is the limit. The export's
limit is the hand-written equivalent: the same rows written as the same JSON Lines.

A context row puts the hand-written verifier beside ``hashlib.sha256`` alone over canonical bytes
computed beforehand (the least any verification must do: one SHA-256 per event).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from rich.console import Console
from sqlalchemy.engine import make_url

from benchmarks.common import Measurement

MIN_SECONDS = 0.5
GENESIS = "0" * 64
BATCH = 2000
T = TypeVar("T")

#: Every column of an event, the instant already as the hashed text.
_COLUMNS = (
    "id, chain_id, chain_seq, {at}, actor_id, on_behalf_of, action, outcome, {subjects},"
    " state_before, state_after, {reasons}, ruleset_id, {payload}, prev_hash, hash"
    " FROM audit_events"
)
_SQLITE_EVENTS = "SELECT " + _COLUMNS.format(
    at="occurred_at", subjects="subjects", reasons="reason_codes", payload="payload"
)
_PG_EVENTS = "SELECT " + _COLUMNS.format(
    at="""to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')""",
    subjects="subjects::text",
    reasons="reason_codes::text",
    payload="payload::text",
)
_HEADS = "SELECT chain_id, last_seq, last_hash FROM audit_chain_heads"


def compliance_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m compliance``."""
    script = Path(sys.executable).with_name("compliance")
    return [str(script)] if script.exists() else [sys.executable, "-m", "compliance"]


@dataclass(frozen=True)
class Run:
    """One subprocess: its wall and CPU time, peak resident memory, exit status and output."""

    seconds: float
    cpu_seconds: float
    peak_kb: int
    returncode: int
    stdout: str
    stderr: str


def run_measured(command: Sequence[str], keep_stdout: bool = True) -> Run:
    """Run ``command`` and read its own peak RSS from ``wait4`` (``RUSAGE_CHILDREN`` would
    report the largest child this process ever had)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        target: IO[str] | int = out if keep_stdout else subprocess.DEVNULL
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=target, stderr=err)  # noqa: S603
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        cpu = usage.ru_utime + usage.ru_stime
        return Run(seconds, cpu, int(usage.ru_maxrss), process.returncode, out.read(), err.read())


# --- the hand-written verifier and exporter ----------------------------------------------------


def _sqlite_path(url: str) -> str:
    database = make_url(url).database
    if not database:
        raise ValueError(f"no SQLite file in {url!r}")
    return database


def _pg_conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _rows(url: str, order: str) -> Iterator[tuple[Any, ...]]:
    """Every event as a tuple (JSON columns as text, the instant as hashed text), streamed."""
    if make_url(url).get_backend_name() == "sqlite":
        import sqlite3

        with closing(sqlite3.connect(f"file:{_sqlite_path(url)}?mode=ro", uri=True)) as con:
            cursor = con.execute(f"{_SQLITE_EVENTS} ORDER BY {order}")
            cursor.arraysize = BATCH
            for row in cursor:
                at = row[3]
                yield (*row[:3], f"{at[:10]}T{at[11:]}Z", *row[4:])
        return
    import psycopg

    with psycopg.connect(_pg_conninfo(url)) as pg, pg.transaction():
        order = order.replace("chain_id,", 'chain_id COLLATE "C",')
        with pg.cursor(name="events") as named:
            named.itersize = BATCH
            named.execute(f"{_PG_EVENTS} ORDER BY {order}")
            yield from named


def _heads(url: str) -> dict[str, tuple[int, str]]:
    if make_url(url).get_backend_name() == "sqlite":
        import sqlite3

        with closing(sqlite3.connect(f"file:{_sqlite_path(url)}?mode=ro", uri=True)) as con:
            return {c: (s, h) for c, s, h in con.execute(_HEADS)}
    import psycopg

    with psycopg.connect(_pg_conninfo(url)) as pg:
        return {str(c): (int(s), str(h)) for c, s, h in pg.execute(_HEADS)}


@dataclass(frozen=True)
class Verified:
    events: int
    chains: int
    failures: int
    seconds: float
    cpu_seconds: float


def hand_verify(url: str) -> Verified:
    """Links, hashes and heads of every chain, as a program written for this schema does it."""
    encode = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode
    sha256, loads = hashlib.sha256, json.loads
    started, cpu = time.perf_counter(), time.process_time()
    heads = _heads(url)
    events = chains = failures = 0
    chain: str | None = None
    seq, last = 0, GENESIS
    for (
        event_id,
        chain_id,
        chain_seq,
        at,
        actor,
        behalf,
        action,
        outcome,
        subjects,
        before,
        after,
        reasons,
        ruleset,
        payload,
        prev,
        digest,
    ) in _rows(url, "chain_id, chain_seq"):
        if chain_id != chain:
            if chain is not None and heads.get(chain) != (seq, last):
                failures += 1
            chain, seq, last = chain_id, 0, GENESIS
            chains += 1
        if chain_seq != seq + 1 or prev != last:
            failures += 1
        body = {
            "id": event_id,
            "chain": chain_id,
            "seq": chain_seq,
            "at": at,
            "actor": actor,
            "on_behalf_of": behalf,
            "action": action,
            "outcome": outcome,
            "subjects": loads(subjects),
            "state_before": before,
            "state_after": after,
            "reasons": loads(reasons),
            "ruleset": ruleset,
            "payload": loads(payload),
            "prev": prev,
        }
        if sha256(encode(body).encode()).hexdigest() != digest:
            failures += 1
        seq, last = chain_seq, digest
        events += 1
    if chain is not None and heads.get(chain) != (seq, last):
        failures += 1
    failures += abs(len(heads) - chains)
    return Verified(
        events, chains, failures, time.perf_counter() - started, time.process_time() - cpu
    )


def hand_export(url: str) -> tuple[int, float]:
    """Every event as the export's JSON Lines record, written to the null device."""
    line = json.JSONEncoder(ensure_ascii=False, sort_keys=True).encode
    loads = json.loads
    started = time.perf_counter()
    events = 0
    with open(os.devnull, "w", encoding="utf-8") as sink:
        lines: list[str] = []
        for row in _rows(url, "id"):
            lines.append(
                line(
                    {
                        "id": row[0],
                        "chain": row[1],
                        "seq": row[2],
                        "at": row[3],
                        "actor": row[4],
                        "on_behalf_of": row[5],
                        "action": row[6],
                        "outcome": row[7],
                        "subjects": loads(row[8]),
                        "state_before": row[9],
                        "state_after": row[10],
                        "reasons": loads(row[11]),
                        "ruleset": row[12],
                        "payload": loads(row[13]),
                        "prev": row[14],
                        "hash": row[15],
                    }
                )
            )
            if len(lines) == 500:
                sink.write("\n".join(lines) + "\n")
                lines.clear()
            events += 1
        if lines:
            sink.write("\n".join(lines) + "\n")
    return events, time.perf_counter() - started


def _canonical_sample(url: str, sample: int) -> list[bytes]:
    encode = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode
    names = ("subjects", "reasons", "payload")
    blobs = []
    for row in _rows(url, "id"):
        body = dict(
            zip(
                ("id", "chain", "seq", "at", "actor", "on_behalf_of", "action", "outcome"),
                row[:8],
                strict=True,
            )
        )
        body.update(zip(names, (json.loads(row[i]) for i in (8, 11, 13)), strict=True))
        body.update(state_before=row[9], state_after=row[10], ruleset=row[12], prev=row[14])
        blobs.append(encode(body).encode())
        if len(blobs) == sample:
            break
    return blobs


def _rate(work: Sequence[T], fn: Callable[[T], object]) -> float:
    """Items per second of ``fn`` over ``work``, repeated until it has run ``MIN_SECONDS``."""
    done, started = 0, time.perf_counter()
    while True:
        for item in work:
            fn(item)
        done += len(work)
        elapsed = time.perf_counter() - started
        if elapsed >= MIN_SECONDS:
            return done / elapsed


# --- the benchmark -----------------------------------------------------------------------------


def verify_benchmark(url: str, admin: str, sample: int, console: Console) -> list[Measurement]:
    base = [*compliance_command(), "--db", url, "--as", admin, "audit"]
    with console.status("audit verify: the hand-written verifier (before the command)"):
        before = hand_verify(url)
    with console.status("audit verify: the command on the whole database"):
        done = run_measured([*base, "verify", "--json"])
    if done.returncode != 0:
        raise RuntimeError(f"audit verify failed ({done.returncode}): {done.stderr.strip()}")
    with console.status("audit verify: the hand-written verifier (after the command)"):
        after = hand_verify(url)
    report = json.loads(done.stdout)
    events = int(report["events"])
    hand = min(before, after, key=lambda v: v.seconds)
    if hand.failures or hand.events != events:
        raise RuntimeError(
            f"the hand-written verifier disagrees: {hand.failures} failures, {hand.events} events "
            f"against the command's {events}"
        )
    with console.status("audit export: the command, JSON Lines to the null device"):
        exported = run_measured([*base, "export", "--format", "jsonl"], keep_stdout=False)
    if exported.returncode != 0:
        raise RuntimeError(f"audit export failed ({exported.returncode}): {exported.stderr}")
    with console.status("audit export: the hand-written exporter"):
        hand_exported, hand_export_seconds = hand_export(url)
    with console.status(f"audit verify: SHA-256 over {sample:,} canonical byte strings"):
        blobs = _canonical_sample(url, sample)
        hashing = _rate(blobs, lambda b: hashlib.sha256(b).hexdigest())
    hand_rate = hand.events / hand.seconds
    group = "Audit verification"
    hand_label = "hand-written verifier (sqlite3/psycopg, RFC 8785, SHA-256, links, heads)"
    return [
        Measurement(
            group,
            "compliance audit verify",
            "events/s",
            events / done.seconds,
            hand_rate,
            hand_label,
            True,
            (">=", 0.5),
            {
                "events": events,
                "chains": report["chains"],
                "ok": report["ok"],
                "seconds": round(done.seconds, 3),
                "peak_rss_mb": round(done.peak_kb / 1024, 1),
                "command": f"compliance --db URL --as {admin} audit verify --json",
                "cpu_seconds": round(done.cpu_seconds, 3),
                "hand_written_seconds": [round(before.seconds, 3), round(after.seconds, 3)],
                "hand_written_cpu_seconds": [
                    round(before.cpu_seconds, 3),
                    round(after.cpu_seconds, 3),
                ],
            },
        ),
        Measurement(
            group,
            "compliance audit export --format jsonl",
            "events/s",
            hand_exported / exported.seconds,
            hand_exported / hand_export_seconds,
            "hand-written export (the same rows, the same JSON Lines)",
            True,
            None,
            {
                "events": hand_exported,
                "seconds": round(exported.seconds, 3),
                "cpu_seconds": round(exported.cpu_seconds, 3),
                "peak_rss_mb": round(exported.peak_kb / 1024, 1),
                "hand_written_seconds": round(hand_export_seconds, 3),
                "command": f"compliance --db URL --as {admin} audit export --format jsonl",
            },
        ),
        Measurement(
            group,
            "hand-written verifier beside SHA-256 alone (context)",
            "events/s",
            hand_rate,
            hashing,
            "hashlib.sha256 over pre-computed canonical bytes",
            True,
            None,
            {
                "sample_events": len(blobs),
                "mean_canonical_bytes": round(sum(map(len, blobs)) / len(blobs), 1),
            },
        ),
    ]
