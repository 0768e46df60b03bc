"""Tables whose values stay whole: on a narrow terminal columns are shortened or dropped, never wrapped.

A value split across two lines (`poweredO`/`n`, an IP cut after its third
octet) can be neither read nor copied. So a row is always one line: when
the terminal is too narrow for every column, the columns with the highest
`drop` number are first shortened (where they have a short form) and then
left out, as kubectl leaves out its wide columns; `-o wide` shows them all.
Off a terminal (a pipe, cron, CI) nothing is dropped or shortened.

Columns carry their own priority, so a command's table is a list of
columns anyone can add to without re-deciding the others' order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

GAP = "  "


@dataclass(frozen=True)
class Column:
    """One column: its header, how early it goes on a narrow terminal, and an optional short form.

    drop: 0 is never dropped; among the rest, the highest number goes first.
    short: maps the column's values (all rows at once, so a shortened id can stay unique) to shorter ones.
    """

    name: str
    drop: int = 0
    short: Callable[[list[str]], list[str]] | None = None


def layout(columns: Sequence[Column | str], rows: Sequence[Sequence[object]], width: int | None) -> list[str]:
    """The table's lines. width None: every column at full width (a pipe, or -o wide)."""
    cols = [c if isinstance(c, Column) else Column(c) for c in columns]
    values = [[("" if v is None else str(v)) for v in column] for column in zip(*rows)] or [[] for _ in cols]
    shown = list(range(len(cols)))
    if width is not None:
        # Least important first; a column with a short form is shortened before anything is dropped.
        order = sorted((i for i in shown if cols[i].drop), key=lambda i: -cols[i].drop)
        for i in order:
            if _width(cols, values, shown) <= width:
                break
            if cols[i].short is not None:
                values[i] = cols[i].short(values[i])
        for i in order:
            if _width(cols, values, shown) <= width:
                break
            shown.remove(i)
    widths = {i: max([len(cols[i].name), *(len(v) for v in values[i])]) for i in shown}
    lines = [GAP.join(cols[i].name.ljust(widths[i]) for i in shown).rstrip()]
    for r in range(len(rows)):
        lines.append(GAP.join(values[i][r].ljust(widths[i]) for i in shown).rstrip())
    return lines


def _width(cols: list[Column], values: list[list[str]], shown: list[int]) -> int:
    return sum(max([len(cols[i].name), *(len(v) for v in values[i])]) for i in shown) + len(GAP) * (len(shown) - 1)


def unique_prefixes(values: list[str], shortest: int = 8) -> list[str]:
    """Each value cut to the shortest prefix (at least `shortest` long) that no other value shares.

    How member ids are shortened: `etcdctl member list` prints them in hex, and a
    unique prefix still names one member (`etcdctl member remove` wants the whole id:
    `-o wide` or `--json` show it).
    """
    present = [v for v in values if v]
    out = []
    for value in values:
        n = min(len(value), shortest)
        while n < len(value) and sum(1 for other in present if other.startswith(value[:n])) > 1:
            n += 1
        out.append(value[:n])
    return out
