"""The resident process: the command line loaded once, a forked child per command.

It imports every module a command would (never opening a database: each child opens its own),
listens on a Unix socket only its own user can reach, and for each request from the launcher
(``compliance.launcher``) forks a child that takes over the launcher's terminal descriptors,
environment, working directory and umask and runs the same ``main`` as a fresh process would.
It refuses any peer of another uid, and it never serves code older than the files on disk: a
fingerprint of every loaded module file (and the package's data files) is taken at start and
compared before each fork; on a mismatch the request is refused (the launcher runs it itself)
and the process exits.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import io
import json
import os
import pkgutil
import select
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from compliance import launcher
from compliance.launcher import (
    ACCEPTED,
    EXITED,
    LENGTH,
    PROTOCOL,
    REFUSED,
    REFUSED_MALFORMED,
    REFUSED_OTHER_INSTALL,
    REFUSED_PEER,
    REFUSED_STALE,
    REPLY,
    RUN,
    STATUS,
    STOP,
)

#: Not loaded ahead: the HTTP service is an optional extra and runs as its own server.
NOT_PRELOADED = (
    "compliance.http",
    "compliance.cli.serve_cmd",
    "compliance.launcher",
    "compliance.__main__",
)
#: The drivers a command may open a database with.
DRIVERS = ("sqlalchemy.dialects.sqlite.pysqlite", "sqlalchemy.dialects.postgresql.psycopg")
#: Seconds between the idle checks (staleness, the socket file still ours, children reaped).
TICK = 1.0
#: Seconds a client has to send its request once connected.
REQUEST_TIMEOUT = 10.0
#: Seconds ``start`` waits for the detached process to listen.
START_TIMEOUT = 60.0
#: The largest request accepted (arguments and environment).
MAX_REQUEST = 4 * 1024 * 1024


def preload() -> None:
    """Import every module of the package a command may use, the database drivers, and the
    models' mapping; read the packaged rulesets. Nothing here opens a database."""
    import compliance

    for module in pkgutil.walk_packages(compliance.__path__, "compliance."):
        if module.name.startswith(NOT_PRELOADED):
            continue
        try:
            importlib.import_module(module.name)
        except ImportError:  # an optional extra that is not installed: loaded on use, if ever
            continue
    for driver in DRIVERS:
        importlib.import_module(driver)
    importlib.import_module("psycopg")
    from sqlalchemy.orm import configure_mappers

    from compliance.programs.loader import all_rulesets, default_schedule

    configure_mappers()
    all_rulesets()
    default_schedule()


@dataclass(frozen=True)
class Fingerprint:
    """Modification time and size of each file whose contents the process holds in memory."""

    files: tuple[tuple[str, int, int], ...]

    @staticmethod
    def paths() -> list[str]:
        """Every loaded module's file, and every data file shipped inside the package."""
        import compliance

        found = {
            file
            for module in list(sys.modules.values())
            if isinstance(file := getattr(module, "__file__", None), str)
        }
        for folder in compliance.__path__:
            for path in Path(folder).rglob("*"):
                if path.is_file() and "__pycache__" not in path.parts:
                    found.add(str(path))
        return sorted(found)

    @classmethod
    def take(cls, paths: Sequence[str] | None = None) -> Fingerprint:
        stamps = []
        for path in cls.paths() if paths is None else paths:
            try:
                info = os.stat(path)
            except OSError:
                stamps.append((path, -1, -1))
                continue
            stamps.append((path, info.st_mtime_ns, info.st_size))
        return cls(tuple(stamps))

    def current(self) -> bool:
        """The same files, unchanged."""
        return Fingerprint.take([path for path, _, _ in self.files]) == self


def peer_uid(conn: socket.socket) -> int | None:
    """The uid of the process at the other end, as the kernel reports it."""
    try:
        if hasattr(socket, "SO_PEERCRED"):  # Linux: struct ucred {pid, uid, gid}
            raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            return int(struct.unpack("3i", raw)[1])
        if sys.platform == "darwin":  # LOCAL_PEERCRED: struct xucred {version, uid, ...}
            raw = conn.getsockopt(0, 0x001, struct.calcsize("IIh16I"))
            return int(struct.unpack_from("II", raw)[1])
    except OSError:
        return None
    return None


def peer_allowed(uid: int | None, own: int) -> bool:
    """Only this user's own processes are served; an unknown peer is refused."""
    return uid is not None and uid == own


def private_directory(path: str) -> None:
    """Make the socket's directory (0700) if missing; ``launcher.Unsafe`` unless it is private."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    launcher.check_private(path, is_socket=False)


def listening(path: str) -> int | None:
    """The pid of a resident process answering on ``path``, or None."""
    try:
        answer = request_status(path)
    except OSError:
        return None
    return int(answer["pid"])


def request_status(path: str) -> dict[str, Any]:
    """What the resident process on ``path`` says of itself (``OSError`` when none answers)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(REQUEST_TIMEOUT)
        sock.connect(path)
        sock.sendall(STATUS)
        (size,) = LENGTH.unpack(_exactly(sock, LENGTH.size))
        found: dict[str, Any] = json.loads(_exactly(sock, size))
        return found


