"""Terminal rendering of runs and reports (rich tables); no logic beyond presentation."""

from __future__ import annotations

from rich.table import Table

from probe.runner import RunOutcome, TargetResult


def no_connectivity_message(controls: int) -> str:
    return (
        f"No network connectivity: none of the {controls} control sites could be reached. "
        "Nothing in this run is reported as blocked."
    )


def _result_text(result: TargetResult) -> str:
    if result.failure is None:
        return f"[green]ok[/green] (reached {result.reached.value})" if result.reached else "-"
    layer = result.failed_layer.value if result.failed_layer else "?"
    reached = f", reached {result.reached.value}" if result.reached else ""
    return f"[red]{result.failure}[/red] at {layer}{reached}"


def run_table(outcome: RunOutcome) -> Table:
    table = Table(title="Measurements of this run (raw results, not verdicts)")
    table.add_column("platform")
    table.add_column("target", overflow="fold")
    table.add_column("first failure / furthest layer", overflow="fold")
    table.add_column("n", justify="right")
    for result in sorted(outcome.results, key=lambda r: (r.target.platform, r.target.name)):
        table.add_row(
            result.target.platform,
            result.target.name,
            _result_text(result),
            str(result.measurements),
        )
    return table
