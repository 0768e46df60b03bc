"""Plans and runs deploy, scale, rebuild, destroy and status from the pieces.

The order of steps is the point of this package:
* everything checkable offline (settings, node configs, the image's
  signature) is checked before the first change in vSphere (prepare);
* each command is plan -> (show or confirm) -> apply, and apply carries out
  exactly the plan it is given; the decisions are pure functions (plan);
* nodes that exist and are ours are left alone, so deploy twice = deploy once;
* membership changes go one node at a time and never leave etcd without
  quorum: `member remove` before a VM goes, `member add` before one comes;
* every step is idempotent, so a run that stops anywhere is resumed by the next.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from vmcoreos.cluster import deploy, destroy, rebuild, status
from vmcoreos.cluster.locking import session_for
from vmcoreos.cluster.plan import DeployPlan, DestroyPlan, RebuildPlan
from vmcoreos.prepare import Prepared, claim_discovery, prepare
from vmcoreos.cluster.results import NodeStatus, RunResult
from vmcoreos.cluster.run import Run
from vmcoreos.reporting import QuietReporter, Reporter
from vmcoreos.connection import Connection

__all__ = [
    "DeployPlan", "DestroyPlan", "NodeStatus", "Prepared", "RebuildPlan", "Run", "RunResult", "claim_discovery",
    "deploy", "destroy", "open_run", "prepare", "rebuild", "session_for", "status",
]


@contextlib.contextmanager
def open_run(prepared: Prepared, conn: Connection, *, reporter: Reporter = QuietReporter(), lock: bool = True,
             parallel: int = 4, adopt_template: bool = False, cache_dir: Path | None = None,
             retries: int = 5) -> Iterator[Run]:
    """A Run on a fresh vSphere session, under this host's lock for the cluster unless lock=False."""
    with session_for(prepared.settings, conn, lock=lock) as session:
        yield Run(prepared.settings, session, reporter, prepared.user, parallel=parallel, adopt_template=adopt_template,
                  cache_dir=cache_dir, retries=retries)
