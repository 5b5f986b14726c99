"""Progress bars of the platform: one layout that keeps every figure whole in an 80-column terminal.

The description gives way first (cut with an ellipsis), then the bar shrinks; counts, rates and times are
never cut (they are what a reader looks at).
"""

from __future__ import annotations

from typing import Any

from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Column

DESCRIPTION_WIDTH = 28


def whole() -> Column:
    """The table column of a figure (count, rate, time): never cut, never wrapped."""
    return Column(no_wrap=True)


def count() -> MofNCompleteColumn:
    return MofNCompleteColumn(table_column=whole())


def elapsed() -> TimeElapsedColumn:
    return TimeElapsedColumn(table_column=whole())


def remaining() -> TimeRemainingColumn:
    return TimeRemainingColumn(table_column=whole())


def text(template: str) -> TextColumn:
    """A figure rendered from a template over the task (e.g. ``"{task.fields[rate]:,.1f} items/s"``)."""
    return TextColumn(template, table_column=whole())


def progress_bar(*figures: ProgressColumn, description: str = "{task.description}",
                 description_width: int = DESCRIPTION_WIDTH, **kwargs: Any) -> Progress:
    """A rich Progress: description (at most ``description_width`` columns), a bar that fills what is left,
    then ``figures`` (made with :func:`count`, :func:`text`, ... so that none is cut). ``kwargs`` go to
    :class:`rich.progress.Progress`."""
    label = TextColumn(description, table_column=Column(no_wrap=True, overflow="ellipsis",
                                                        max_width=description_width))
    bar = BarColumn(bar_width=None, table_column=Column(min_width=4))
    return Progress(label, bar, *figures, **{"expand": True, **kwargs})
