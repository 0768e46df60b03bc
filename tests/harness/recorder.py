"""A reporter that keeps what it is told (events, transfer progress) for a test to read, where the tool's
reporter would print it."""

from __future__ import annotations


class Events:
    """The reporter an Http (or any core call) is given: each event line and each (done, total) kept."""

    def __init__(self):
        self.events: list[str] = []
        self.transfers: list[tuple[int, int]] = []

    def event(self, message):
        self.events.append(message)

    def transfer(self, label, done, total):
        self.transfers.append((done, total))
