"""Whole-population commands at two data sizes, and single-patient commands beside click.

Every row runs the installed ``compliance`` command as a subprocess on a generated database, as
an operator would: ``due`` across every patient (as the administrator), ``rules impact
ipledge/2023-03`` (the generated courses are on ``ipledge/2026-mod``, so every course is judged),
``audit verify`` and ``audit export --format jsonl`` of the whole trail, and the single-patient
``status PATIENT`` (as the patient's prescriber) and ``dispense check PRESCRIPTION`` (as a
pharmacist). Decisions are taken at the benchmarks' simulated instant (``--now``).

Sizes: two databases per backend with the same shape (20 audit events per patient), the larger
four (quick) or ten (full) times the smaller, so each cost is reported per course or per event
at both sizes, with the growth factor between them: 1.0 is linear growth, below 1.0 a fixed
start-up amortised over more work, above 1.0 a cost per unit that rises with the population.

Wall time and peak memory come from a small wrapper interpreter that spawns the command and
waits for it with ``os.wait4``: the wall time around that one child, and the larger of that
child's own maximum resident set (Linux ``ru_maxrss``) and the peak, sampled every 20 ms, of the
summed resident sets of the child and every process it started (``rules impact`` judges in two
processes). ``RUSAGE_CHILDREN`` would be the running maximum over
every child so far, and a child forked from the benchmark process itself inherits that
process's high-water mark; the wrapper is too small (about 10 MB) to hide anything. The
commands run from a bytecode cache of their own, as an installed package does (see
``benchmarks/startup.py``), filled by one untimed run of each command on the smaller database
of each backend. A population command is then timed once per size; the single-patient
commands and ``python -c "import click"`` rotate over several runs after untimed ones, and the
figure is the median.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy import text

from benchmarks.common import AS_OF, Measurement, fmt_seconds, is_postgres
from benchmarks.dispense import pharmacists, ready_patients
from benchmarks.history import common_cycle, refresh_statistics
from compliance.db.engine import make_engine

#: The population the goals are stated for.
GOAL_PATIENTS = 100_000
GOAL_EVENTS = 2_000_000
SINGLE_TARGET = ("<=", 5.0)  # a single-patient command against python -c "import click"
FLAT_TARGET = ("<=", 1.25)  # peak memory at the larger size against the smaller
WARMUP = 3
LIMIT = 'python -c "import click"'
NOW = AS_OF.isoformat()
# The worklist is drawn the morning after the data was written (the generator writes, and
# indexes, every course at AS_OF): a course changed on the day asked about is always read.
NEXT_MORNING = (AS_OF + timedelta(hours=18)).isoformat()

#: Provides the database of (backend, patients, events): its generator manifest (url, admin, ...).
Provider = Callable[[str, int, int], Mapping[str, Any]]


@dataclass(frozen=True)
class Operation:
    key: str
    label: str
    args: tuple[str, ...]
    unit: str  # what the cost is counted per: "course" or "event"
    goal_seconds: float
    memory_budget_mb: float | None = None
    flat_memory: bool = False


OPERATIONS = (
    Operation("due", "compliance due (all patients)", ("due", "--json"), "course", 2.0),
    Operation(
        "impact",
        "compliance rules impact ipledge/2023-03",
        ("rules", "impact", "ipledge/2023-03", "--json"),
        "course",
        15.0,
        memory_budget_mb=200.0,
        flat_memory=True,
    ),
    Operation(
        "verify",
        "compliance audit verify",
        ("audit", "verify", "--json"),
        "event",
        60.0,
        flat_memory=True,
    ),
    Operation(
        "export",
        "compliance audit export --format jsonl",
        ("audit", "export", "--format", "jsonl"),
        "event",
        60.0,
        flat_memory=True,
    ),
)


def compliance_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m compliance``."""
    script = Path(sys.executable).with_name("compliance")
    return [str(script)] if script.exists() else [sys.executable, "-m", "compliance"]


