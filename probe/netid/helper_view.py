"""The control test helper's view of the probe: the address its traffic arrives from, and which
resolver asks on its behalf, with their networks (the best source of network identity)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from probe.netid.fields import parse_address_field, parse_asn, parse_country, parse_text

# The JSON document the control test helper returns about the client that called it. Every field
# is optional; a field with the wrong type counts as absent. `client_address` is only used to
# scrub and to look up, never stored.
HELPER_FIELDS: Mapping[str, str] = {
    "client_address": "the address the probe's request came from (str)",
    "client_asn": "its autonomous system number (int)",
    "client_as_name": "its AS name (str)",
    "client_country": "its ISO 3166-1 alpha-2 country code (str)",
    "resolver_address": "the address the probe's resolver queried the helper's zone from (str)",
    "resolver_asn": "the resolver's autonomous system number (int)",
    "resolver_as_name": "the resolver's AS name (str)",
    "resolver_country": "the resolver's ISO 3166-1 alpha-2 country code (str)",
}


@dataclass(frozen=True, slots=True)
class HelperView:
    """What the control test helper saw of the probe and of its resolver (HELPER_FIELDS)."""

    client_address: str | None = None
    client_asn: int | None = None
    client_as_name: str | None = None
    client_country: str | None = None
    resolver_address: str | None = None
    resolver_asn: int | None = None
    resolver_as_name: str | None = None
    resolver_country: str | None = None

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> HelperView:
        """The view from the helper's JSON document; malformed fields count as unknown."""
        return cls(
            client_address=parse_address_field(document.get("client_address")),
            client_asn=parse_asn(document.get("client_asn")),
            client_as_name=parse_text(document.get("client_as_name")),
            client_country=parse_country(document.get("client_country")),
            resolver_address=parse_address_field(document.get("resolver_address")),
            resolver_asn=parse_asn(document.get("resolver_asn")),
            resolver_as_name=parse_text(document.get("resolver_as_name")),
            resolver_country=parse_country(document.get("resolver_country")),
        )
