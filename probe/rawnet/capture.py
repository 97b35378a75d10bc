"""The packet capture every raw-packet measurement runs beside its ordinary socket: a scapy
AsyncSniffer on the route's interface whose accepted packets are timestamped (monotonic), and
the one place scapy is imported, on the first capture.

Packets are sent by ordinary kernel sockets (no fight with the kernel's own TCP stack) and read
by the sniffer, with a BPF filter when libpcap is installed and the same test in Python always.
Blocking scapy calls run in threads under explicit timeouts and every sniffer is stopped, on
cancellation too. Times are monotonic, taken when the sniffer thread reads a packet.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from types import SimpleNamespace, TracebackType
from typing import Any, Self

from probe.rawnet.headers import Details

# How long the sniffer may take to open its socket and start.
CAPTURE_START_TIMEOUT = 5.0
# How long a stopped sniffer thread may take to finish.
CAPTURE_STOP_TIMEOUT = 2.0
# Capture socket: linux/if_packet.h, asm-generic/socket.h (the socket module lacks them).
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_RCVBUFFORCE = 33
RECEIVE_BUFFER = 4 << 20


@functools.cache
def scapy() -> SimpleNamespace:
    """scapy's pieces, imported on first use: importing scapy takes most of a second."""
    from scapy.arch.common import compile_filter
    from scapy.config import conf
    from scapy.error import Scapy_Exception
    from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror
    from scapy.sendrecv import AsyncSniffer

    return SimpleNamespace(
        conf=conf,
        compile_filter=compile_filter,
        Scapy_Exception=Scapy_Exception,
        AsyncSniffer=AsyncSniffer,
        IP=IP,
        TCP=TCP,
        UDP=UDP,
        ICMP=ICMP,
        IPerror=IPerror,
        TCPerror=TCPerror,
        UDPerror=UDPerror,
    )


class CaptureError(Exception):
    """The packet capture could not be started."""


def route_interface(s: SimpleNamespace, address: str) -> str:
    """The interface the kernel routes `address` through (routes re-read: they may have changed)."""
    s.conf.route.resync()
    iface, _source, _gateway = s.conf.route.route(address)
    return str(iface)


