"""Run a command with a pseudo-terminal as its stdin, stdout and stderr, as a person at a terminal would."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import termios
import time


def run_on_a_terminal(argv: list[str], env: dict, *, columns: int = 80, rows: int = 24, answer: str | None = None,
                      timeout: float = 120) -> tuple[int, str]:
    """(exit code, everything the terminal showed, \\r\\n turned to \\n). answer is typed once the command
    has printed something (a prompt)."""
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    shown = b""
    try:
        proc = subprocess.Popen(argv, stdin=follower, stdout=follower, stderr=follower, env={**env, "COLUMNS": str(columns)},
                                start_new_session=True)
        os.close(follower)
        follower = -1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # EIO: every holder of the follower side has closed it
                    break
                if not chunk:
                    break
                shown += chunk
                if answer is not None and b"?" in shown:
                    os.write(leader, answer.encode() + b"\n")
                    answer = None
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
        code = proc.wait(timeout=30)
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)
    return code, shown.decode(errors="replace").replace("\r\n", "\n")
