"""Small network clients that prove what the lab does, independently of the probe: plain sockets,
ssl and dnspython, run inside a lab namespace. Reads a JSON list of checks on stdin, runs them
concurrently (threads), prints a JSON list of results in the same order.

    echo '[{"op": "connect", "address": "1.1.1.1", "port": 443}]' |
        ip netns exec <client ns> python3 -m tests.lab.netcheck

Ops (every one bounded by "timeout", seconds):
  resolve   {host}                          system resolver (getaddrinfo, IPv4)
  dns       {server, name, [qtype], [window]}  one UDP query; every response within `window`
  connect   {address, port}
  tls       {address, port, sni, [verify]}  TCP connect, then a TLS handshake with that SNI
  http      {url, [address], [method], [verify], [binary]}  one HTTP/1.1 request (Connection:
            close); the body is chunked-free text, and hex too with "binary"
  download  {url, address, [seconds]}       read the body for at most `seconds`; the rate
  send      {address, port, data_hex, [wait]}  connect, send, report what comes back
Any op may carry "after": seconds to wait before it starts (to start one while another runs).
Errors are reported as {"error": "ECONNRESET" | "ECONNREFUSED" | "timeout" | ...}.
"""

from __future__ import annotations

import errno
import json
import socket
import ssl
import struct
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import dns.message
import dns.rcode
import dns.rdatatype

Result = dict[str, Any]
_IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)
_IP_TTL = getattr(socket, "IP_TTL", 2)


def error_name(exc: BaseException) -> str:
    """A short, stable name for what went wrong."""
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.errno in (None, 0):
        return f"ssl: {exc.reason}"
    if isinstance(exc, socket.gaierror):
        return f"gaierror: {exc.strerror}"
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return f"{type(exc).__name__}: {exc}"


