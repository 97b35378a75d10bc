"""A censorship measurement probe: async DNS, TCP, TLS and HTTP checks with controls.

`probe.__version__` is read from the installed package's metadata when it is first asked for:
importlib.metadata costs tens of milliseconds, and `python -m probe` imports this package before
probe/__main__.py can turn a Ctrl-C into a quiet exit (a Ctrl-C during that import printed a
traceback; tests/test_signals.py)."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    if name != "__version__":
        raise AttributeError(f"module 'probe' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("censorprobe")
    except PackageNotFoundError:  # running from a source tree that was not installed
        found = "0.0.0+source"
    globals()["__version__"] = found
    return found
