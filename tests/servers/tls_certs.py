"""Test PKI built with trustme: a CA the probe trusts, server certificates for chosen names, and
certificates the probe must reject (signed by an unknown CA, or for the wrong name).

trustme is a test dependency only; the probe itself never imports it.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

import trustme

from probe.checks import CheckContext, Timeouts

# The ALPN protocols the test servers accept, like a front end that speaks both.
SERVER_ALPN = ("h2", "http/1.1")


@dataclass(frozen=True)
class TestPki:
    """A trusted test CA and an untrusted one (the "interception" CA)."""

    __test__ = False  # not a pytest test class, despite its name

    ca: trustme.CA = field(default_factory=lambda: trustme.CA(organization_name="Probe Test CA"))
    rogue_ca: trustme.CA = field(
        default_factory=lambda: trustme.CA(organization_name="Rogue Interception CA")
    )

    def server_context(
        self, *names: str, trusted: bool = True, alpn: tuple[str, ...] = SERVER_ALPN
    ) -> ssl.SSLContext:
        """A server context presenting a leaf for `names`, issued by the trusted CA or, with
        trusted=False, by the rogue CA."""
        issuer = self.ca if trusted else self.rogue_ca
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        issuer.issue_cert(*names).configure_cert(context)
        if alpn:
            context.set_alpn_protocols(list(alpn))
        return context

    def unknown_ca_context(self, *names: str) -> ssl.SSLContext:
        """A server context whose (correctly named) certificate no client here trusts."""
        return self.server_context(*names, trusted=False)

    def wrong_name_context(self, wrong_name: str = "wrong.example") -> ssl.SSLContext:
        """A server context presenting a trusted certificate for another name."""
        return self.server_context(wrong_name)

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts the test CA only."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        # create_default_context loaded the system store; start from the test CA alone so that a
        # test can never pass thanks to a system certificate.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ca.configure_trust(context)
        return context

    def check_context(self, timeouts: Timeouts | None = None, **overrides: object) -> CheckContext:
        """A CheckContext trusting the test CA, with short timeouts unless given."""
        return CheckContext(
            timeouts=timeouts or Timeouts(dns=0.5, connect=0.5, tls=0.5, http=1.0),
            ssl_context=self.client_context(),
            **overrides,  # type: ignore[arg-type]
        )

    @property
    def ca_sha256(self) -> str:
        """The sha256 of the trusted CA's certificate (DER), to find it in a recorded chain."""
        return _pem_sha256(self.ca.cert_pem.bytes())


def _pem_sha256(pem: bytes) -> str:
    import hashlib

    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem.decode("ascii"))).hexdigest()


def leaf_sha256(context_pem: bytes) -> str:
    """The sha256 of a PEM certificate's DER form."""
    return _pem_sha256(context_pem)