def cached_environment(work: Path) -> dict[str, str]:
    """This environment with a bytecode cache under ``work`` (and bytecode writing allowed)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str((work / "pycache").resolve())
    return env


@dataclass(frozen=True)
class Run:
    seconds: float
    cpu_seconds: float  # the child's user + system time: less sensitive to a busy machine
    peak_rss_mb: float
    returncode: int


# Spawns the command, waits for it with wait4 and writes [seconds, CPU seconds, peak KiB, exit
# code] to the file in argv[1]. Linux carries the parent's memory high-water mark over fork and
# exec into the child's ru_maxrss, so the command is started from this small interpreter (about
# 10 MB), never from the benchmark process itself (over 100 MB with the engine loaded). A
# command may start processes of its own (``rules impact`` judges in two): every 20 ms the
# resident sets of the command and all its descendants are summed from /proc, and the peak is
# the larger of that sum's maximum and the command's own ru_maxrss. The CPU time from wait4
# includes the descendants the command waited for.
_WRAPPER = """\
import json, os, sys, time
def tree(pid):
    found = [pid]
    for p in found:
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                found.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return found
def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, IndexError, ValueError):
        return 0
started = time.perf_counter()
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
summed = 0
while True:
    done, status, usage = os.wait4(pid, os.WNOHANG)
    if done:
        break
    summed = max(summed, sum(rss_kib(p) for p in tree(pid)))
    time.sleep(0.02)
seconds = time.perf_counter() - started
with open(sys.argv[1], "w") as out:
    cpu = usage.ru_utime + usage.ru_stime
    peak = max(usage.ru_maxrss, summed)
    json.dump([seconds, cpu, peak, os.waitstatus_to_exitcode(status)], out)
