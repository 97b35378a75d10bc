"""Tables that fit the terminal without splitting a word: the table is laid out when it is
printed, for the width it is printed at.

rich's own fitting narrows the widest columns first, below the longest word they hold, and then
folds that word across lines (`measureme`/`nts`, `Telecommun`/`ication`). Here every column gets
at least its longest word (one longer than `Col.longest`, such as a long URL, is cut with "…"),
the spare width goes to the columns whose cells would otherwise wrap, and when even that does not
fit, the least important columns are left out, the first to go the highest `drop` (a caption
names them); only when nothing more can be left out are the longest words cut with "…". Output
that is not a terminal has no width (probe.cli.base), so a log or a pipe always gets every
column at its natural width.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich import box as boxes
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

# rich's JustifyMethod, spelled out for mypy without importing a private alias.
_JUSTIFY = ("left", "right", "center")
_NARROWEST = 8


@dataclass(frozen=True)
class Col:
    """One column: its header; `wrap` False for short values that stay on one line (ids,
    times, counts); `drop` > 0 when it may be left out on a narrow terminal (higher goes
    first); `longest`: the widest a word may make it before it is cut with "…"; `spill`: when
    left out, its non-empty cells follow the table as lines (`KEY: cell`, KEY the row's
    `FittedTable.key` cells), wrapped at words, so that nothing in it is lost; `grow` False: it
    gets spare width only once every growing column has its natural width (a long target cut
    with "…" rather than a sentence squeezed into a narrow column)."""

    header: str
    wrap: bool = True
    drop: int = 0
    justify: str = "left"
    longest: int = 30
    spill: bool = False
    grow: bool = True


@dataclass
class FittedTable:
    """A rich table whose column widths are chosen at print time (see the module docstring).
    Cells are rich markup, already escaped by the caller (probe.cli.terminal.plain)."""

    columns: Sequence[Col]
    title: str | None = None
    caption: str | None = None
    box: boxes.Box | None = boxes.HEAVY_HEAD
    pad_edge: bool = True
    show_edge: bool = True
    key: tuple[int, ...] = (0,)
    rows: list[tuple[str, ...]] = field(default_factory=list)

    def add_row(self, *cells: str) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        self.rows.append(cells)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.fit(console, options)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self.fit(console, options))

    def fit(self, console: Console, options: ConsoleOptions) -> Group:
        """The table laid out for `options.max_width` (and the cells of left-out `spill`
        columns after it)."""
        width = options.max_width
        keep = list(range(len(self.columns)))
        texts = [[Text.from_markup(row[i]) for row in self.rows] for i in keep]
        heads = [Text(c.header) for c in self.columns]
        ranges = [self._range(console, options, i, heads[i], texts[i]) for i in keep]
        while True:
            extra = self._extra(len(keep))
            lowest = sum(ranges[i][0] for i in keep) + extra
            droppable = [i for i in keep if self.columns[i].drop > 0]
            if lowest <= width or not droppable:
                break
            keep.remove(max(droppable, key=lambda i: (self.columns[i].drop, i)))
        # Still too wide with every droppable column gone: the wrapping columns' longest words
        # are cut with "…" (widest first, down to _NARROWEST), never folded.
        excess = sum(ranges[i][0] for i in keep) + self._extra(len(keep)) - width
        while excess > 0:
            wide = [i for i in keep if self.columns[i].wrap and ranges[i][0] > _NARROWEST]
            if not wide:
                break
            widest = max(wide, key=lambda i: ranges[i][0])
            ranges[widest] = (ranges[widest][0] - 1, ranges[widest][1])
            excess -= 1
        widths = self._widths(
            [ranges[i] for i in keep],
            [self.columns[i].grow for i in keep],
            width - self._extra(len(keep)),
        )
        left_out = [i for i in range(len(self.columns)) if i not in keep]
        caption = self.caption
        if left_out:
            headers = [
                self.columns[i].header + (" (below)" if self.columns[i].spill else "")
                for i in left_out
            ]
            note = f"left out at this width: {', '.join(headers)}"
            caption = f"{caption}\n{note}" if caption else note
        table = Table(
            title=self.title,
            title_justify="left",
            caption=caption,
            caption_justify="left",
            box=self.box,
            pad_edge=self.pad_edge,
            show_edge=self.show_edge,
            padding=(0, 1),
        )
        for i, column_width in zip(keep, widths, strict=True):
            column = self.columns[i]
            justify: Any = column.justify if column.justify in _JUSTIFY else "left"
            table.add_column(
                column.header,
                justify=justify,
                no_wrap=not column.wrap,
                overflow="ellipsis",
                width=column_width,
            )
        for row in self.rows:
            table.add_row(*(row[i] for i in keep))
        spilled = [
            Text.from_markup(f"{' '.join(row[k] for k in self.key)}: {row[i]}")
            for i in left_out
            if self.columns[i].spill
            for row in self.rows
            if row[i]
        ]
        return Group(table, *spilled)

    def _range(
        self,
        console: Console,
        options: ConsoleOptions,
        index: int,
        head: Text,
        cells: list[Text],
    ) -> tuple[int, int]:
        """The narrowest a column may be without splitting a word, and its natural width."""
        column = self.columns[index]
        narrowest = widest = 1
        for text in (head, *cells):
            low, high = Measurement.get(console, options.update_width(10**6), text)
            widest = max(widest, high)
            narrowest = max(narrowest, min(low if column.wrap else high, column.longest))
        return narrowest, widest

    def _extra(self, columns: int) -> int:
        """The width of the borders and padding around `columns` columns."""
        padding = 2 * columns - (0 if self.pad_edge else 2)
        if self.box is None:
            return padding
        return padding + (columns - 1) + (2 if self.show_edge else 0)  # rules and edges

    @staticmethod
    def _widths(
        ranges: Sequence[tuple[int, int]], grow: Sequence[bool], room: int
    ) -> list[int | None]:
        """Each column's width: its natural width when everything fits (None: rich's own),
        else its narrowest plus a share of what is left, given first to the growing columns
        that need it most (water-filling up to each one's natural width), then to the rest."""
        if sum(high for _, high in ranges) <= room:
            return [None] * len(ranges)
        widths = [low for low, _ in ranges]
        spare = room - sum(widths)
        while spare > 0:
            wanting = [i for i, (_, high) in enumerate(ranges) if widths[i] < high]
            wanting = [i for i in wanting if grow[i]] or wanting
            if not wanting:
                break
            share = max(1, spare // len(wanting))
            for i in sorted(wanting, key=lambda i: widths[i] - ranges[i][1]):
                grant = min(share, ranges[i][1] - widths[i], spare)
                widths[i] += grant
                spare -= grant
                if spare == 0:
                    break
        return list(widths)
