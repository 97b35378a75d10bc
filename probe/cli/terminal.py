"""Text from outside made safe for the volunteer's terminal: the one helper every sink uses.

Target names, titles, platform names, failure details, headers and notes come from test lists,
config files, merged databases, servers and the helper: any of them may carry rich markup
(`[link=...]` makes a hyperlink, a stray `[/x]` raises MarkupError and would abort a scheduled run
before it measures) or terminal controls (an OSC or CSI sequence such as `ESC ] 8` links or
`ESC [ 2 J`, which clears the screen; ECMA-48 5.5) or Unicode bidirectional overrides that make
the printed text read differently from what it is (CVE-2021-42574, "Trojan Source"). `plain()`
escapes the markup and shows every such character as a visible escape (`\\x1b`, `\\u202e`).
"""

from __future__ import annotations

import re

from rich.markup import escape

# C0 controls but tab, DEL and the C1 controls (ESC starts CSI and OSC; 0x9b is a one-byte CSI),
# and the bidirectional formatting characters: embeddings and overrides (U+202A-U+202E), isolates
# (U+2066-U+2069) and the marks (U+061C, U+200E, U+200F) (Unicode UAX #9).
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match[str]) -> str:
    return repr(match.group())[1:-1]


def plain(text: object) -> str:
    """Text from outside (a test list, a config, a database, a server) made safe to print as rich
    markup: the markup is escaped and control and bidi characters are shown as escapes."""
    return escape(_UNSAFE.sub(_visible, str(text)))


def visible(text: object) -> str:
    """The same for output printed without markup (markup=False, plain print): only the control
    and bidi characters are made visible."""
    return _UNSAFE.sub(_visible, str(text))
