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


class QuietReporter:
    def event(self, message: str) -> None:
        pass

    def transfer(self, label: str, done: int, total: int) -> None:
        pass

    def warn(self, message: str) -> None:
        pass
