"""Text from outside made safe for the volunteer's terminal: the one helper every sink uses.

Target names, titles, platform names, failure details, headers and notes come from test lists,
config files, merged databases, servers and the helper: any of them may carry rich markup
(`[link=...]` makes a hyperlink, a stray `[/x]` raises MarkupError and would abort a scheduled run
before it measures) or terminal controls and bidi overrides (probe.visible). `plain()` escapes the
markup and shows every such character as a visible escape (`\\x1b`, `\\u202e`).
"""

from __future__ import annotations

from rich.markup import escape

from probe.visible import visible

__all__ = ["plain", "visible"]


def plain(text: object) -> str:
    """Text from outside (a test list, a config, a database, a server) made safe to print as rich
    markup: the markup is escaped and control and bidi characters are shown as escapes."""
    return escape(visible(text))
