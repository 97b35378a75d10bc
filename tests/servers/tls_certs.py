"""Test PKI built with trustme: a CA the probe trusts, server certificates for chosen names, and
certificates the probe must reject (signed by an unknown CA, or issued for another name).

trustme is a test dependency only; the probe itself never imports it.
"""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass, field

import trustme

from probe.checks import CheckContext, Timeouts

# The ALPN protocols the test servers accept, like a front end that speaks both.
SERVER_ALPN = ("h2", "http/1.1")

# Short enough for fast tests, long enough for a loopback handshake on a loaded CI machine.
FAST_TIMEOUTS = Timeouts(dns=0.5, connect=0.5, tls=0.5, http=1.0)


def pem_sha256(pem: bytes) -> str:
    """The sha256 of a PEM certificate's DER form, as the TLS check records it."""
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem.decode("ascii"))).hexdigest()


@dataclass(frozen=True)
class ServerIdentity:
    """What a test TLS server presents: its ssl context and the sha256 of its leaf."""

    context: ssl.SSLContext
    leaf_sha256: str
    issuer_name: str


@dataclass(frozen=True)
class Pki:
    """A trusted test CA and an untrusted "interception" CA."""

    ca: trustme.CA = field(default_factory=lambda: trustme.CA(organization_name="Probe Test CA"))
    rogue_ca: trustme.CA = field(
        default_factory=lambda: trustme.CA(organization_name="Rogue Interception CA")
    )

    def server(
        self, *names: str, trusted: bool = True, alpn: tuple[str, ...] = SERVER_ALPN
    ) -> ServerIdentity:
        """A server identity for `names`, from the trusted CA or (trusted=False) the rogue one."""
        issuer = self.ca if trusted else self.rogue_ca
        leaf = issuer.issue_cert(*names)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        leaf.configure_cert(context)
        if alpn:
            context.set_alpn_protocols(list(alpn))
        organization = "Probe Test CA" if trusted else "Rogue Interception CA"
        return ServerIdentity(context, pem_sha256(leaf.cert_chain_pems[0].bytes()), organization)

    def unknown_ca_server(self, *names: str) -> ServerIdentity:
        """A correctly named certificate that no client here trusts."""
        return self.server(*names, trusted=False)

    def wrong_name_server(self, wrong_name: str = "wrong.example") -> ServerIdentity:
        """A trusted certificate issued for another name."""
        return self.server(wrong_name)

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts the test CA and nothing else, so that no test
        can pass thanks to a system certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ca.configure_trust(context)
        return context

    def check_context(
        self,
        timeouts: Timeouts = FAST_TIMEOUTS,
        *,
        max_body_bytes: int = 1 << 20,
        max_redirects: int = 5,
    ) -> CheckContext:
        """A CheckContext trusting the test CA only, with short timeouts."""
        return CheckContext(
            timeouts=timeouts,
            ssl_context=self.client_context(),
            max_body_bytes=max_body_bytes,
            max_redirects=max_redirects,
        )
