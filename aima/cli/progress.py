"""The live progress display of ``aima analyze``: one row per file, one column per step (rich).

A cell shows ``…`` while the step has not reported for the file, ``✓`` succeeded, ``-`` not run,
``✗`` failed. The display goes to stderr and is drawn only on a terminal; elsewhere (pipes, CI) it
stays silent and the summary that follows says everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.table import Table

MARKS = {"succeeded": "[green]✓[/]", "not_run": "[yellow]-[/]", "failed": "[red]✗[/]"}


class Board:
    """The table of files and steps, redrawn as outcomes arrive."""

    def __init__(self, steps: Sequence[str], *, console: Console | None = None) -> None:
        self._steps = list(steps)
        self._files: dict[str, str] = {}
        self._cells: dict[tuple[str, str], str] = {}
        self._console = console or Console(stderr=True)
        self._live: Live | None = None

    def __enter__(self) -> Board:
        if self._console.is_terminal:
            self._live = Live(self._table(), console=self._console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(kind, value, tb)
            self._live = None

    def file(self, media_id: str, name: str) -> None:
        self._files.setdefault(media_id, name)
        self._redraw()

    def outcome(self, media_id: str, step: str, status: str) -> None:
        if step not in self._steps:
            return
        self._cells[(media_id, step)] = status
        self._redraw()

    def outcome_all(self, step: str, status: str) -> None:
        """Mark ``step`` with ``status`` for every file (a step of the whole job, such as fuse)."""
        for media_id in self._files:
            self._cells[(media_id, step)] = status
        self._redraw()

    def _redraw(self) -> None:
        if self._live is not None:
            self._live.update(self._table())

    def _table(self) -> Table:
        table = Table(title="aima analyze", expand=False)
        table.add_column("file")
        for step in self._steps:
            table.add_column(step, justify="center")
        for media_id, name in self._files.items():
            cells = [MARKS.get(self._cells.get((media_id, step), ""), "…") for step in self._steps]
            table.add_row(name, *cells)
        return table
