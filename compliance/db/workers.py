"""A second process reading the same snapshot as this one, so that work over the whole
population (judging every course) runs on two cores: the interpreter runs one thread at a
time, a process of its own does not share that lock.

The process is this interpreter started again (``python -m compliance.db.workers``), so it
works wherever Python does and inherits nothing but its environment; the request, with the
database's address, goes over its standard input, never its command line. It runs one task
registered with ``task`` and writes what the task yields as length-prefixed frames on its
standard output, which are read in order (the pipe holds the process back when its reader is
behind, so neither side holds more than a frame ahead).

Both read one snapshot: PostgreSQL's is exported and imported; on SQLite both read
transactions begin while the write lock is held (``snapshots.writers_held``)."""

from __future__ import annotations

import importlib
import json
import os
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from compliance.db import snapshots

Task = Callable[[Session, Mapping[str, Any]], Iterator[bytes]]
_TASKS: dict[str, Task] = {}
_LENGTH = struct.Struct(">I")
_END = 0xFFFFFFFF  # a length no frame has: the task is done
_READY, _BEGIN, _BEGUN = b"ready", b"begin\n", b"begun"


class WorkerFailed(RuntimeError):
    """The second process ended before its task was done."""


def task(function: Task) -> Task:
    """Register ``function`` as work a second process may be asked to run (by this name)."""
    _TASKS[_name(function)] = function
    return function


def _name(function: Callable[..., Any]) -> str:
    return f"{function.__module__}:{function.__qualname__}"


def write_frame(out: IO[bytes], payload: bytes) -> None:
    out.write(_LENGTH.pack(len(payload)) + payload)
    out.flush()


def read_frame(source: IO[bytes]) -> bytes | None:
    """The next frame, or None at the task's end; ``WorkerFailed`` if the stream stops short."""
    head = source.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise WorkerFailed("the second process stopped before its work was done")
    (size,) = _LENGTH.unpack(head)
    if size == _END:
        return None
    payload = source.read(size)
    if len(payload) < size:
        raise WorkerFailed("the second process stopped in the middle of its work")
    return payload


class Worker:
    """The second process, its task begun on the snapshot."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    def next_frame(self) -> bytes:
        """The task's next frame; ``WorkerFailed`` if it has ended."""
        assert self.process.stdout is not None
        frame = read_frame(self.process.stdout)
        if frame is None:
            raise WorkerFailed("the second process ended its work early")
        return frame

    def finish(self) -> None:
        """Check that the task is done and the process exited cleanly."""
        assert self.process.stdout is not None
        if read_frame(self.process.stdout) is not None:
            raise WorkerFailed("the second process sent more than its share")
        if self.process.wait() != 0:
            raise WorkerFailed(f"the second process exited with status {self.process.returncode}")

    def close(self) -> None:
        """End the process (at once, if its work was not read to the end)."""
        process = self.process
        if process.poll() is None:
            process.kill()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                with suppress(OSError):
                    pipe.close()
        process.wait()


def _start(request: Mapping[str, Any]) -> Worker:
    # The package this process runs, found first (whether it was installed or not).
    here = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(filter(None, (here, os.environ.get("PYTHONPATH"))))
    env = {**os.environ, "PYTHONPATH": path}
    process = subprocess.Popen(
        [sys.executable, "-m", "compliance.db.workers"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    worker = Worker(process)
    assert process.stdin is not None
    try:
        process.stdin.write(json.dumps(request).encode() + b"\n")
        process.stdin.flush()
    except OSError:
        worker.close()
        raise
    return worker


def _expect(process: subprocess.Popen[bytes], said: bytes) -> bool:
    """Whether the worker's next frame is ``said`` (not if it has stopped)."""
    assert process.stdout is not None
    try:
        return read_frame(process.stdout) == said
    except WorkerFailed:
        return False


@contextmanager
def beside(
    session: Session, function: Task, args: Mapping[str, Any], sessions: int = 1
) -> Iterator[tuple[list[Session], Worker | None]]:
    """``(mains, worker)``: ``function(args)`` running in a second process on the snapshot that
    each of the ``sessions`` sessions in ``mains`` reads; or ``([session], None)`` where one
    snapshot cannot be shared (see ``snapshots.pair``) or the process could not begin, and the
    caller does all the work. On PostgreSQL the first is ``session`` itself, the others import
    its snapshot; on SQLite all are new, begun with the worker's."""
    name = _name(function)
    if _TASKS.get(name) is not function:
        raise ValueError(f"{name} is not registered as a task")
    engine = snapshots.engine_of(session)
    if engine is None or engine.dialect.name not in ("postgresql", "sqlite"):
        yield [session], None
        return
    request: dict[str, Any] = {
        "url": engine.url.render_as_string(hide_password=False),
        "task": name,
        "args": dict(args),
    }
    if engine.dialect.name == "postgresql":
        snapshot = snapshots.exported(session)
        if snapshot is None:
            yield [session], None
            return
        request["snapshot"] = snapshot
    worker = _start(request)
    opened: list[Session] = []
    try:
        if not _join(engine, worker, sessions, opened, request.get("snapshot")):
            worker.close()
            yield [session], None
            return
        if engine.dialect.name == "postgresql":
            yield [session, *opened], worker
        else:
            yield opened, worker
    finally:
        worker.close()
        for other in opened:
            other.close()


def _join(
    engine: Engine, worker: Worker, sessions: int, opened: list[Session], snapshot: str | None
) -> bool:
    """Whether the worker has begun on the snapshot, and ``opened`` holds this process's new
    sessions on it: PostgreSQL's import it (the caller's own is one), SQLite's begin with the
    worker's while the write lock is held."""
    process = worker.process
    if snapshot is not None:
        if not _expect(process, _BEGUN):
            return False
        opened.extend(snapshots.importing(engine, snapshot) for _ in range(sessions - 1))
        return True
    if not _expect(process, _READY):
        return False
    assert process.stdin is not None
    with snapshots.writers_held(engine) as held:
        if not held:
            return False
        with suppress(OSError):
            process.stdin.write(_BEGIN)
            process.stdin.flush()
        if not _expect(process, _BEGUN):
            return False
        opened.extend(snapshots.begun(engine) for _ in range(sessions))
    return True


def serve() -> int:
    """The second process: read the request, take the snapshot, run the task."""
    from compliance.db.engine import make_engine

    stdin, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but frames on the pipe
    request = json.loads(stdin.readline())
    name = str(request["task"])
    module, _, _ = name.partition(":")
    if module.startswith("compliance."):
        importlib.import_module(module)
    function = _TASKS.get(name)
    if function is None:
        print(f"compliance worker: {name} is not a registered task", file=sys.stderr)
        return 2
    engine = make_engine(str(request["url"]), create=False)
    try:
        if "snapshot" in request:
            session = snapshots.importing(engine, str(request["snapshot"]))
        else:
            write_frame(out, _READY)
            if stdin.readline() != _BEGIN:
                return 0
            session = snapshots.begun(engine)
        with session:
            write_frame(out, _BEGUN)
            for frame in function(session, request["args"]):
                write_frame(out, frame)
        out.write(_LENGTH.pack(_END))
        out.flush()
        return 0
    finally:
        engine.dispose()


if __name__ == "__main__":
    # Run as the imported module, whose registry the tasks' modules fill (not as ``__main__``).
    from compliance.db.workers import serve as _registered

    # Its reader stopped early, or Ctrl-C reached the whole process group: the work is not
    # wanted, and the command that started it says what happened.
    with suppress(BrokenPipeError, KeyboardInterrupt):
        sys.exit(_registered())
    sys.exit(1)
