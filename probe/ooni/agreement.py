"""Our verdicts against OONI's own verdict keys, one row per key of each document.

A key judges a scope (probe/ooni/verdict_keys.py): some hosts, combined the way OONI combines
them ("all" fail or "any" fails), for some techniques. Our verdicts for the targets of those
hosts are combined the same way; a blocked verdict of another technique (DNS blocking under a
TCP key) says nothing about that key and counts as undecided. Then:

    agree            both decided the same (ok, blocked or down)
    disagree         both decided, differently
    ours_undecided   OONI decided, our verdict is inconclusive (no control could tell)
    ooni_undecided   we decided, OONI's key is null or missing
    both_undecided   neither decided
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from probe.names import normalise_host
from probe.ooni.verdict_keys import Combine, OoniKey, OoniOutcome, Scope
from probe.records import Status, Verdict


class Agreement(StrEnum):
    AGREE = "agree"
    DISAGREE = "disagree"
    OURS_UNDECIDED = "ours_undecided"
    OONI_UNDECIDED = "ooni_undecided"
    BOTH_UNDECIDED = "both_undecided"


# What each of our statuses means in OONI's vocabulary.
_AS_OONI = {
    Status.OK: OoniOutcome.OK,
    Status.BLOCKED: OoniOutcome.BLOCKED,
    Status.DOWN: OoniOutcome.DOWN,
    Status.INCONCLUSIVE: OoniOutcome.UNKNOWN,
}


@dataclass(frozen=True, slots=True)
class AgreementRow:
    """One OONI key of one document next to what our verdicts say about the same scope.

    ours: our combined outcome (OONI's vocabulary); techniques: our blocked verdicts'
    techniques in scope; targets: the targets in scope, each with its status."""

    experiment: str
    key: str
    ooni_value: str
    ooni: OoniOutcome
    ours: OoniOutcome
    agreement: Agreement
    techniques: tuple[str, ...]
    targets: tuple[str, ...]


def _for_key(verdict: Verdict, scope: Scope) -> Status:
    if (
        verdict.status is Status.BLOCKED
        and scope.techniques
        and not (verdict.technique or "").startswith(scope.techniques)
    ):
        return Status.INCONCLUSIVE
    return verdict.status


def combine(statuses: Sequence[Status], how: Combine) -> Status:
    """Our statuses of a scope combined as OONI combines its hosts."""
    if not statuses:
        return Status.INCONCLUSIVE
    present = set(statuses)
    if how is Combine.ALL:
        # Blocked only when every one is; one that works means the service works.
        if present == {Status.BLOCKED}:
            return Status.BLOCKED
        if Status.OK in present:
            return Status.OK
    else:
        if Status.BLOCKED in present:
            return Status.BLOCKED
        if Status.OK in present and present <= {Status.OK, Status.DOWN}:
            return Status.OK
    if present == {Status.DOWN}:
        return Status.DOWN
    return Status.INCONCLUSIVE


def agreement_of(ooni: OoniOutcome, ours: OoniOutcome) -> Agreement:
    if ooni is OoniOutcome.UNKNOWN and ours is OoniOutcome.UNKNOWN:
        return Agreement.BOTH_UNDECIDED
    if ours is OoniOutcome.UNKNOWN:
        return Agreement.OURS_UNDECIDED
    if ooni is OoniOutcome.UNKNOWN:
        return Agreement.OONI_UNDECIDED
    return Agreement.AGREE if ooni is ours else Agreement.DISAGREE


def compare(
    experiment: str,
    keys: Iterable[OoniKey],
    verdicts: Sequence[Verdict],
    hosts: Mapping[tuple[str, str], str],
) -> list[AgreementRow]:
    """One row per OONI key. `hosts` gives each (platform, target) of the document its host."""
    rows = []
    for key in keys:
        scope = key.scope
        chosen = [
            v
            for v in verdicts
            if not scope.hosts
            or normalise_host(hosts.get((v.platform, v.target), "")) in scope.hosts
        ]
        statuses = [_for_key(v, scope) for v in chosen]
        ours = _AS_OONI[combine(statuses, scope.combine)]
        rows.append(
            AgreementRow(
                experiment=experiment,
                key=key.key,
                ooni_value=key.value,
                ooni=key.outcome,
                ours=ours,
                agreement=agreement_of(key.outcome, ours),
                techniques=tuple(
                    sorted(
                        {v.technique for v in chosen if v.technique and v.status is Status.BLOCKED}
                    )
                ),
                targets=tuple(
                    f"{v.target}={s.value}" for v, s in zip(chosen, statuses, strict=True)
                ),
            )
        )
    return rows


@dataclass(slots=True)
class AgreementTable:
    """Counts of agreement per experiment and key, for the import summary."""

    counts: Counter[tuple[str, str, Agreement]]

    def add(self, rows: Iterable[AgreementRow]) -> None:
        for row in rows:
            self.counts[(row.experiment, row.key, row.agreement)] += 1

    def rows(self) -> list[tuple[str, str, dict[Agreement, int]]]:
        """(experiment, key, counts by agreement), sorted."""
        grouped: dict[tuple[str, str], dict[Agreement, int]] = {}
        for (experiment, key, agreement), n in self.counts.items():
            grouped.setdefault((experiment, key), {})[agreement] = n
        return [(e, k, grouped[(e, k)]) for e, k in sorted(grouped)]
