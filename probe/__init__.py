"""A censorship measurement probe: async DNS, TCP, TLS and HTTP checks with controls."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("censorprobe")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