def request_stop(path: str) -> int:
    """Ask the resident process on ``path`` to stop; its pid once it has let go of the socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(REQUEST_TIMEOUT)
        sock.connect(path)
        sock.sendall(STOP)
        kind, pid = REPLY.unpack(_exactly(sock, REPLY.size))
        if kind != EXITED:
            raise OSError("unexpected answer to stop")
        return int(pid)


def _exactly(sock: socket.socket, size: int) -> bytes:
    data = launcher.read_exactly(sock, size)
    if data is None:
        raise ConnectionError("the connection closed early")
    return data


@dataclass(frozen=True)
class Request:
    """One command to run, as the launcher sent it."""

    cwd: bytes
    umask: int
    streams: tuple[str, str, str]
    argv: list[str]
    environ: dict[bytes, bytes]


def parse_request(body: bytes) -> Request | None:
    """The launcher's fields (``launcher.encode_request``); None for another installation."""
    fields = body.split(b"\0")
    if len(fields) < 9 or fields[0] != PROTOCOL:
        raise ValueError("not a request of this protocol")
    if b"\0".join(fields[1:3]) != launcher.installation():
        return None
    cwd, umask = fields[3], int(fields[4], 10)
    streams = (fields[5].decode(), fields[6].decode(), fields[7].decode())
    count = int(fields[8], 10)
    argv = [os.fsdecode(a) for a in fields[9 : 9 + count]]
    environ = {}
    for entry in fields[9 + count :]:
        key, _, value = entry.partition(b"=")
        environ[key] = value
    return Request(cwd, umask, streams, argv, environ)


class Server:
    """The accept loop of the resident process."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.started = datetime.now(UTC)
        self.fingerprint = Fingerprint.take()
        self.children: set[int] = set()
        self.served = 0
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        previous = os.umask(0o177)  # the socket is born 0600
        try:
            self.listener.bind(path)
        finally:
            os.umask(previous)
        os.chmod(path, 0o600)
        self.inode = os.stat(path).st_ino
        self.listener.listen(64)
        self.listener.settimeout(TICK)

    def ours(self) -> bool:
        """The socket file is still the one this process bound (not removed or replaced)."""
        try:
            return os.stat(self.path).st_ino == self.inode
        except OSError:
            return False

    def close(self) -> None:
        if self.ours():
            os.unlink(self.path)
        self.listener.close()

    def serve(self) -> None:
        try:
            while True:
                try:
                    conn, _ = self.listener.accept()
                except TimeoutError:
                    self._reap()
                    if not self.ours() or not self.fingerprint.current():
                        return
                    continue
                self._reap()
                with conn:
                    if not self._handle(conn):
                        return
        finally:
            self.close()

    def _reap(self) -> None:
        for pid in list(self.children):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self.children.discard(pid)

    def _handle(self, conn: socket.socket) -> bool:
        """Serve one connection; False when the process is to stop."""
        conn.settimeout(REQUEST_TIMEOUT)
        if not peer_allowed(peer_uid(conn), os.getuid()):
            _reply(conn, REFUSED, REFUSED_PEER)
            return True
        fds: list[int] = []
        try:
            head, fds, _, _ = socket.recv_fds(conn, 1 + LENGTH.size, 3)
            if head == STATUS:
                _send_json(conn, self.status())
                return True
            if head == STOP:
                self.close()
                _reply(conn, EXITED, os.getpid())
                return False
            if head[:1] != RUN or len(fds) != 3:
                _reply(conn, REFUSED, REFUSED_MALFORMED)
                return True
            head += _exactly(conn, 1 + LENGTH.size - len(head))
            (size,) = LENGTH.unpack(head[1:])
            if size > MAX_REQUEST:
                _reply(conn, REFUSED, REFUSED_MALFORMED)
                return True
            request = parse_request(_exactly(conn, size))
            if request is None:
                _reply(conn, REFUSED, REFUSED_OTHER_INSTALL)
                return True
            if not self.fingerprint.current():
                _reply(conn, REFUSED, REFUSED_STALE)
                return False
            pid = os.fork()
            if pid == 0:
                self.listener.close()
                run_child(conn, fds, request)  # never returns
            self.children.add(pid)
            self.served += 1
            return True
        except (OSError, ValueError, UnicodeDecodeError):
            with contextlib.suppress(OSError):
                _reply(conn, REFUSED, REFUSED_MALFORMED)
            return True
        finally:
            for fd in fds:
                os.close(fd)

    def status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "socket": self.path,
            "started": self.started.isoformat(timespec="seconds"),
            "python": sys.executable,
            "files_watched": len(self.fingerprint.files),
            "children_running": len(self.children),
            "commands_served": self.served,
        }


def _reply(conn: socket.socket, kind: bytes, value: int) -> None:
    conn.sendall(REPLY.pack(kind, value))


def _send_json(conn: socket.socket, document: dict[str, Any]) -> None:
    data = json.dumps(document).encode()
    conn.sendall(LENGTH.pack(len(data)) + data)


def _open_stream(fd: int, spec: str, *, write: bool) -> io.TextIOWrapper:
    """A standard stream as the launcher's interpreter opened it (same encoding, error handler
    and buffering), so the bytes written are the ones a fresh process would write."""
    encoding, errors, flags = spec.rsplit(":", 2)
    binary: Any = open(fd, "wb" if write else "rb", closefd=False)  # noqa: SIM115
    return io.TextIOWrapper(
        binary,
        encoding,
        errors,
        newline="\n",
        line_buffering=flags[0] == "1",
        write_through=flags[1] == "1",
    )


def _watch_launcher(conn: socket.socket) -> None:
    """End the child (as a hang-up would) if the launcher goes away while it runs."""
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN | select.POLLHUP)
    while True:
        if poller.poll():
            try:
                gone = conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
            except BlockingIOError:
                gone = False
            except OSError:
                gone = True
            if gone:
                os.kill(os.getpid(), signal.SIGHUP)
                return
            time.sleep(0.1)


def run_child(conn: socket.socket, fds: Sequence[int], request: Request) -> None:
    """In the forked child: become the launcher's process and run the command line."""
    accepted = False
    code = 1
    try:
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request.cwd)
        os.umask(request.umask)
        os.environ.clear()
        for key, value in request.environ.items():
            os.environb[key] = value
        time.tzset()
        streams = [
            _open_stream(0, request.streams[0], write=False),
            _open_stream(1, request.streams[1], write=True),
            _open_stream(2, request.streams[2], write=True),
        ]
        sys.stdin, sys.stdout, sys.stderr = streams
        sys.argv = request.argv
        _reply(conn, ACCEPTED, os.getpid())
        accepted = True
        threading.Thread(target=_watch_launcher, args=(conn,), daemon=True).start()
        code = _run_command()
        _reply(conn, EXITED, code)
    except BaseException:  # the child must never return into the server's loop
        # Before acceptance the launcher runs the command itself; after, it exits 1.
        with contextlib.suppress(BaseException):
            _reply(conn, EXITED if accepted else REFUSED, 1 if accepted else REFUSED_MALFORMED)
    os._exit(code & 0xFF)


