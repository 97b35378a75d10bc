"""Host names and URLs compared the way every layer compares them: a name without its final dot
in lower case, a URL by scheme, host, port and path."""

from __future__ import annotations

from urllib.parse import urlsplit


def normalise_host(host: str) -> str:
    return host.strip().rstrip(".").lower()


def normalise_url(url: str) -> str:
    """A URL compared by scheme, host, port and path: `https://X.com` equals `https://x.com/`."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return url.strip()
    scheme = parts.scheme.lower()
    host = normalise_host(parts.hostname or "")
    default = {"http": 80, "https": 443}.get(scheme)
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != default:
        netloc = f"{netloc}:{port}"
    path = parts.path or "/"
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{netloc}{path}{query}"
