"""Start-up: ``compliance --help`` beside ``python -c "import click"``.

All are fresh subprocesses of the same interpreter, run in rotating order after a few untimed
runs; the figure is the median wall time. The limit is what any click program pays before its own
code runs: the interpreter and click.

Bytecode: an installed package is imported from compiled bytecode (pip compiles it at install
time). When this environment forbids writing bytecode (``PYTHONDONTWRITEBYTECODE``) and the
package is installed editable, every start would compile the whole command line from source while
click's bytecode was compiled at install. The target row therefore runs both commands with a
bytecode cache of their own (``PYTHONPYCACHEPREFIX`` in the work folder, filled by the untimed
runs), as an installation runs; a context row shows the environment's own setting when it
differs. The details keep what ``-X importtime`` says the command line imports beyond click.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from benchmarks.common import Measurement
from benchmarks.verify import compliance_command

TARGET = ("<=", 1.5)
WARMUP = 3
LIMIT = 'python -c "import click"'


def cached_environment(work: Path) -> dict[str, str]:
    """This environment with a bytecode cache under ``work`` (and bytecode writing allowed)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str((work / "pycache").resolve())
    return env


def _wall(command: Sequence[str], env: Mapping[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)  # noqa: S603
    return time.perf_counter() - started


def _import_times(code: str, env: Mapping[str, str]) -> dict[str, tuple[int, int]]:
    """``-X importtime`` of ``code``: module -> (self, cumulative) microseconds."""
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    found = {}
    for line in done.stderr.splitlines():
        row = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|\s*(\S+)", line)
        if row:
            found[row.group(3)] = (int(row.group(1)), int(row.group(2)))
    return found


def import_profile(env: Mapping[str, str], top: int = 12) -> dict[str, object]:
    """What the command line imports beyond click: the total and the heaviest modules."""
    click = _import_times("import click", env)
    cli = _import_times("import compliance.cli.main", env)
    extra = {name: t for name, t in cli.items() if name not in click}
    heaviest = sorted(extra.items(), key=lambda item: item[1][0], reverse=True)[:top]
    return {
        "modules_beyond_click": len(extra),
        "self_us_beyond_click": sum(own for own, _ in extra.values()),
        "heaviest_self_us": {name: own for name, (own, _) in heaviest},
    }


def _medians(
    commands: dict[str, tuple[list[str], Mapping[str, str]]], repetitions: int
) -> dict[str, list[float]]:
    for _ in range(WARMUP):
        for command, env in commands.values():
            _wall(command, env)
    times: dict[str, list[float]] = {name: [] for name in commands}
    names = list(commands)
    for i in range(repetitions):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:  # rotate the order
            command, env = commands[name]
            times[name].append(_wall(command, env))
    return times


def startup_benchmark(repetitions: int, work: Path) -> list[Measurement]:
    cached = cached_environment(work)
    own = dict(os.environ)
    help_cmd = [*compliance_command(), "--help"]
    click_cmd = [sys.executable, "-c", "import click"]
    commands: dict[str, tuple[list[str], Mapping[str, str]]] = {
        "help": (help_cmd, cached),
        "click": (click_cmd, cached),
        "import": ([sys.executable, "-c", "import compliance.cli.main"], cached),
    }
    no_bytecode = bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))
    if no_bytecode:
        commands["help_as_configured"] = (help_cmd, own)
        commands["click_as_configured"] = (click_cmd, own)
    times = _medians(commands, repetitions)
    median = {name: statistics.median(values) for name, values in times.items()}
    details = {
        "repetitions": repetitions,
        "command": " ".join(help_cmd),
        "bytecode": "PYTHONPYCACHEPREFIX in the work folder, filled by the untimed runs",
        **{f"{name}_seconds": sorted(round(x, 4) for x in times[name]) for name in commands},
        "imports_beyond_click": import_profile(cached),
    }
    out = [
        Measurement(
            "Start-up",
            "compliance --help (median wall time)",
            "s",
            median["help"],
            median["click"],
            LIMIT,
            False,
            TARGET,
            details,
        ),
        Measurement(
            "Start-up",
            'python -c "import compliance.cli.main" (part of the above)',
            "s",
            median["import"],
            median["click"],
            LIMIT,
            False,
        ),
    ]
    if no_bytecode:
        out.append(
            Measurement(
                "Start-up",
                "compliance --help as this environment runs it (PYTHONDONTWRITEBYTECODE=1: "
                "the editable package compiled from source at every start)",
                "s",
                median["help_as_configured"],
                median["click_as_configured"],
                LIMIT,
                False,
                None,
                {"imports_beyond_click": import_profile(own)},
            )
        )
    return out
