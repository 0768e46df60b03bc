"""The one Reporter protocol: how the core tells the CLI what it is doing, without printing.

Core functions take a reporter; the CLI's Terminal implements it, and
QuietReporter serves callers that want nothing shown (status, tests).
"""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    def event(self, message: str) -> None: ...

    def transfer(self, label: str, done: int, total: int) -> None: ...

    def warn(self, message: str) -> None: ...

    def stage(self, node: str, stage: str) -> None: ...


def stage(reporter, node: str, what: str) -> None:
    """Tell reporter a node reached a stage; one without stages (an older or a test reporter) gets an event."""
    report = getattr(reporter, "stage", None)
    if report is not None:
        report(node, what)
    else:
        reporter.event(f"{node}: {what}")


class QuietReporter:
    def event(self, message: str) -> None:
        pass

    def transfer(self, label: str, done: int, total: int) -> None:
        pass

    def warn(self, message: str) -> None:
        pass

    def stage(self, node: str, stage: str) -> None:
        pass
