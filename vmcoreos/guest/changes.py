"""What convert reports: one Change per key it mapped, added, removed, renamed, dropped or noted.

Its own module so that convert.py and the helpers it calls (ports.py, staticnet.py) share it
without importing each other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# Report actions.
MAPPED, ADDED, REMOVED, RENAMED, DROPPED, NOTE = "mapped", "added", "removed", "renamed", "dropped", "note"


@dataclass(frozen=True)
class Change:
    """One report line: what happened to which key, and why."""

    line: int  # 1-based line in the input; 0 when the change has no line
    action: str  # mapped added removed renamed dropped note
    path: str  # the input's key path (coreos.etcd2.listen_client_urls, coreos.units[1], …)
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.action}: {self.path}: {self.message}"

    def as_dict(self) -> dict:
        return asdict(self)