"""


def run_measured(
    command: Sequence[str], env: Mapping[str, str], stdout: Path | None, stderr: Path
) -> Run:
    """One run of ``command``: its wall time and its own peak resident set (see ``_WRAPPER``)."""
    measured = stderr.with_suffix(".run")
    with (
        stdout.open("wb") if stdout else open(os.devnull, "wb") as out,
        stderr.open("wb") as err,
    ):
        subprocess.run(  # noqa: S603
            [sys.executable, "-c", _WRAPPER, str(measured), *command],
            stdout=out,
            stderr=err,
            env=env,
            check=True,
        )
    seconds, cpu, rss_kib, code = json.loads(measured.read_text())
    measured.unlink()
    return Run(float(seconds), float(cpu), int(rss_kib) / 1024, int(code))


def _scalar(url: str, sql: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(sql)).scalar_one())
    finally:
        engine.dispose()


def _lines(path: Path) -> int:
    count = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            count += chunk.count(b"\n")
    return count


def _population_run(
    op: Operation, url: str, admin: str, env: Mapping[str, str], scratch: Path
) -> dict[str, Any]:
    """Run ``op`` once on ``url`` and say how much it did."""
    out, err = scratch / f"{op.key}.out", scratch / f"{op.key}.err"
    now = NEXT_MORNING if op.key == "due" else NOW
    command = [*compliance_command(), "--db", url, "--as", admin, "--now", now, *op.args]
    try:
        run = run_measured(command, env, out, err)
        if run.returncode != 0:
            problem = err.read_text(errors="replace").strip()[-2000:]
            raise RuntimeError(f"{' '.join(op.args)} failed ({run.returncode}): {problem}")
        found: dict[str, Any] = {"output_bytes": out.stat().st_size}
        if op.key == "due":
            found["flags"] = len(json.loads(out.read_bytes()))
            found["units"] = _scalar(
                url, "SELECT count(*) FROM courses WHERE is_open OR pregnancy_actions"
            )
        elif op.key == "impact":
            found["units"] = _scalar(url, "SELECT count(*) FROM courses WHERE is_open")
        elif op.key == "verify":
            report = json.loads(out.read_bytes())
            if not report["ok"]:
                raise RuntimeError(f"audit verify found a break: {report['first_break']}")
            found["units"], found["chains"] = int(report["events"]), int(report["chains"])
        else:
            found["units"] = _lines(out)
    finally:
        out.unlink(missing_ok=True)
        err.unlink(missing_ok=True)
    seconds = run.seconds
    return {
        **found,
        "seconds": round(seconds, 4),
        "cpu_seconds": round(run.cpu_seconds, 4),
        "peak_rss_mb": round(run.peak_rss_mb, 1),
        "seconds_per_unit": seconds / found["units"] if found["units"] else math.nan,
    }


#: The single-patient commands: key -> label. Each runs twice: answered by a resident process
#: (``compliance resident start``; the target row) and in a fresh process of its own (context).
SINGLE_COMMANDS = (
    ("status", "compliance status PATIENT"),
    ("dispense_check", "compliance dispense check PRESCRIPTION"),
)
RESIDENT_SUFFIX = "_resident"


def _single_patient(
    url: str, env: Mapping[str, str], repetitions: int, scratch: Path
) -> dict[str, Any]:
    """Median wall time of ``status`` and ``dispense check`` beside ``import click``, each both
    in a fresh process (``COMPLIANCE_RESIDENT=off``) and answered by a resident process started
    for the measurement (its own socket in ``scratch``, the same bytecode cache), in one rotation.

    The CPU time of a resident run is the launcher's only: the forked child that does the work
    is the resident process's child, not the wrapper's."""
    cycle, _ = common_cycle(url)
    pool = ready_patients(url, cycle)
    chosen = pool[len(pool) // 2]
    pharmacist = pharmacists(url)[0]
    base = [*compliance_command(), "--db", url, "--now", NOW]
    fresh = {**env, "COMPLIANCE_RESIDENT": "off"}
    folder = scratch / "resident"
    folder.mkdir(mode=0o700, exist_ok=True)
    folder.chmod(0o700)
    resident = {**env, "COMPLIANCE_RESIDENT_SOCKET": str(folder / "resident.sock")}
    argv = {
        "status": [*base, "--as", chosen.prescriber, "status", chosen.patient],
        "dispense_check": [*base, "--as", pharmacist, "dispense", "check", chosen.prescription],
    }
    commands: dict[str, tuple[list[str], Mapping[str, str]]] = {
        **{key: (argv[key], fresh) for key, _ in SINGLE_COMMANDS},
        **{key + RESIDENT_SUFFIX: (argv[key], resident) for key, _ in SINGLE_COMMANDS},
        "click": ([sys.executable, "-c", "import click"], env),
    }
    err = scratch / "single.err"
    names = list(commands)
    runs: dict[str, list[Run]] = {name: [] for name in names}
    control = [*compliance_command(), "resident"]
    subprocess.run([*control, "start"], env=resident, check=True, stdout=subprocess.DEVNULL)  # noqa: S603
    try:
        for i in range(WARMUP + repetitions):
            shift = i % len(names)
            for name in names[shift:] + names[:shift]:  # rotate the order
                command, command_env = commands[name]
                run = run_measured(command, command_env, None, err)
                if run.returncode != 0:
                    problem = err.read_text(errors="replace").strip()
                    raise RuntimeError(f"{name} failed ({run.returncode}): {problem}")
                if i >= WARMUP:
                    runs[name].append(run)
        served = subprocess.run(  # noqa: S603
            [*control, "status", "--json"], env=resident, check=True, capture_output=True
        )
    finally:
        err.unlink(missing_ok=True)
        subprocess.run([*control, "stop"], env=resident, check=False, capture_output=True)  # noqa: S603
    return {
        "patient": chosen.patient,
        "prescriber": chosen.prescriber,
        "prescription": chosen.prescription,
        "pharmacist": pharmacist,
        "repetitions": repetitions,
        "resident_process": json.loads(served.stdout),
        **{
            name: {
                "median_seconds": statistics.median(r.seconds for r in rs),
                "median_cpu_seconds": statistics.median(r.cpu_seconds for r in rs),
                "seconds": sorted(round(r.seconds, 4) for r in rs),
                "peak_rss_mb": round(max(r.peak_rss_mb for r in rs), 1),
            }
            for name, rs in runs.items()
        },
    }


def population_benchmark(
    backends: Sequence[str],
    sizes: Sequence[tuple[int, int]],
    repetitions: int,
    provide: Provider,
    work: Path,
    console: Console,
) -> tuple[list[Measurement], dict[str, Any]]:
    """Measure every operation on each backend at each size; the rows and the detailed runs."""
    env = cached_environment(work)
    scratch = work / "population"
    scratch.mkdir(parents=True, exist_ok=True)
    found: dict[str, Any] = {"sizes": [list(s) for s in sizes], "backends": {}}
    for backend in backends:
        name = "SQLite" if backend == "sqlite" else "PostgreSQL"
        per_size = []
        for n, (patients, events) in enumerate(sizes):
            made = provide(backend, patients, events)
            url, admin = str(made["url"]), str(made["admin"])
            if is_postgres(url):
                refresh_statistics(url)
            if n == 0:  # untimed: compiles the bytecode the commands (and this driver) import
                with console.status(f"{name}: one untimed run of each command"):
                    for op in OPERATIONS:
                        _population_run(op, url, admin, env, scratch)
            runs = {}
            for op in OPERATIONS:
                with console.status(f"{name}, {patients:,} patients: {op.label}"):
                    runs[op.key] = _population_run(op, url, admin, env, scratch)
                console.print(
                    f"{name}, {patients:,} patients: {op.label}: {runs[op.key]['seconds']:.2f} s,"
                    f" {runs[op.key]['peak_rss_mb']:.0f} MB"
                )
            with console.status(f"{name}, {patients:,} patients: single-patient commands"):
                single = _single_patient(url, env, repetitions, scratch)
            per_size.append(
                {
                    "patients": made["patients"],
                    "events": made["events"],
                    "operations": runs,
                    "single_patient": single,
                }
            )
        found["backends"][name] = per_size
    return measurements(found), found


def projection(small: Mapping[str, Any], large: Mapping[str, Any], patients: int) -> float:
    """The wall time at ``GOAL_PATIENTS`` if the cost kept growing as between the two sizes:
    the larger run plus the marginal cost per unit (between the two runs) for the units a
    population of that size would add. A projection, not a measurement: it assumes the growth
    stays linear, which only a run at that size shows."""
    marginal = (large["seconds"] - small["seconds"]) / max(large["units"] - small["units"], 1)
    units_at_goal = large["units"] * GOAL_PATIENTS / patients
    return float(large["seconds"] + max(marginal, 0.0) * (units_at_goal - large["units"]))


def _size_label(entry: Mapping[str, Any]) -> str:
    return f"{entry['patients']:,} patients / {entry['events']:,} events"


def measurements(found: Mapping[str, Any]) -> list[Measurement]:
    """The report's rows from the detailed runs."""
    out: list[Measurement] = []
    for name, per_size in found["backends"].items():
        for op in OPERATIONS:
            for entry in per_size:
                run = entry["operations"][op.key]
                at_goal = entry["patients"] >= GOAL_PATIENTS
                out.append(
                    Measurement(
                        "Population wall time",
                        f"{name}: {op.label}, {_size_label(entry)}",
                        "s",
                        run["seconds"],
                        op.goal_seconds,
                        "the goal's time budget, stated at 100,000 patients / 2 million events"
                        " (a target only at that size)",
                        False,
                        ("<=", 1.0) if at_goal else None,
                        {**run, "unit": op.unit},
                    )
                )
            if len(per_size) < 2:
                continue
            small, large = per_size[0], per_size[-1]
            a, b = small["operations"][op.key], large["operations"][op.key]
            out.append(
                Measurement(
                    "Population growth",
                    f"{name}: {op.label}, wall time per {op.unit} at "
                    f"{large['patients']:,} against {small['patients']:,} patients",
                    "s",
                    b["seconds_per_unit"],
                    a["seconds_per_unit"],
                    "the same command's cost per course / event on the smaller database",
                    False,
                    None,
                    {
                        "units": [a["units"], b["units"]],
                        "seconds": [a["seconds"], b["seconds"]],
                        "marginal_seconds_per_unit": (b["seconds"] - a["seconds"])
                        / max(b["units"] - a["units"], 1),
                        "linear_projection_at_goal_seconds": projection(a, b, large["patients"]),
                    },
                )
            )
            out.append(
                Measurement(
                    "Population memory",
                    f"{name}: {op.label}, peak RSS at {large['patients']:,} against "
                    f"{small['patients']:,} patients",
                    "MB",
                    b["peak_rss_mb"],
                    a["peak_rss_mb"],
                    "the same command's peak RSS on the smaller database",
                    False,
                    FLAT_TARGET if op.flat_memory else None,
                    {"peak_rss_mb": [a["peak_rss_mb"], b["peak_rss_mb"]]},
                )
            )
            if op.memory_budget_mb is not None:
                out.append(
                    Measurement(
                        "Population memory budget",
                        f"{name}: {op.label}, peak RSS at {large['patients']:,} patients",
                        "MB",
                        b["peak_rss_mb"],
                        op.memory_budget_mb,
                        "the goal's memory budget (a target only at 100,000 patients)",
                        False,
                        ("<=", 1.0) if large["patients"] >= GOAL_PATIENTS else None,
                    )
                )
        for entry in per_size:
            single = entry["single_patient"]
            click = single["click"]["median_seconds"]
            for key, label in SINGLE_COMMANDS:
                for suffix, how, target in (
                    (RESIDENT_SUFFIX, "answered by a resident process", SINGLE_TARGET),
                    ("", "in a fresh process", None),
                ):
                    if key + suffix not in single:  # a run from before the resident process
                        continue
                    out.append(
                        Measurement(
                            "Single-patient command",
                            f"{name}: {label}, {how}, {_size_label(entry)} (median wall time)",
                            "s",
                            single[key + suffix]["median_seconds"],
                            click,
                            LIMIT + " (same bytecode cache, same rotation)",
                            False,
                            target,
                            {**single[key + suffix], "repetitions": single["repetitions"]},
                        )
                    )
    return out


