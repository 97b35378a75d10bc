"""Control and bidirectional-formatting characters made visible: the one rule every place that
shows outside text to a person shares (the terminal, probe.cli.terminal; the HTML report,
analysis.report).

A terminal runs control sequences it is sent (an OSC or CSI sequence such as `ESC ] 8` links or
`ESC [ 2 J`, which clears the screen; ECMA-48 5.5), also from an HTML page shown with `cat` or a
pager, and Unicode bidirectional overrides make text read differently from what it is, in a
terminal and in a browser alike (CVE-2021-42574, "Trojan Source"). `visible()` shows every such
character as the escape Python writes for it (`\\x1b`, `\\u202e`).
"""

from __future__ import annotations

import re

# C0 controls but tab, DEL and the C1 controls (ESC starts CSI and OSC; 0x9b is a one-byte CSI),
# and the bidirectional formatting characters: embeddings and overrides (U+202A-U+202E), isolates
# (U+2066-U+2069) and the marks (U+061C, U+200E, U+200F) (Unicode UAX #9).
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    return repr(match.group())[1:-1]


def visible(text: object) -> str:
    """`text` with its control and bidi characters shown as escapes (`\\x1b`, `\\u202e`)."""
    return _UNSAFE.sub(_escape, str(text))
