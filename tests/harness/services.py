"""Starting and stopping the test bed: the vCenter simulator and the guest simulator.

Used by pytest fixtures and by `make demo`. Every process started here is
stopped by the same object's stop(), and every file lives under its workdir.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VCSIM_BIN = ROOT / "build" / "vcsim"
# Distinctive, so the suite can grep everything vmcoreos printed for it (it must never appear).
USER, PASSWORD = "vmcoreos-admin", "Vq7-test-Pa55word-3f9c"
# Planted as a private key in node configs (tests/e2e/test_secrets.py); it must never appear either.
MARKER = "VMCOREOS-SECRET-MARKER-7f3a9c"
# "strict" (the default) makes the test bed behave as a real vCenter where the simulator is
# lenient (Vcsim and GuestSim strict=True); "lenient" is upstream vcsim. The conftest fixtures read it.
PROFILE_ENV = "VMCOREOS_TEST_PROFILE"


def strict_profile() -> bool:
    """Whether fixtures build the strict bed: yes unless VMCOREOS_TEST_PROFILE=lenient (default: strict)."""
    profile = os.environ.get(PROFILE_ENV) or "strict"
    if profile not in ("strict", "lenient"):
        raise RuntimeError(f"{PROFILE_ENV}={profile!r}: use strict or lenient")
    return profile == "strict"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_file(path: Path, proc: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} was not ready within {timeout}s")
        time.sleep(0.05)


def stop_process(proc: subprocess.Popen | None, timeout: float = 10) -> int | None:
    """SIGTERM, then SIGKILL after timeout seconds; the exit code (None: there was no process)."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@dataclass