class Capture:
    """An AsyncSniffer on one interface whose accepted packets are timestamped (monotonic) into
    `packets`, with a way for the event loop to wait until they satisfy a condition."""

    def __init__(
        self, s: SimpleNamespace, iface: str, bpf: str, accept: Callable[[Any], bool]
    ) -> None:
        self._s = s
        self.iface = iface
        self._bpf = bpf
        self._accept = accept
        self.bpf_used = False
        self.drops: int | None = None
        self.packets: list[tuple[float, Any]] = []
        self._loop = asyncio.get_running_loop()
        self._arrived = asyncio.Event()
        self._started = threading.Event()
        # _start and _stop run in worker threads; a cancelled start must not outlive its stop.
        self._lock = threading.Lock()
        self._closed = False
        self._socket: Any = None
        self._sniffer: Any = None

    def _on_packet(self, packet: Any) -> None:
        # Runs in the sniffer's thread: list.append is atomic, the event is set on the loop.
        self.packets.append((time.monotonic(), packet))
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(self._arrived.set)

    def _filter(self) -> str | None:
        # compile_filter needs libpcap; without it the Python test in `accept` does the filtering.
        try:
            self._s.compile_filter(self._bpf, self.iface)
        except (ImportError, OSError, ValueError, self._s.Scapy_Exception):
            return None
        return self._bpf

    def _start(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._open()

    def _open(self) -> None:
        bpf = self._filter()
        self.bpf_used = bpf is not None
        # scapy's L2Socket drops the interface's outgoing copies (on loopback each packet would
        # otherwise be read twice; only what arrives is evidence). Opened here rather than by the
        # sniffer so that its buffer can be enlarged (without BPF every packet of the interface
        # queues in it) and its drop counter read.
        self._socket = self._s.conf.L2socket(iface=self.iface, filter=bpf, promisc=False)
        with contextlib.suppress(OSError):
            self._socket.ins.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
        self._sniffer = self._s.AsyncSniffer(
            opened_socket=self._socket,
            lfilter=self._safe_accept,
            prn=self._on_packet,
            store=False,
            started_callback=self._started.set,
            quiet=True,
        )
        self._sniffer.start()
        deadline = time.monotonic() + CAPTURE_START_TIMEOUT
        while not self._started.wait(0.02):
            thread = self._sniffer.thread
            if self._sniffer.exception is not None or thread is None or not thread.is_alive():
                raise CaptureError(f"the sniffer did not start: {self._sniffer.exception}")
            if time.monotonic() > deadline:
                raise CaptureError("the sniffer did not start in time")

    def _safe_accept(self, packet: Any) -> bool:
        # A malformed packet must not kill the sniffer thread.
        try:
            return bool(self._accept(packet))
        except (AttributeError, IndexError, TypeError, ValueError, struct.error):
            return False

    def _stop(self) -> None:
        with self._lock:
            self._closed = True
            self._close()

    def _close(self) -> None:
        sniffer, self._sniffer = self._sniffer, None
        if sniffer is not None:
            try:
                if sniffer.running:
                    sniffer.stop(join=False)
            except self._s.Scapy_Exception:
                pass  # it had already stopped
            if sniffer.thread is not None:
                sniffer.thread.join(CAPTURE_STOP_TIMEOUT)
        capture_socket, self._socket = self._socket, None
        if capture_socket is not None:
            with contextlib.suppress(OSError):
                stats = capture_socket.ins.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
                self.drops = int(struct.unpack("II", stats)[1])
            capture_socket.close()

    async def __aenter__(self) -> Self:
        try:
            await asyncio.to_thread(self._start)
        # scapy raises ValueError for an interface that is gone (a USB adapter unplugged since
        # the route was read).
        except (OSError, ValueError, self._s.Scapy_Exception, CaptureError) as exc:
            await asyncio.to_thread(self._stop)
            raise CaptureError(str(exc)) from exc
        except BaseException:
            # Cancelled: the worker thread may still be starting the sniffer; _stop waits for it.
            await asyncio.to_thread(self._stop)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self._stop)

    async def wait(self, done: Callable[[], bool], seconds: float) -> bool:
        """Wait up to `seconds` for `done()` to hold over the packets; return whether it does."""
        try:
            async with asyncio.timeout(max(seconds, 0.0)):
                while not done():
                    self._arrived.clear()
                    if done():
                        break
                    await self._arrived.wait()
        except TimeoutError:
            return done()
        return True


# A MAC address as error messages write it (aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff, aabb.ccdd.eeff),
# and the interface names systemd derives from one (udev's net_id builtin, "x" + the MAC:
# wlx00c0ca123456 for a USB Wi-Fi adapter, enx... for USB Ethernet, wwx... for WWAN).
_MAC = re.compile(
    r"(?<![0-9a-f:.-])(?:[0-9a-f]{2}(?:([:-])[0-9a-f]{2})(?:\1[0-9a-f]{2}){4}"
    r"|[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4})(?![0-9a-f:.-])",
    re.IGNORECASE,
)
_MAC_NAMED = re.compile(r"\b(?:wl|en|ww|sl|ib)x[0-9a-f]{12}\b", re.IGNORECASE)
INTERFACE = "<interface>"
MAC = "<mac>"


def local_interface_names() -> tuple[str, ...]:
    """This machine's network interface names (none when the platform cannot list them)."""
    try:
        return tuple(name for _, name in socket.if_nameindex())
    except OSError:
        return ()


def without_interfaces(text: str, names: Iterable[str] | None = None) -> str:
    """`text` with every interface name (`names`, default this machine's) and every MAC address
    replaced: a note about a capture names the interface it failed on, and a USB Wi-Fi adapter's
    name embeds the volunteer's MAC address."""
    found = local_interface_names() if names is None else tuple(names)
    for name in sorted({n for n in found if n}, key=len, reverse=True):
        text = re.sub(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])", INTERFACE, text)
    text = _MAC_NAMED.sub(INTERFACE, text)
    return _MAC.sub(MAC, text)


def unavailable_capture(exc: BaseException) -> Details:
    """The "not available" details of a capture that could not start (no interface name or MAC
    address in the note: it is stored)."""
    return {"available": False, "note": without_interfaces(f"packet capture failed: {exc}")}