def _run_command() -> int:
    """``main`` as the console script runs it, with the interpreter's own exit rules: the exit
    code of ``SystemExit``, a traceback and 1 for any other exception, 120 when the output
    cannot be flushed at the end."""
    from compliance.cli.main import main

    code = 0
    try:
        main(sys.argv[1:])
    except SystemExit as exit_:
        code = _exit_code(exit_.code)
    except KeyboardInterrupt:
        traceback.print_exc()
        code = 128 + signal.SIGINT
    except BaseException:
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            code = 120
    return code


def _exit_code(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value if -(2**31) <= value < 2**31 else 1
    print(value, file=sys.stderr)
    return 1


def start(path: str, *, foreground: bool) -> int:
    """Load the command line and serve on ``path``. In the background, the pid of the detached
    process once it listens; in the foreground, serve until stopped and return 0."""
    if foreground:
        preload()
        server = Server(path)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            server.serve()
        except SystemExit:
            server.close()
        return 0
    ready, report = os.pipe()
    first = os.fork()
    if first == 0:
        os.close(ready)
        _detach(path, report)  # never returns
    os.close(report)
    os.waitpid(first, 0)
    with os.fdopen(ready, "rb") as answer:
        waited, _, _ = select.select([answer], [], [], START_TIMEOUT)
        said = answer.read().decode(errors="replace") if waited else "no answer in time"
    if not said.startswith("pid "):
        raise RuntimeError(said.strip() or "the resident process did not start")
    return int(said.split()[1])


def _detach(path: str, report: int) -> None:
    """The first child: a new session, then a grandchild that serves (no controlling terminal,
    standard streams on /dev/null, the root as working directory)."""
    code = 0
    try:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        os.chdir("/")
        devnull = os.open(os.devnull, os.O_RDWR)
        for target in (0, 1, 2):
            os.dup2(devnull, target)
        os.close(devnull)
        preload()
        server = Server(path)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        os.write(report, f"pid {os.getpid()}\n".encode())
        os.close(report)
        try:
            server.serve()
        except SystemExit:
            server.close()
    except BaseException as problem:
        with contextlib.suppress(OSError):
            os.write(report, f"{type(problem).__name__}: {problem}\n".encode())
        code = 1
    os._exit(code)