class Vcsim:
    """The vCenter simulator. strict=True: a separate NFC host with its own certificate,
    DRS off, vCenter's name and memory limits, thin disks, a twin port group (see
    tests/harness/vcsim/overlay/vmcoreos_strict.go). esx=True: a standalone ESXi instead.
    Strict only: drs=True leaves DRS on; task_delay: clone tasks run that many seconds,
    cancelable, and import leases initialize that long; task_progress_steps: such a task reports
    info.progress in that many even steps over the delay (0: none, as a queued task); lease_timeout: a lease with no
    progress call for that many seconds fails; nfc_advertise: the host:port leases name
    for NFC instead of the NFC listener's (nfc_listen), so a FaultProxy listening there
    and relaying to nfc_listen sees every upload.
    session_idle: sessions idle that many seconds expire (0: never).
    destroy_delay (strict only): Destroy_Task takes that many seconds, not cancelable.
    drop_answer: "METHOD[:N]": the simulator carries out the Nth call of METHOD (default the
    first) and then resets the connection instead of answering, once (what a client sees when
    the network breaks after vCenter took a request; a TCP proxy cannot pick a request out of TLS).
    deny: privileges the user lacks ("Priv.Id" everywhere, "Priv.Id@name" on the entities of that name only):
    HasPrivilegeOnEntities reports them as not granted and the calls that need them fault with NoPermission.
    clone_power_on (strict only): "spec" powers a clone on when its spec says powerOn, "always" powers every clone
    on, either way in a task of its own power_on_delay seconds long after the clone task, as vCenter does.
    datastores: how many datastores (LocalDS_0, LocalDS_1, ...) every host mounts."""

    workdir: Path
    strict: bool = False
    esx: bool = False
    drs: bool = False
    task_delay: float = 0.0
    task_progress_steps: int = 0
    destroy_delay: float = 0.0
    lease_timeout: float = 0.0
    session_idle: float = 0.0
    nfc_advertise: str = ""
    drop_answer: str = ""
    deny: tuple[str, ...] = ()  # privilege IDs the user lacks (Priv.Id or Priv.Id@entity-name)
    clone_power_on: str = "spec"
    power_on_delay: float = 0.3
    datastore_free: int = 0  # strict only: every datastore's free bytes (0: the simulator's)
    datastore_type: str = ""  # strict only: every datastore's summary.type, e.g. "vsan"
    vsan_ftt: int = 1  # strict only: FTT of the vSAN default policy PBM names (0: PBM names none)
    datastore_thick: bool = False  # strict only: no datastore has thin provisioning
    nfc_cert_expired: bool = False  # strict only: the NFC host's certificate expired an hour ago
    datastores: int = 1
    proc: subprocess.Popen | None = None
    url: str = ""
    thumbprint: str = ""
    nfc_host: str = ""  # host:port of the strict bed's NFC "ESXi host", as leases name it
    nfc_listen: str = ""  # where that host really listens (nfc_host unless nfc_advertise)
    nfc_thumbprint: str = ""

    @property
    def cert(self) -> Path:
        return self.workdir / "vcsim-cert.pem"

    @property
    def nfc_cert(self) -> Path:
        return self.workdir / "nfc-host-cert.pem"

    @property
    def host_port(self) -> tuple[str, int]:
        rest = self.url.split("://", 1)[1].split("/", 1)[0]
        host, port = rest.rsplit(":", 1)
        return host, int(port)

    def start(self, listen: str = "127.0.0.1:0") -> "Vcsim":
        if not VCSIM_BIN.exists():
            raise RuntimeError(f"{VCSIM_BIN} is missing; run `make deps` first")
        self.workdir.mkdir(parents=True, exist_ok=True)
        info = self.workdir / "vcsim-info"
        info.unlink(missing_ok=True)  # a stale one would send us to a dead port
        log = open(self.workdir / "vcsim.log", "wb")
        # vcsim keeps its datastore in $TMPDIR; point it into our workdir so cleanup is ours.
        env = dict(os.environ, TMPDIR=str(self.workdir))
        args = [str(VCSIM_BIN), "-listen", listen, "-cert-out", str(self.cert), "-info-out", str(info),
                "-username", USER, "-password", PASSWORD]
        if self.strict:
            args += ["-strict", "-nfc-cert-out", str(self.nfc_cert), "-task-delay", f"{self.task_delay}s",
                     "-task-progress-steps", str(self.task_progress_steps),
                     "-lease-timeout", f"{self.lease_timeout}s", f"-drs={str(self.drs).lower()}",
                     "-destroy-delay", f"{self.destroy_delay}s", "-clone-power-on", self.clone_power_on,
                     "-power-on-delay", f"{self.power_on_delay}s", "-datastore-free", str(self.datastore_free),
                     "-datastore-type", self.datastore_type, f"-nfc-cert-expired={str(self.nfc_cert_expired).lower()}",
                     f"-datastore-thick={str(self.datastore_thick).lower()}", "-vsan-ftt", str(self.vsan_ftt)]
            if self.nfc_advertise:
                args += ["-nfc-advertise", self.nfc_advertise]
        if self.esx:
            args.append("-esx")
        if self.session_idle:
            args += ["-session-idle", f"{self.session_idle}s"]
        if self.drop_answer:
            args += ["-drop-answer", self.drop_answer]
        if self.deny:
            args += ["-deny-privilege", ",".join(self.deny)]
        if self.datastores != 1:
            args += ["-datastores", str(self.datastores)]
        self.proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        wait_file(info, self.proc, "vcsim")
        fields = dict(line.split("=", 1) for line in info.read_text().split())
        self.url, self.thumbprint = fields["url"], fields["thumbprint"]
        self.nfc_host, self.nfc_thumbprint = fields.get("nfc_host", ""), fields.get("nfc_thumbprint", "")
        self.nfc_listen = fields.get("nfc_listen", "")
        return self

    def env(self) -> dict[str, str]:
        """What a user would export to point vmcoreos at this vCenter."""
        return {
            "VMCOREOS_URL": self.url,
            "VMCOREOS_USERNAME": USER,
            "VMCOREOS_PASSWORD": PASSWORD,
            "VMCOREOS_CA_FILE": str(self.cert),
        }

    def connect(self):
        import ssl

        from pyVim.connect import SmartConnect

        host, port = self.host_port
        ctx = ssl.create_default_context(cafile=str(self.cert))
        return SmartConnect(host=host, port=port, user=USER, pwd=PASSWORD, sslContext=ctx)

    def stop(self) -> None:
        stop_process(self.proc)


@dataclass
class GuestSim:
    vcsim: Vcsim
    workdir: Path
    dhcp_range: str = "127.0.200.10-127.0.200.250"
    boot_delay: float = 0.0
    # Guest tools as real VMware Tools report them: fe80:: first, then several NICs in
    # guest.net and an overlay address as guest.ipAddress for a while (see guestsim.py).
    strict: bool = False
    proc: subprocess.Popen | None = None

    @property
    def state_dir(self) -> Path:
        return self.workdir / "guests"

    def start(self) -> "GuestSim":
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "guestsim.log", "wb")
        env = dict(os.environ, GUESTSIM_PASSWORD=PASSWORD)
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "tests.harness.guestsim",
                "--url", self.vcsim.url,
                "--ca-file", str(self.vcsim.cert),
                "--username", USER,
                "--password-env", "GUESTSIM_PASSWORD",
                "--state-dir", str(self.state_dir),
                "--dhcp-range", self.dhcp_range,
                "--boot-delay", str(self.boot_delay),
                *(["--strict-tools"] if self.strict else []),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
        )
        log.close()
        wait_file(self.state_dir / "ready", self.proc, "guest simulator")
        return self

    def node(self, name: str) -> dict:
        import json

        return json.loads((self.state_dir / "nodes" / f"{name}.json").read_text())

    def stop(self) -> None:
        stop_process(self.proc, timeout=30)
