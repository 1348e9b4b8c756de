"""What the benchmarks ran on: CPU, cores, memory, software versions, the disk and its fsync."""

from __future__ import annotations

import contextlib
import os
import platform
import sqlite3
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.common import pg_admin_url, remove_sqlite


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def _hypervisor() -> str | None:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    if " hypervisor" not in flags:
        return "none (bare metal)"
    vendor = Path("/sys/class/dmi/id/sys_vendor")
    try:
        return f"virtual machine ({vendor.read_text().strip()})"
    except OSError:
        return "virtual machine"


def _disk(folder: Path) -> dict[str, Any]:
    """The device holding ``folder``: name, size, whether it claims to rotate, its model."""
    folder = folder.resolve()
    best: tuple[str, str, str] = ("", "", "")
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, fstype = line.split()[:3]
            if str(folder).startswith(mount) and len(mount) > len(best[1]):
                best = (device, mount, fstype)
    except OSError:
        pass
    stat = os.statvfs(folder)
    out: dict[str, Any] = {
        "device": best[0] or None,
        "mount": best[1] or None,
        "filesystem": best[2] or None,
        "size_gib": round(stat.f_blocks * stat.f_frsize / 1024**3, 1),
        "free_gib": round(stat.f_bavail * stat.f_frsize / 1024**3, 1),
    }
    name = Path(best[0]).name if best[0] else ""
    block = Path("/sys/block") / name
    if name and block.exists():
        with contextlib.suppress(OSError):
            out["rotational"] = (block / "queue" / "rotational").read_text().strip() == "1"
        model = block / "device" / "model"
        if model.exists():
            out["model"] = model.read_text().strip()
    return out


def sqlite_commit_seconds(folder: Path, commits: int = 200) -> float:
    """Median time of a one-row WAL commit with synchronous=FULL: the disk's flush cost."""
    path = folder / "fsync-probe.db"
    remove_sqlite(path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
        times = []
        for _ in range(commits):
            started = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t (body) VALUES (?)", ("x" * 512,))
            conn.execute("COMMIT")
            times.append(time.perf_counter() - started)
    finally:
        conn.close()
        remove_sqlite(path)
    return statistics.median(times)


def _postgres() -> dict[str, Any]:
    try:
        with psycopg.connect(pg_admin_url(), connect_timeout=5) as conn:
            settings = {}
            for name in (
                "server_version",
                "synchronous_commit",
                "fsync",
                "wal_sync_method",
                "shared_buffers",
                "max_connections",
            ):
                row = conn.execute(f"SHOW {name}").fetchone()
                settings[name] = row[0] if row else None
            return settings
    except psycopg.Error as exc:
        return {"error": str(exc).strip()}


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def describe(work: Path) -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "hypervisor": _hypervisor(),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "sqlite": sqlite3.sqlite_version,
        "postgresql": _postgres(),
        "packages": {
            p: _version(p) for p in ("compliance", "SQLAlchemy", "psycopg", "rfc8785", "click")
        },
        "disk": _disk(work),
        "sqlite_wal_commit_median_s": round(sqlite_commit_seconds(work), 6),
        "load_average_at_start": [round(x, 2) for x in load],
    }
