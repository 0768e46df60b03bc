"""The bench's bed and how the tool runs on it: a simulator that counts requests and I/O (CountingVcsim),
a fresh simulator + guest simulator per measurement (Bed), and each run of `vmcoreos` as a subprocess with
its wall time, peak memory and I/O counters (run_measured, Bench). bench/measurements.py uses them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import yaml

from tests.harness.services import ROOT, GuestSim, Vcsim, wait_file


VMCOREOS = str(Path(sys.executable).with_name("vmcoreos"))
AGENT = "vmcoreos/"  # the User-Agent prefix vmcoreos sends (vmcoreos/vsphere/session.py)
MiB = 1 << 20
CLUSTER = "bench"
VSPHERE = {"datacenter": "DC0", "cluster": "DC0_C0", "datastore": "LocalDS_0", "network": "VM Network"}

# The members' tuning, through the node config's etcd-member drop-in as a user would write
# it: etcd's defaults, written out so a reader sees them. 50/500 ms changed nothing
# measurable here; 250/2500 ms made the forming of 30 members slower and erratic.
NODE_CONFIG = """#cloud-config
coreos:
  units:
    - name: etcd-member.service
      command: start
      drop_ins:
        - name: 20-bench.conf
          content: |
            [Service]
            Environment="ETCD_HEARTBEAT_INTERVAL={heartbeat}"
            Environment="ETCD_ELECTION_TIMEOUT={election}"
"""


def log(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


# -- the simulators -------------------------------------------------------------


class CountingVcsim(Vcsim):
    """vcsim counting requests by User-Agent and SOAP method (main.go's -stats-out)."""

    @property
    def stats_file(self) -> Path:
        return self.workdir / "stats.json"

    def start(self, listen: str = "127.0.0.1:0") -> Self:
        # Through the environment, so the harness's own start() (flags, credentials) is reused as is.
        os.environ["VCSIM_STATS_OUT"] = str(self.stats_file)
        (self.workdir / "vcsim-info").unlink(missing_ok=True)  # a stale one names a dead vcsim
        try:
            return super().start(listen)
        finally:
            del os.environ["VCSIM_STATS_OUT"]

    def stats(self) -> Stats:
        """The counts so far: vcsim writes them when it gets SIGUSR1."""
        self.stats_file.unlink(missing_ok=True)
        self.proc.send_signal(signal.SIGUSR1)
        wait_file(self.stats_file, self.proc, "vcsim's stats", timeout=10)
        return Stats(json.loads(self.stats_file.read_text()))


@dataclass
class Stats:
    raw: dict

    def soap(self, prefix: str = AGENT) -> Counter:
        out: Counter = Counter()
        for agent, methods in (self.raw.get("soap") or {}).items():
            if agent.startswith(prefix):
                out.update(methods)
        return out

    def uploads(self) -> list[dict]:
        return list(self.raw.get("uploads") or [])

    def since(self, before: Stats) -> Delta:
        return Delta(self.soap() - before.soap(), self.uploads()[len(before.uploads()):])


@dataclass
class Delta:
    """What vmcoreos asked of vCenter between two snapshots."""

    soap: Counter
    uploads: list[dict]  # from any client: vmcoreos's own upload carries no User-Agent of its own

    @property
    def requests(self) -> int:
        return sum(self.soap.values())

    @property
    def tasks(self) -> int:
        return sum(n for m, n in self.soap.items() if m.endswith("_Task") or m == "ImportVApp")


_subnets = itertools.count(1)


def fresh_subnet() -> str:
    # 127.77.x.0/24, away from the test suite's 127.10+.x.
    return f"127.77.{next(_subnets)}"


@dataclass
class Bed:
    """A fresh vcsim and guest simulator, stopped (etcd members included) on exit."""

    workdir: Path
    subnet: str = field(default_factory=fresh_subnet)
    vcsim: CountingVcsim | None = None
    guests: GuestSim | None = None
    port: int = 0  # vcsim's port on the subnet's .1; 0: any free port on 127.0.0.1

    def __enter__(self) -> Self:
        self.vcsim = CountingVcsim(self.workdir / "vcsim")
        try:
            self.vcsim.start(f"{self.subnet}.1:{self.port}" if self.port else "127.0.0.1:0")
            self.new_guests()
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def new_guests(self) -> None:
        """A fresh guest simulator (its etcd members go with the old one) on a fresh subnet."""
        if self.guests is not None:
            self.guests.stop()
            self.subnet = fresh_subnet()
        self.guests = GuestSim(self.vcsim, self.workdir / f"guests-{self.subnet}",
                               dhcp_range=f"{self.subnet}.100-{self.subnet}.199")
        self.guests.start()

    def __exit__(self, exc_type=None, *exc) -> None:
        if self.guests is not None:
            self.guests.stop()
        if self.vcsim is not None:
            self.vcsim.stop()
        if exc_type is None:  # on failure the logs stay, for --keep
            shutil.rmtree(self.workdir, ignore_errors=True)


# -- running the tool -----------------------------------------------------------


@dataclass
class Run:
    seconds: float
    rss_mb: float
    code: int
    stdout: str
    events: list[tuple[float, str]]  # (seconds since start, stderr line)
    io: dict[str, int] = field(default_factory=dict)  # /proc/<pid>/io of the exited tool, its children included

    @property
    def stderr(self) -> str:
        return "\n".join(line for _, line in self.events)

    def at(self, text: str) -> float | None:
        """When the first stderr line containing text appeared."""
        return next((round(t, 2) for t, line in self.events if text in line), None)


def run_measured(cmd: list[str], env: dict, timeout: float) -> Run:
    """Wall time, peak RSS (the child's ru_maxrss from os.wait4) and timestamped stderr of one process."""
    events: list[tuple[float, str]] = []
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE,
                                cwd=ROOT, text=True, errors="replace")

        def read_stderr() -> None:
            for line in proc.stderr:
                events.append((time.perf_counter() - start, line.rstrip("\n")))

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            # Wait for the exit without reaping, so /proc/<pid>/io can still be read: a zombie's
            # counters are final and already include every child it reaped (gpgv, say).
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            seconds = time.perf_counter() - start
            io = read_io(proc.pid)
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            os.wait4(proc.pid, 0)
            raise
        finally:
            killer.cancel()
        reader.join()
        proc.stderr.close()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return Run(seconds, usage.ru_maxrss / 1024, proc.returncode, out.read().decode(errors="replace"), events, io)