def _mb(value: float) -> str:
    return f"{value:,.0f} MB"


def _per_unit(value: float) -> str:
    return fmt_seconds(value)


def render(found: Mapping[str, Any]) -> list[str]:
    """Markdown lines for the report: every run, per size, with its cost per unit."""
    lines = [
        "| backend | command | patients | events | counted | wall | CPU | per unit | growth | "
        "peak RSS | goal |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, per_size in found["backends"].items():
        for op in OPERATIONS:
            first = per_size[0]["operations"][op.key]["seconds_per_unit"]
            for entry in per_size:
                run = entry["operations"][op.key]
                growth = run["seconds_per_unit"] / first if first else math.nan
                goal = f"≤ {op.goal_seconds:g} s" + (
                    f", ≤ {op.memory_budget_mb:g} MB" if op.memory_budget_mb else ""
                )
                if op.flat_memory:
                    goal += ", memory flat"
                lines.append(
                    f"| {name} | `{op.label}` | {entry['patients']:,} | {entry['events']:,} | "
                    f"{run['units']:,} {op.unit}s | {run['seconds']:.2f} s | "
                    f"{run.get('cpu_seconds', math.nan):.2f} s | "
                    f"{_per_unit(run['seconds_per_unit'])} | {growth:.2f}x | "
                    f"{_mb(run['peak_rss_mb'])} | {goal} at 100,000 |"
                )
        for entry in per_size:
            single = entry["single_patient"]
            click = single["click"]["median_seconds"]
            for key, label in (
                ("status", "compliance status PATIENT"),
                ("dispense_check", "compliance dispense check RX"),
                ("status" + RESIDENT_SUFFIX, "compliance status PATIENT (resident)"),
                ("dispense_check" + RESIDENT_SUFFIX, "compliance dispense check RX (resident)"),
            ):
                if key not in single:
                    continue
                s = single[key]
                lines.append(
                    f"| {name} | `{label}` | {entry['patients']:,} | {entry['events']:,} | "
                    f"1 patient | {s['median_seconds'] * 1e3:,.0f} ms | "
                    f"{s.get('median_cpu_seconds', math.nan) * 1e3:,.0f} ms | — | — | "
                    f"{_mb(s['peak_rss_mb'])} | ≤ 5 x click ({click * 1e3:,.0f} ms): "
                    f"{s['median_seconds'] / click:.1f} x |"
                )
    projected: list[str] = []
    for name, per_size in found["backends"].items():
        if len(per_size) < 2 or per_size[-1]["patients"] >= GOAL_PATIENTS:
            continue  # a run at the goal's size measures it: nothing to project
        small, large = per_size[0], per_size[-1]
        for op in OPERATIONS:
            a, b = small["operations"][op.key], large["operations"][op.key]
            marginal = (b["seconds"] - a["seconds"]) / max(b["units"] - a["units"], 1)
            shown = _per_unit(marginal) if marginal > 0 else "none measured (noise)"
            projected.append(
                f"| {name} | `{op.label}` | {shown} | "
                f"{projection(a, b, large['patients']):,.1f} s | {op.goal_seconds:g} s |"
            )
    if projected:
        lines += [
            "",
            "| backend | command | marginal cost per unit | linear projection at 100,000 patients"
            " | goal |",
            "|---|---|---:|---:|---:|",
            *projected,
            "",
            "The marginal cost is the difference between the two runs over the difference in"
            " units (the start-up cancels out); the projection adds that cost for the units a"
            " population of 100,000 would hold to the larger run. It assumes linear growth: only"
            " a run at that size (full mode) measures it.",
        ]
    lines += [
        "",
        "*per unit* is the wall time over the courses (`due`: open courses; `rules impact`: "
        "in-flight courses) or audit events the command covered; *growth* is that cost against "
        "the smaller database's (1.0: linear; below: a fixed start-up spread over more work). "
        "CPU is the user + system time of the command and the processes it started (less "
        "sensitive than the wall time to other work on the machine). Peak RSS is the larger of "
        "the command's own (`os.wait4` in a small wrapper) and the sampled peak of the sum over "
        "the command and the processes it started (`rules impact` and `audit verify` work in "
        "two). A population command was timed once per size (after one untimed run of each "
        "on the smaller database); the single-patient figures are medians of rotated runs.",
        "",
    ]
    return lines
