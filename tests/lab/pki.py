"""The lab's certificates: a lab CA that the probe trusts (through SSL_CERT_FILE) signing one
certificate for every host the lab serves, and a second, untrusted CA whose certificate the
censor's intercepting TLS server presents for the same names. Written as PEM files in the lab's
temporary directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import trustme

LAB_CA_ORGANIZATION = "censorprobe lab CA"
INTERCEPTION_CA_ORGANIZATION = "censorprobe lab interception CA"


@dataclass(frozen=True, slots=True)
class LabPki:
    """Paths of the lab's PEM files."""

    ca_file: Path  # the lab CA: what the probe trusts
    server_chain: Path  # key + leaf + CA for every served name (inet's servers)
    interception_ca_file: Path  # the censor's CA: trusted by nobody
    interception_chain: Path  # key + leaf for the same names, signed by the censor's CA
    other_site_chain: Path  # key + leaf + CA for another real site's own name only


def make_pki(
    directory: Path, identities: Sequence[str], *, other_site: str = "www.example.org"
) -> LabPki:
    """Issue the lab's certificates for `identities` (names and IP addresses) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    lab_ca = trustme.CA(organization_name=LAB_CA_ORGANIZATION)
    leaf = lab_ca.issue_cert(*identities, organization_name="censorprobe lab sites")
    other_leaf = lab_ca.issue_cert(other_site, organization_name="censorprobe lab other site")
    rogue_ca = trustme.CA(organization_name=INTERCEPTION_CA_ORGANIZATION)
    rogue_leaf = rogue_ca.issue_cert(*identities, organization_name="censorprobe lab interception")
    pki = LabPki(
        ca_file=directory / "lab-ca.pem",
        server_chain=directory / "lab-server.pem",
        interception_ca_file=directory / "interception-ca.pem",
        interception_chain=directory / "interception-server.pem",
        other_site_chain=directory / "other-site.pem",
    )
    other_leaf.private_key_and_cert_chain_pem.write_to_path(str(pki.other_site_chain))
    lab_ca.cert_pem.write_to_path(str(pki.ca_file))
    leaf.private_key_and_cert_chain_pem.write_to_path(str(pki.server_chain))
    rogue_ca.cert_pem.write_to_path(str(pki.interception_ca_file))
    rogue_leaf.private_key_and_cert_chain_pem.write_to_path(str(pki.interception_chain))
    return pki
