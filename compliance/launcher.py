"""The ``compliance`` entry point: hand the command to a resident process, else run it here.

A fresh interpreter spends most of a single-patient command importing SQLAlchemy and the engine.
When the administrator has started one (``compliance resident start``), a resident process holds
those modules loaded and forks a child per command; this module, which imports only the standard
library pieces below, passes it the terminal's file descriptors, the arguments, the environment,
the working directory and the umask, forwards Ctrl-C and termination, and exits with the child's
exit code. With no resident process, or if anything fails before the request is accepted, the
command runs in this process exactly as it always has.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import sys
from typing import Any, NoReturn

#: The socket path, overriding the per-user default.
SOCKET_ENV = "COMPLIANCE_RESIDENT_SOCKET"
#: ``off`` (or ``0``, ``no``) runs every command in-process even when a resident process runs.
SWITCH_ENV = "COMPLIANCE_RESIDENT"
#: Bumped whenever the messages between launcher and resident process change.
PROTOCOL = b"compliance-resident/1"

#: Replies of the resident process: one kind byte and a signed 32-bit value.
REPLY = struct.Struct("!ci")
ACCEPTED = b"P"  # value: the child's process id
EXITED = b"X"  # value: the command's exit code
REFUSED = b"R"  # value: a reason code below; the launcher runs the command itself
REFUSED_STALE, REFUSED_OTHER_INSTALL, REFUSED_PEER, REFUSED_MALFORMED = 1, 2, 3, 4

#: Requests: a kind byte, then for a run the length-prefixed body.
RUN, STATUS, STOP = b"R", b"S", b"Q"
LENGTH = struct.Struct("!I")

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


class Unsafe(Exception):
    """The socket's directory or file may be reachable by someone else: not used."""


def supported() -> bool:
    """AF_UNIX with descriptor passing: Linux, macOS and the other POSIX systems."""
    return os.name == "posix" and hasattr(socket, "AF_UNIX") and hasattr(socket, "send_fds")


def _temp_dir() -> str:
    """Where ``tempfile.gettempdir`` would look first, without importing tempfile."""
    for name in ("TMPDIR", "TEMP", "TMP"):
        value = os.environ.get(name)
        if value and os.path.isdir(value):
            return value
    return "/tmp"  # noqa: S108 (a private 0700 directory is made inside it)


def socket_path() -> str:
    """``COMPLIANCE_RESIDENT_SOCKET``, else ``resident.sock`` in ``$XDG_RUNTIME_DIR/compliance``,
    else in ``compliance-UID`` under the temporary directory."""
    chosen = os.environ.get(SOCKET_ENV)
    if chosen:
        return os.path.abspath(chosen)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):
        return os.path.join(runtime, "compliance", "resident.sock")
    return os.path.join(_temp_dir(), f"compliance-{os.getuid()}", "resident.sock")


def check_private(path: str, *, is_socket: bool) -> None:
    """Raise ``Unsafe`` unless ``path`` is owned by this user and closed to everyone else (a
    directory, or the socket itself); a symbolic link is refused, as it may be replaced."""
    import stat

    info = os.lstat(path)
    kind = stat.S_ISSOCK(info.st_mode) if is_socket else stat.S_ISDIR(info.st_mode)
    what = "socket" if is_socket else "directory"
    if not kind:
        raise Unsafe(f"{path} is not a {what}")
    if info.st_uid != os.getuid():
        raise Unsafe(f"{what} {path} is owned by uid {info.st_uid}, not {os.getuid()}")
    if info.st_mode & 0o077:
        raise Unsafe(f"{what} {path} is open to others (mode {stat.S_IMODE(info.st_mode):04o})")


def installation() -> bytes:
    """Which installation this is: a launcher talks only to a resident process of the same
    interpreter and the same package files (another virtual environment has its own)."""
    here = os.path.dirname(os.path.realpath(__file__))
    return os.fsencode(os.path.realpath(sys.prefix)) + b"\0" + os.fsencode(here)


