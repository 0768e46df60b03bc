"""Plans and runs deploy, scale, rebuild, destroy and status from the pieces.

The order of steps is the point of this package:
* everything checkable offline (settings, node configs, the image's
  signature) is checked before the first change in vSphere (prepare);
* each command is plan -> (show or confirm) -> apply, and apply carries out
  exactly the plan it is given; the decisions are pure functions (plan);
* nodes that exist, are ours and match the cluster file are left alone, so deploy twice = deploy once;
  those that differ are changed one at a time, quorum kept (converge.py);
* membership changes go one node at a time and never leave etcd without
  quorum: `member remove` before a VM goes, `member add` before one comes;
* every step is idempotent, so a run that stops anywhere is resumed by the next.

Modules: plan.py and desired.py decide (pure: no vSphere, no etcd, no pyVmomi; this package imports
nothing at start-up so they stay importable alone); deploy, rebuild, status and destroy are the executors,
each plan(run, ...) -> Plan and apply(run, plan) -> RunResult; converge.py is the rolling change deploy and
rebuild share; run.py opens a Run (open_run).
"""