def read_io(pid: int) -> dict[str, int]:
    """/proc/<pid>/io as numbers (rchar: every read(), files, pipes and sockets; read_bytes: page-cache misses)."""
    return parse_io(Path(f"/proc/{pid}/io").read_text())


def parse_io(text: str) -> dict[str, int]:
    return {key.strip(): int(value) for key, value in (line.split(":", 1) for line in text.splitlines() if ":" in line)}


# "Image bytes read" is measured on the image file itself: it is dropped from the page cache
# before the run and its resident bytes are counted after it (fincore). That counts a read by
# any process of the run (the tool, the gpgv it starts, an mmap) and nothing else (sockets,
# pipes, Python's own modules, all of which rchar mixes in); a read of even one byte shows as
# at least one page, so 0 is exact. It cannot count the same byte read twice: rchar, reported
# beside it, shows the passes.


def evict(path: Path) -> None:
    """Drop a file from the page cache (written back first: dirty pages cannot be dropped)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    left = resident_bytes(path)
    if left:
        raise RuntimeError(f"{path}: {left} bytes stayed in the page cache after POSIX_FADV_DONTNEED")


def resident_bytes(path: Path) -> int:
    """Bytes of the file in the page cache (util-linux fincore)."""
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--raw", "--output", "RES", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


@dataclass
class Bench:
    work: Path
    args: argparse.Namespace
    env: dict = field(default_factory=dict)
    node_config: Path | None = None
    key: Path | None = None
    keyring: Path | None = None  # the same key, binary, for gpgv alone

    @classmethod
    def create(cls, work: Path, args: argparse.Namespace) -> Self:
        """A bench whose runs keep their locks, cache and node config under work, away from the user's."""
        bench = cls(work, args)
        bench.env = {k: v for k, v in os.environ.items() if not k.startswith(("VMCOREOS_", "GOVC_"))}
        bench.env.update(VMCOREOS_LOCK_DIR=str(work / "locks"), VMCOREOS_CACHE_DIR=str(work / "cache"))
        bench.node_config = work / "node.yaml"
        bench.node_config.write_text(NODE_CONFIG.format(heartbeat=args.heartbeat_ms, election=args.election_ms))
        return bench

    @property
    def linked(self) -> bool:
        # The deploy runs use linked clones: vmcoreos's datastore check counts a full clone at its
        # disk's capacity (12 GiB for Flatcar), so 30 full clones would not fit most disks, and
        # vcsim creates linked and full clones alike.
        return not self.args.full_clones

    def cluster_file(self, bed: Bed, timeout: float, *, linked: bool) -> Path:
        path = bed.workdir / f"cluster-{bed.subnet}.yaml"
        data = {
            "cluster": CLUSTER,
            "count": 1,
            "vsphere": VSPHERE,
            "node": {
                "cpus": 1,
                "memory_mb": 512,
                "config": str(self.node_config),
                "network": {"mode": "static", "addresses": [f"{bed.subnet}.11-{bed.subnet}.90/8"]},
            },
            "etcd": {"bootstrap": "static"},
            "wait": {"timeout": timeout},
        }
        if linked:
            data["node"]["linked_clone"] = True
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def vmcoreos(self, bed: Bed, args: list[str], timeout: float = 900) -> Run:
        env = dict(self.env, **bed.vcsim.env())
        return run_measured([VMCOREOS, *args], env, timeout)

    def deploy(self, bed: Bed, ova: Path, count: int, *, what: str, linked: bool = False) -> Run:
        wait = 120 + 10 * count
        cluster = self.cluster_file(bed, wait, linked=linked)
        run = self.vmcoreos(bed, [
            "deploy", "-c", str(cluster), "--count", str(count), "--ova", str(ova),
            "--trusted-key", str(self.key), "--parallel", str(self.args.parallel),
        ], timeout=wait + 120)
        if run.code != 0:
            raise RuntimeError(f"{what}: vmcoreos deploy exited with {run.code}: {run.stderr.strip()[-3000:]}"
                               f" (logs: {bed.workdir}, kept with --keep)")
        return run

    def destroy_nodes(self, bed: Bed) -> None:
        cluster = self.cluster_file(bed, 60, linked=False)
        run = self.vmcoreos(bed, ["destroy", "-c", str(cluster), "--yes", "--quiet"])
        if run.code != 0:
            raise RuntimeError(f"vmcoreos destroy exited with {run.code}: {run.stderr.strip()}")