def _stream(stream: Any) -> bytes:
    """How this interpreter opened a standard stream, for the child to open its own alike."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    errors = getattr(stream, "errors", None) or "strict"
    line = "1" if getattr(stream, "line_buffering", False) else "0"
    through = "1" if getattr(stream, "write_through", False) else "0"
    return f"{encoding}:{errors}:{line}{through}".encode()


def encode_request(argv: list[str]) -> bytes:
    """The body of a run: NUL-separated fields, none of which may hold a NUL."""
    fields = [
        PROTOCOL,
        installation(),
        os.fsencode(os.getcwd()),
        b"%d" % _umask(),
        _stream(sys.stdin),
        _stream(sys.stdout),
        _stream(sys.stderr),
        b"%d" % len(argv),
        *(os.fsencode(a) for a in argv),
        *(k + b"=" + v for k, v in os.environb.items()),
    ]
    return b"\0".join(fields)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_exactly(sock: socket.socket, size: int) -> bytes | None:
    """``size`` bytes from ``sock``, or None if the other end closes first."""
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(size - len(data), 1 << 16))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def _receive(sock: socket.socket) -> tuple[bytes, int] | None:
    data = read_exactly(sock, REPLY.size)
    if data is None:
        return None
    kind, value = REPLY.unpack(data)
    return kind, value


def _connect(path: str) -> socket.socket | None:
    """A connection to the resident process, or None when it cannot be used; the reason is
    written to stderr only when the socket was named explicitly."""
    if not os.path.lexists(path):  # no resident process: nothing to say
        return None
    try:
        check_private(os.path.dirname(path), is_socket=False)
        check_private(path, is_socket=True)
    except FileNotFoundError:
        return None
    except (Unsafe, OSError) as problem:
        if os.environ.get(SOCKET_ENV):
            sys.stderr.write(f"compliance: not using the resident process: {problem}\n")
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


def delegate(argv: list[str]) -> int | None:
    """Run the command (``argv`` as ``sys.argv``) in the resident process and return its exit
    code; None if it was not accepted (nothing ran: the caller runs it in-process)."""
    if not supported() or os.environ.get(SWITCH_ENV, "").lower() in ("0", "off", "no", "false"):
        return None
    sock = _connect(socket_path())
    if sock is None:
        return None
    with sock:
        child: list[int] = []  # known once the request is accepted
        received: list[int] = []

        def forward(signum: int, _frame: object) -> None:
            received.append(signum)
            for pid in child:
                try:  # noqa: SIM105 (contextlib is not loaded yet: keep the imports few)
                    os.kill(pid, signum)
                except OSError:
                    pass

        previous = {signum: signal.signal(signum, forward) for signum in FORWARDED}
        try:
            body = encode_request(argv)
            socket.send_fds(sock, [RUN + LENGTH.pack(len(body))], [0, 1, 2])
            sock.sendall(body)
            reply = _receive(sock)
        except (OSError, ValueError):
            reply = None
        if reply is None or reply[0] != ACCEPTED:
            _restore(previous, received)  # the command runs here, as if never handed over
            return None
        child.append(reply[1])
        for signum in list(received):  # arrived while the request was on its way
            try:  # noqa: SIM105
                os.kill(reply[1], signum)
            except OSError:
                pass
        return _follow(sock, received)


def _restore(previous: dict[signal.Signals, Any], received: list[int]) -> None:
    """Put the signal handlers back and deliver what arrived meanwhile to this process."""
    for forwarded, handler in previous.items():
        signal.signal(forwarded, handler)
    for signum in dict.fromkeys(received):
        os.kill(os.getpid(), signum)


def _follow(sock: socket.socket, received: list[int]) -> int:
    """Wait for the child's exit code while the handlers forward signals to it."""
    reply = _receive(sock)
    if reply is not None and reply[0] == EXITED:
        return reply[1]
    if received:  # the child died of the signal forwarded to it: so does this process
        _die_of(received[-1])
    sys.stderr.write("compliance: the resident process's child ended without an exit code\n")
    return 1


def _die_of(signum: int) -> NoReturn:
    """End as the command did: killed by the same signal (the shell sees 128 + its number)."""
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    sys.exit(128 + signum)  # pragma: no cover (the signal ends the process first)


def main() -> None:
    """The console script and ``python -m compliance``."""
    code = delegate(sys.argv)
    if code is not None:
        sys.exit(code)
    from compliance.cli.main import main as run_here

    run_here()
