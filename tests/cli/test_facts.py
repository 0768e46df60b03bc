"""Messages with the facts: the lock's holder, a declined prompt, an interrupt before any change."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import typer
import yaml

from tests.harness.runner import OUTPUT_LOG, STATE, VMCOREOS
from vmcoreos import hostlock
from vmcoreos.cli.application import App
from vmcoreos.errors import LockedError

HOLD = """
import sys, time
from vmcoreos import hostlock
with hostlock.host_lock("lab"):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_held_host_lock_names_its_holder_since_and_until(tmp_path, monkeypatch):
    # It showed only the lock file's path.
    monkeypatch.setenv("VMCOREOS_LOCK_DIR", str(tmp_path))
    holder = subprocess.Popen([sys.executable, "-c", HOLD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "VMCOREOS_LOCK_DIR": str(tmp_path)})
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(LockedError) as caught:
            with hostlock.host_lock("lab"):
                pass
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
        holder.stdout.close()
    message = caught.value.message
    assert message.startswith("another vmcoreos run holds the lock for cluster 'lab': ")
    assert f"host {socket.gethostname()!r}, PID {holder.pid}, user " in message
    assert ", since '20" in message and "until that run ends" in message and "let it finish and try again" in message
    # The holder's record goes with it: the next run takes the lock and records itself.
    assert not list(tmp_path.glob("*.owner"))
    with hostlock.host_lock("lab") as path:
        assert f'"pid": {os.getpid()}' in (tmp_path / "lab.lock.owner").read_text()
    assert not (tmp_path / "lab.lock.owner").exists() and path == tmp_path / "lab.lock"


def test_a_lock_whose_holder_has_not_recorded_itself_says_so(tmp_path, monkeypatch):
    import filelock

    monkeypatch.setenv("VMCOREOS_LOCK_DIR", str(tmp_path))
    with filelock.FileLock(str(tmp_path / "lab.lock")):
        with pytest.raises(LockedError, match="holds the lock for cluster 'lab': a run that has not recorded itself yet"):
            with hostlock.host_lock("lab"):
                pass


def test_a_declined_prompt_says_nothing_changed_and_exits_0(monkeypatch, capsys):
    # It exited 1 without a word.
    app = App()
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(typer, "confirm", lambda question, default: False)
    with pytest.raises(typer.Exit) as caught:
        app.confirm("delete them?", refusal="unused")
    assert caught.value.exit_code == 0
    assert capsys.readouterr().err == "vmcoreos: answered no; nothing was changed\n"


@pytest.mark.parametrize("applying, said", [
    (False, "vmcoreos: error: interrupted before any change; nothing was changed\n"),
    (True, "vmcoreos: error: interrupted; work in progress was rolled back where it could be\n"),
])
def test_an_interrupt_says_whether_anything_had_started(capsys, applying, said):
    app = App()
    with pytest.raises(typer.Exit) as caught:
        with app.run():
            if applying:
                app.applying()
            raise KeyboardInterrupt
    assert caught.value.exit_code == 130 and capsys.readouterr().err == said


def test_ctrl_c_while_connecting_says_nothing_was_changed(tmp_path):
    """The real process, interrupted while vCenter has not answered yet (a listener that never speaks TLS)."""
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump({"cluster": "lab", "count": 1}))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VMCOREOS_", "GOVC_"))}
        env.update(VMCOREOS_URL=f"https://127.0.0.1:{port}/sdk", VMCOREOS_USERNAME="u", VMCOREOS_PASSWORD="pw",
                   VMCOREOS_LOCK_DIR=str(tmp_path / "locks"), TMPDIR=str(STATE / "tmp"))
        proc = subprocess.Popen([VMCOREOS, "deploy", "--ova", str(tmp_path / "x.ova")], cwd=tmp_path, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        listener.settimeout(60)
        conn, _ = listener.accept()  # vmcoreos is connecting: nothing has been changed
        with conn:
            time.sleep(0.2)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
    OUTPUT_LOG.append(out + err)
    assert proc.returncode == 130, err
    assert err.splitlines()[-1] == "vmcoreos: error: interrupted before any change; nothing was changed"


@pytest.mark.parametrize("mode, owner, group, accepted", [
    (0o600, "us", "any", True),
    (0o640, "root", "ours", True),  # root:vmcoreos 640, as docs/operations.md installs it
    (0o640, "root", "other", False),  # a group we are not in may read it
    (0o660, "root", "ours", False),  # the group may change it
    (0o644, "root", "ours", False),
    (0o640, "nobody", "ours", False),  # the service user's group, but not root's file
])
def test_a_password_file_readable_by_a_group_only_as_a_service_credential(tmp_path, mode, owner, group, accepted):
    from vmcoreos.connection import connection_from
    from vmcoreos.errors import ConfigError

    path = tmp_path / "password"
    path.write_text("pw\n")
    uid = {"us": os.getuid(), "root": 0, "nobody": 65534}[owner]
    gid = {"any": os.getgid(), "ours": os.getegid(), "other": 65533}[group]
    os.chown(path, uid, gid)  # the suite runs as root (CI does)
    os.chmod(path, mode)
    if accepted:
        assert connection_from(url="https://vc/sdk", username="u", password_file=path, environ={}).password == "pw"
    else:
        with pytest.raises(ConfigError, match="is readable by others; run: chmod 600 .* chown root:GROUP"):
            connection_from(url="https://vc/sdk", username="u", password_file=path, environ={})
