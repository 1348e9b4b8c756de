"""The resident process answers exactly as a fresh process would, and only its own user.

Every test runs the real ``compliance`` console script (and ``python -m compliance``) against a
real SQLite file, once through a resident process started on a socket in ``tmp_path`` and once
with it bypassed, and compares stdout, stderr and the exit code byte for byte.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from compliance import launcher
from compliance.cli import resident

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not launcher.supported(), reason="needs AF_UNIX with descriptor passing"),
]

SCRIPT = [str(Path(sys.executable).with_name("compliance"))]
MODULE = [sys.executable, "-m", "compliance"]


def run(
    argv: list[str], env: dict[str, str], cwd: Path, command: list[str] = SCRIPT
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*command, *argv], env=env, cwd=cwd, capture_output=True, check=False, timeout=120
    )


def served(env: dict[str, str], cwd: Path) -> int:
    done = run(["resident", "status", "--json"], env, cwd)
    assert done.returncode == 0, done.stderr
    return int(json.loads(done.stdout)["commands_served"])


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    private = tmp_path / "run"
    private.mkdir(mode=0o700)
    return private


@pytest.fixture
def envs(tmp_path: Path, folder: Path) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """(through the resident process, bypassing it); a resident process is running."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("COMPLIANCE_")}
    base["COMPLIANCE_DATABASE_URL"] = f"sqlite:///{tmp_path / 'clinic.db'}"
    through = {**base, "COMPLIANCE_RESIDENT_SOCKET": str(folder / "resident.sock")}
    bypass = {**base, "COMPLIANCE_RESIDENT": "off"}
    started = run(["resident", "start"], through, tmp_path)
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith(b"resident process started: pid ")
    yield through, bypass
    run(["resident", "stop"], through, tmp_path)


def test_commands_answer_byte_for_byte_as_in_a_fresh_process(
    tmp_path: Path, envs: tuple[dict[str, str], dict[str, str]]
) -> None:
    through, bypass = envs
    made = run(["init", "--admin-name", "Ada Admin", "--json"], bypass, tmp_path)
    assert made.returncode == 0, made.stderr
    admin = json.loads(made.stdout)["id"]
    through["COMPLIANCE_ACTOR"] = bypass["COMPLIANCE_ACTOR"] = admin
    cases = [
        ["whoami"],
        ["whoami", "--json"],
        ["prescriber", "list"],
        ["status", "PAT-NOPE"],  # bad input: exit 2 and the message naming the field
        ["status", "PAT-ZZZZZZZZ"],  # not found: exit 5
        ["--db", str(tmp_path / "missing.db"), "whoami"],
        ["course", "enrol", "--help"],
        ["permissions"],
        ["no-such-command"],
        ["patient", "find", "--name", os.fsdecode(b"Ok\xffafor")],  # not UTF-8 on the line
    ]
    before = served(through, tmp_path)
    for argv in cases:
        for command in (SCRIPT, MODULE):
            fresh = run(argv, bypass, tmp_path, command)
            answered = run(argv, through, tmp_path, command)
            assert (answered.returncode, answered.stdout, answered.stderr) == (
                fresh.returncode,
                fresh.stdout,
                fresh.stderr,
            ), argv
    assert {run(c, bypass, tmp_path).returncode for c in cases} >= {0, 2}
    # Every command above was answered by the resident process (one status request counted too).
    assert served(through, tmp_path) == before + 2 * len(cases) + 1


