"""Iran's national blockpage as the lab serves and injects it (OONI,
https://ooni.org/post/iran-internet-censorship/): status 403, a tiny page framing
http://10.10.34.34/?type=Invalid Site&policy=...
"""

from __future__ import annotations

BLOCKPAGE_STATUS = 403
BLOCKPAGE_BODY = (
    '<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1256">'
    "<title>M1-6\n</title></head><body>"
    '<iframe src="http://10.10.34.34/?type=Invalid Site&policy=MainPolicy" '
    'style="width: 100%; height: 100%" scrolling="no" marginwidth="0" marginheight="0" '
    'frameborder="0" vspace="0" hspace="0"></iframe></body></html>\r\n'
).encode("ascii")
BLOCKPAGE_MARKER = '<iframe src="http://10.10.34.34/?type=Invalid Site&policy=MainPolicy"'


def blockpage_response() -> bytes:
    """The whole HTTP response an on-path injector writes to the client."""
    head = (
        f"HTTP/1.1 {BLOCKPAGE_STATUS} Forbidden\r\n"
        "Content-Type: text/html\r\n"
        f"Content-Length: {len(BLOCKPAGE_BODY)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")
    return head + BLOCKPAGE_BODY
