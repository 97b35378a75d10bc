"""An offline IP-to-ASN database in MaxMind DB format that the user points at (GeoLite2-ASN /
GeoLite2-Country, DB-IP's lite files in the GeoLite2 layout, IPinfo's country_asn)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from probe.config import ConfigError
from probe.netid.fields import parse_asn, parse_country, parse_text

if TYPE_CHECKING:
    # Loaded when a database is opened (_open_mmdb): a run without [network] mmdb never needs it.
    import maxminddb


@dataclass(frozen=True, slots=True)
class AsnRecord:
    """What an IP-to-ASN database knows of one address."""

    asn: int | None = None
    as_name: str | None = None
    country: str | None = None

    def __bool__(self) -> bool:
        return self.asn is not None or self.country is not None


class AsnDatabase:
    """One or more MaxMind DB files (e.g. GeoLite2-ASN + GeoLite2-Country), read together: each
    field comes from the first file that has it."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = tuple(paths)
        self._readers: list[maxminddb.Reader] = []
        try:
            for path in self.paths:
                self._readers.append(_open_mmdb(path))
        except BaseException:
            self.close()
            raise

    def lookup(self, address: str) -> AsnRecord:
        """The ASN, AS name and country of an address; fields nobody knows stay None."""
        asn: int | None = None
        as_name: str | None = None
        country: str | None = None
        for reader in self._readers:
            try:
                record = reader.get(address)
            except ValueError:  # an IPv6 address in an IPv4-only file, or a malformed address
                continue
            if not isinstance(record, dict):
                continue
            asn = (
                asn
                or parse_asn(record.get("autonomous_system_number"))
                or parse_asn(record.get("asn"))
            )
            as_name = (
                as_name
                or parse_text(record.get("autonomous_system_organization"))
                or parse_text(record.get("as_name"))
            )
            country = country or _recordparse_country(record)
        return AsnRecord(asn, as_name, country)

    def close(self) -> None:
        for reader in self._readers:
            reader.close()
        self._readers.clear()

    def __enter__(self) -> AsnDatabase:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _open_mmdb(path: Path) -> maxminddb.Reader:
    import maxminddb

    try:
        return maxminddb.open_database(str(path))
    except FileNotFoundError:
        raise ConfigError(f"IP-to-ASN database {path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"IP-to-ASN database {path}: {exc.strerror or exc}") from None
    except (maxminddb.InvalidDatabaseError, ValueError) as exc:
        raise ConfigError(
            f"IP-to-ASN database {path} is not a MaxMind DB (.mmdb) file: {exc}"
        ) from None


def _recordparse_country(record: Mapping[str, Any]) -> str | None:
    # GeoLite2-Country/City: {"country": {"iso_code": "IR"}}; IPinfo: "country" or "country_code".
    country = record.get("country")
    if isinstance(country, dict):
        return parse_country(country.get("iso_code"))
    return parse_country(country) or parse_country(record.get("country_code"))