def test_a_write_through_the_resident_process_is_one_transaction(
    tmp_path: Path, envs: tuple[dict[str, str], dict[str, str]]
) -> None:
    through, bypass = envs
    made = run(["init", "--admin-name", "Ada Admin", "--json"], bypass, tmp_path)
    admin = json.loads(made.stdout)["id"]
    through["COMPLIANCE_ACTOR"] = bypass["COMPLIANCE_ACTOR"] = admin
    register = ["prescriber", "register", "--name", "Dr Maria Okafor", "--npi", "1234567893"]
    before = served(through, tmp_path)
    done = run([*register, "--json"], through, tmp_path)
    assert done.returncode == 0, done.stderr
    assert served(through, tmp_path) == before + 2
    prescriber = json.loads(done.stdout)["id"]
    listed = json.loads(run(["prescriber", "list", "--json"], bypass, tmp_path).stdout)
    assert [p["id"] for p in listed] == [prescriber]
    log = json.loads(run(["audit", "log", "--json"], bypass, tmp_path).stdout)
    assert [e for e in log if prescriber in json.dumps(e)], log
    verified = run(["audit", "verify"], bypass, tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # The same registration again conflicts, with the same message either way, writing nothing.
    again = run(register, through, tmp_path)
    fresh = run(register, bypass, tmp_path)
    assert again.returncode == fresh.returncode == 6
    assert again.stderr == fresh.stderr and again.stdout == fresh.stdout
    relisted = json.loads(run(["prescriber", "list", "--json"], bypass, tmp_path).stdout)
    assert relisted == listed


def test_start_stop_status_and_their_exit_codes(
    tmp_path: Path, envs: tuple[dict[str, str], dict[str, str]]
) -> None:
    through, _ = envs
    status = run(["resident", "status", "--json"], through, tmp_path)
    assert status.returncode == 0
    found = json.loads(status.stdout)
    assert found["socket"] == through["COMPLIANCE_RESIDENT_SOCKET"]
    assert os.stat(found["socket"]).st_mode & 0o777 == 0o600
    again = run(["resident", "start"], through, tmp_path)
    assert again.returncode == 6
    assert f"(pid {found['pid']}) already listens" in again.stderr.decode()
    stopped = run(["resident", "stop"], through, tmp_path)
    assert (stopped.returncode, stopped.stdout) == (
        0,
        f"resident process stopped: pid {found['pid']}\n".encode(),
    )
    assert not Path(found["socket"]).exists()
    for argv in (["resident", "status"], ["resident", "stop"]):
        none = run(argv, through, tmp_path)
        assert none.returncode == 5
        assert none.stderr == f"error: resident process not found: {found['socket']}\n".encode()
    # With none running, commands run in-process, silently.
    codes = run(["exit-codes"], through, tmp_path)
    assert codes.returncode == 0 and codes.stderr == b""


def test_the_decision_on_a_peer_serves_only_the_own_uid() -> None:
    own = os.getuid()
    assert resident.peer_allowed(own, own)
    assert not resident.peer_allowed(own + 1, own)
    assert not resident.peer_allowed(None, own)
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        assert resident.peer_uid(left) == own


def test_an_open_directory_is_not_used(tmp_path: Path) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPLIANCE_")}
    env["COMPLIANCE_RESIDENT_SOCKET"] = str(open_dir / "resident.sock")
    start = run(["resident", "start"], env, tmp_path)
    assert start.returncode == 2
    assert start.stderr.startswith(b"error: COMPLIANCE_RESIDENT_SOCKET: not usable: directory ")
    assert b"is open to others (mode 0777)" in start.stderr
    assert not (open_dir / "resident.sock").exists()
    # A socket someone left there is not connected to; the command runs here, and says why.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as planted:
        planted.bind(str(open_dir / "resident.sock"))
        planted.listen(1)
        done = run(["exit-codes"], env, tmp_path)
        fresh = run(["exit-codes"], {**env, "COMPLIANCE_RESIDENT": "off"}, tmp_path)
    assert done.returncode == 0 and done.stdout == fresh.stdout
    assert done.stderr.startswith(b"compliance: not using the resident process: directory ")
    too_long = {**env, "COMPLIANCE_RESIDENT_SOCKET": str(tmp_path / ("x" * 120) / "r.sock")}
    refused = run(["resident", "start"], too_long, tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.endswith(b"is longer than a Unix socket path may be\n")
    with pytest.raises(launcher.Unsafe, match="open to others"):
        launcher.check_private(str(open_dir), is_socket=False)


@pytest.mark.skipif(os.getuid() != 0, reason="making a directory owned by another uid needs root")
def test_a_directory_owned_by_another_uid_is_not_used(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)
    with pytest.raises(launcher.Unsafe, match="owned by uid 65534"):
        launcher.check_private(str(theirs), is_socket=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPLIANCE_")}
    env["COMPLIANCE_RESIDENT_SOCKET"] = str(theirs / "resident.sock")
    start = run(["resident", "start"], env, tmp_path)
    assert start.returncode == 2
    assert b"is owned by uid 65534" in start.stderr


def test_a_changed_module_file_makes_it_refuse_and_exit(tmp_path: Path, folder: Path) -> None:
    """A copy of the package of its own (first on PYTHONPATH), so touching one of its files
    leaves every other resident process of the suite alone."""
    copy = tmp_path / "pkg"
    source = Path(launcher.__file__).parent
    shutil.copytree(source, copy / "compliance", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPLIANCE_")}
    env["PYTHONPATH"] = str(copy)
    env["COMPLIANCE_RESIDENT_SOCKET"] = str(folder / "resident.sock")
    start = run(["resident", "start"], env, tmp_path, MODULE)
    assert start.returncode == 0, start.stderr
    status = json.loads(run(["resident", "status", "--json"], env, tmp_path, MODULE).stdout)
    fresh = run(["permissions"], {**env, "COMPLIANCE_RESIDENT": "off"}, tmp_path, MODULE)
    first = run(["permissions"], env, tmp_path, MODULE)
    assert first.stdout == fresh.stdout
    assert served(env, tmp_path) == 3  # status, permissions, this status: the copy answers
    module = copy / "compliance" / "cli" / "vocab.py"
    stamp = module.stat()
    os.utime(module, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1_000_000_000))
    later = run(["permissions"], env, tmp_path, MODULE)
    assert (later.returncode, later.stdout, later.stderr) == (0, fresh.stdout, fresh.stderr)
    for _ in range(100):  # it refused that request; it is gone, the socket with it
        if not Path(status["socket"]).exists():
            break
        time.sleep(0.05)
    assert not Path(status["socket"]).exists()
    for _ in range(100):
        if gone(status["pid"]):
            break
        time.sleep(0.05)
    assert gone(status["pid"])


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def running_children(env: dict[str, str], cwd: Path) -> int:
    done = run(["resident", "status", "--json"], env, cwd)
    return int(json.loads(done.stdout)["children_running"]) - 1  # less the status command's own


def wait_for(condition: Callable[[], bool]) -> bool:
    for _ in range(200):
        if condition():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("how", ["terminated", "launcher killed"])
def test_a_signal_reaches_the_child_and_a_dead_launcher_leaves_none(
    tmp_path: Path, envs: tuple[dict[str, str], dict[str, str]], how: str
) -> None:
    """A registration waits behind another writer's lock; SIGTERM to the launcher ends it as it
    ends a fresh process (killed by SIGTERM, nothing written), and SIGKILL of the launcher takes
    the child with it."""
    through, bypass = envs
    made = run(["init", "--admin-name", "Ada Admin", "--json"], bypass, tmp_path)
    through["COMPLIANCE_ACTOR"] = bypass["COMPLIANCE_ACTOR"] = json.loads(made.stdout)["id"]
    register = ["prescriber", "register", "--name", "Dr Maria Okafor", "--npi", "1234567893"]
    holder = sqlite3.connect(tmp_path / "clinic.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        waiting = subprocess.Popen([*SCRIPT, *register], env=through, cwd=tmp_path)
        assert wait_for(lambda: running_children(through, tmp_path) == 1)
        if how == "terminated":
            waiting.send_signal(signal.SIGTERM)
            assert waiting.wait(timeout=60) == -signal.SIGTERM
        else:
            waiting.kill()
            waiting.wait(timeout=60)
        assert wait_for(lambda: running_children(through, tmp_path) == 0)
    finally:
        holder.rollback()
        holder.close()
    listed = json.loads(run(["prescriber", "list", "--json"], bypass, tmp_path).stdout)
    assert listed == []


def on_a_terminal(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, bytes]:
    """Exit code and what a 100-column terminal shows (stdout and stderr on a pseudo-terminal)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    try:
        done = subprocess.run(
            [*SCRIPT, *argv],
            env=env,
            cwd=cwd,
            stdin=follower,
            stdout=follower,
            stderr=follower,
            check=False,
            timeout=120,
        )
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 1 << 16)
            except OSError:  # EIO: nothing more to read once the terminal is closed
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(leader)
    return done.returncode, shown


def test_a_terminal_sees_the_same_table_and_colours(
    tmp_path: Path, envs: tuple[dict[str, str], dict[str, str]]
) -> None:
    through, bypass = envs
    made = run(["init", "--admin-name", "Ada Admin", "--json"], bypass, tmp_path)
    through["COMPLIANCE_ACTOR"] = bypass["COMPLIANCE_ACTOR"] = json.loads(made.stdout)["id"]
    for env in (through, bypass):
        env.update(TERM="xterm-256color", COLUMNS="100")
        env.pop("NO_COLOR", None)
    before = served(through, tmp_path)
    for argv in (["permissions"], ["whoami"], ["status", "PAT-NOPE"]):
        fresh = on_a_terminal(argv, bypass, tmp_path)
        assert on_a_terminal(argv, through, tmp_path) == fresh, argv
    assert b"\x1b[" in on_a_terminal(["permissions"], bypass, tmp_path)[1]  # styled: a terminal
    assert served(through, tmp_path) == before + 3 + 1
