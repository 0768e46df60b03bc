"""`make demo`: deploy three nodes on the bundled simulator and show the result.

Starts the vCenter simulator and the guest simulator, builds and signs a test
OVA with a throwaway key, then runs the real CLI exactly as a user would:
`vmcoreos deploy -c configs/demo.yaml --count 3`. Everything is stopped and
removed at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.harness.ova_builder import build_ova
from tests.harness.services import ROOT, GuestSim, Vcsim
from tests.harness.signing import TestSigner

VMCOREOS = str(Path(sys.executable).with_name("vmcoreos"))


def _say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def _run(args: list[str], env: dict) -> int:
    print("$ vmcoreos " + " ".join(args), flush=True)
    return subprocess.call([VMCOREOS, *args], env=env, cwd=ROOT)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="vmcoreos-demo-"))
    image_dir = ROOT / "ova" / "demo"
    image_dir.mkdir(parents=True, exist_ok=True)
    vcsim = Vcsim(work / "vcsim")
    guests = GuestSim(vcsim, work / "guestsim")
    code = 1
    try:
        _say("building a Flatcar-like OVA and signing it with a throwaway key")
        ova = build_ova(image_dir / "flatcar_production_vmware_ova.ova", disk_bytes=64 << 20)
        with TestSigner.create(work / "signer") as signer:
            signer.sign_detached(ova, image_dir / (ova.name + ".sig"))
            signer.write_public_key(image_dir / "demo-signing-key.asc")
        _say("starting the vCenter simulator (govmomi) and the guest simulator")
        vcsim.start()
        guests.start()
        print(f"vCenter: {vcsim.url}")
        env = dict(os.environ, **vcsim.env())
        _say("deploying three nodes")
        code = _run(["deploy", "-c", "configs/demo.yaml", "--count", "3"], env)
        if code != 0:
            print(f"\ndemo: deploy failed with exit code {code}; logs are in {work}", file=sys.stderr)
            return code
        _say("running deploy again: nothing to do")
        code = _run(["deploy", "-c", "configs/demo.yaml", "--count", "3", "--quiet"], env)
        return code
    finally:
        _say("stopping the simulators")
        guests.stop()
        vcsim.stop()
        if code == 0:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
