"""``compliance resident start|stop|status``: the optional process that keeps the command line
loaded, so a single-patient command answers without paying for the imports again."""

from __future__ import annotations

import os

import click

from compliance.cli.output import json_option, say, show_record
from compliance.errors import Conflict, InvalidInput, NotFound
from compliance.launcher import SOCKET_ENV, Unsafe, socket_path, supported

#: The longest socket path every supported system accepts (macOS: 104 bytes with the NUL).
MAX_SOCKET_PATH = 103


def _path() -> str:
    if not supported():
        raise InvalidInput("resident", "needs Unix-domain sockets with descriptor passing")
    return socket_path()


@click.group()
def resident() -> None:
    """A resident process that keeps the command line loaded and forks a child per command.

    Optional: with none running every command runs in its own process, as it always has. It
    serves only its own user, holds no database connection, and exits when the installed
    files change (restart it after an upgrade). Socket: COMPLIANCE_RESIDENT_SOCKET, else
    $XDG_RUNTIME_DIR/compliance/resident.sock, else compliance-UID/resident.sock under the
    temporary directory.
    """


@resident.command()
@click.option(
    "--foreground", is_flag=True, help="Serve in this process until stopped (for a supervisor)."
)
@json_option
def start(foreground: bool, as_json: bool) -> None:
    """Start the resident process (exit 6 if one already listens on the socket)."""
    from compliance.cli import resident as server

    path = _path()
    field = SOCKET_ENV if os.environ.get(SOCKET_ENV) else "socket directory"
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise InvalidInput(field, f"{path} is longer than a Unix socket path may be")
    try:
        server.private_directory(os.path.dirname(path))
    except (Unsafe, OSError) as problem:
        raise InvalidInput(field, f"not usable: {problem}") from None
    running = server.listening(path)
    if running is not None:
        raise Conflict(f"a resident process (pid {running}) already listens on {path}")
    if os.path.lexists(path):
        os.unlink(path)  # left by a process that ended without removing it: nobody answers
    if foreground:
        server.start(path, foreground=True)
        return
    pid = server.start(path, foreground=False)
    if as_json:
        show_record({"pid": pid, "socket": path}, True)
        return
    say(f"resident process started: pid {pid}, socket {path}")


@resident.command()
@json_option
def stop(as_json: bool) -> None:
    """Stop the resident process (exit 5 if none is running)."""
    from compliance.cli import resident as server

    path = _path()
    try:
        pid = server.request_stop(path)
    except OSError:
        raise NotFound("resident process", path) from None
    if as_json:
        show_record({"pid": pid, "socket": path, "stopped": True}, True)
        return
    say(f"resident process stopped: pid {pid}")


@resident.command()
@json_option
def status(as_json: bool) -> None:
    """Show the running resident process (exit 5 if none is running)."""
    from compliance.cli import resident as server

    path = _path()
    try:
        found = server.request_status(path)
    except OSError:
        raise NotFound("resident process", path) from None
    show_record(found, as_json, title="Resident process")