def _connect(address: str, port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection((address, port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def op_resolve(check: Result) -> Result:
    # getaddrinfo has no timeout of its own: the lab's resolv.conf bounds it (timeout:2).
    infos = socket.getaddrinfo(check["host"], None, socket.AF_INET, socket.SOCK_STREAM)
    return {"addresses": list(dict.fromkeys(str(info[4][0]) for info in infos))}


def op_dns(check: Result) -> Result:
    """One UDP query; keeps listening for `window` seconds to see a second (real) answer."""
    timeout = float(check.get("timeout", 3))
    window = float(check.get("window", 1.0))
    query = dns.message.make_query(check["name"], check.get("qtype", "A"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.IPPROTO_IP, _IP_RECVTTL, 1)
        sock.connect((check["server"], 53))
        started = time.monotonic()
        sock.send(query.to_wire())
        responses: list[Result] = []
        deadline = started + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sock.settimeout(remaining)
            try:
                data, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(4))
            except TimeoutError:
                break
            ttl = None
            for level, kind, value in ancillary:
                if level == socket.IPPROTO_IP and kind == _IP_TTL:
                    ttl = struct.unpack("i", value[:4])[0]
            response = dns.message.from_wire(data)
            responses.append(
                {
                    "received_ms": round((time.monotonic() - started) * 1000, 1),
                    "rcode": dns.rcode.to_text(response.rcode()),
                    "addresses": [
                        item.to_text()
                        for rrset in response.answer
                        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
                        for item in rrset
                    ],
                    "ip_ttl": ttl,
                }
            )
            if len(responses) == 1:
                deadline = min(deadline, time.monotonic() + window)
    return {"responses": responses}


def op_connect(check: Result) -> Result:
    started = time.monotonic()
    with _connect(check["address"], int(check["port"]), float(check.get("timeout", 3))):
        return {"connected": True, "connect_ms": round((time.monotonic() - started) * 1000, 1)}


def _context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _certificate_summary(tls: ssl.SSLSocket) -> Result:
    der = tls.getpeercert(binary_form=True)
    if der is None:
        return {}
    from cryptography import x509  # only for reporting who issued the certificate

    certificate = x509.load_der_x509_certificate(der)
    return {"issuer": certificate.issuer.rfc4514_string()}


def op_tls(check: Result) -> Result:
    timeout = float(check.get("timeout", 3))
    try:
        sock = _connect(check["address"], int(check["port"]), timeout)
    except OSError as exc:
        return {"connected": False, "handshake": False, "error": error_name(exc)}
    result: Result = {"connected": True}
    try:
        with _context(bool(check.get("verify", True))).wrap_socket(
            sock, server_hostname=check["sni"]
        ) as tls:
            result.update({"handshake": True, "version": tls.version()})
            result.update(_certificate_summary(tls))
    except (OSError, ssl.SSLError) as exc:
        result.update({"handshake": False, "error": error_name(exc)})
    return result


def _request_bytes(check: Result, host: str, path: str) -> bytes:
    method = check.get("method", "GET")
    body = str(check.get("body", "")).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: lab-netcheck\r\n"
    head += f"Content-Length: {len(body)}\r\n" if method == "POST" else ""
    return (head + "Connection: close\r\n\r\n").encode() + body


def _open(check: Result, timeout: float) -> tuple[socket.socket, str, str]:
    url = urlsplit(check["url"])
    host = url.hostname or ""
    port = url.port or (443 if url.scheme == "https" else 80)
    address = str(check.get("address") or socket.getaddrinfo(host, port, socket.AF_INET)[0][4][0])
    sock = _connect(address, port, timeout)
    if url.scheme == "https":
        sock = _context(bool(check.get("verify", True))).wrap_socket(sock, server_hostname=host)
    path = url.path or "/"
    return sock, host, path + (f"?{url.query}" if url.query else "")


def op_http(check: Result) -> Result:
    timeout = float(check.get("timeout", 5))
    sock, host, path = _open(check, timeout)
    with sock:
        peer = sock.getpeername()[0]
        sock.sendall(_request_bytes(check, host, path))
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            if not data:
                raise
    head, _, body = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split()
    result: Result = {
        "peer": peer,
        "status": int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None,
        "body_length": len(body),
        "body": body[:4096].decode("utf-8", "replace"),
    }
    if check.get("binary"):
        result["body_hex"] = body[:4096].hex()
    return result


def op_download(check: Result) -> Result:
    """Read a big body for at most `seconds` (after its first byte); report bytes and rate."""
    seconds = float(check.get("seconds", 2.0))
    timeout = float(check.get("timeout", 5))
    sock, host, path = _open(check, timeout)
    head = b""
    received = 0
    first: float | None = None
    with sock:
        sock.sendall(_request_bytes(check, host, path))
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if first is not None:
                deadline = first + seconds
            if now >= deadline:
                break
            sock.settimeout(deadline - now)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            if first is None:
                head += chunk
                if b"\r\n\r\n" not in head:
                    continue
                head, _, chunk = head.partition(b"\r\n\r\n")
                first = time.monotonic()
            received += len(chunk)
        elapsed = time.monotonic() - first if first is not None else 0.0
    kbps = round(received * 8 / 1000 / elapsed, 1) if elapsed > 0 else None
    return {"bytes": received, "seconds": round(elapsed, 3), "kbps": kbps}


def op_send(check: Result) -> Result:
    """Connect, send bytes, and report what came back within `wait` seconds."""
    wait = float(check.get("wait", 1.5))
    sock = _connect(check["address"], int(check["port"]), float(check.get("timeout", 3)))
    with sock:
        sock.sendall(bytes.fromhex(check["data_hex"]))
        sock.settimeout(wait)
        try:
            reply = sock.recv(65536)
        except TimeoutError:
            return {"connected": True, "reply": None, "error": "timeout"}
        except OSError as exc:
            return {"connected": True, "reply": None, "error": error_name(exc)}
    return {"connected": True, "reply": reply.hex(), "closed": reply == b""}


OPS: dict[str, Callable[[Result], Result]] = {
    "resolve": op_resolve,
    "dns": op_dns,
    "connect": op_connect,
    "tls": op_tls,
    "http": op_http,
    "download": op_download,
    "send": op_send,
}


def run_check(check: Result) -> Result:
    time.sleep(float(check.get("after", 0)))
    try:
        result = OPS[check["op"]](check)
    except Exception as exc:
        result = {"error": error_name(exc)}
    return {"op": check["op"], **result}


def main() -> None:
    checks = json.load(sys.stdin)
    with ThreadPoolExecutor(max_workers=max(1, min(64, len(checks)))) as pool:
        results = list(pool.map(run_check, checks))
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
