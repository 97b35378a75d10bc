"""The censorship lab: Linux network namespaces where real packets cross a real censor.

    client -- censor -- inet      (and ctrl, an uncensored control vantage, attached to inet)

`Lab` (lab.py) builds and drives it; `Scenario`/`SCENARIOS` (scenarios.py) name what the censor
does, composed from the techniques in techniques.py; `python3 -m tests.lab` runs a command in the
client under chosen scenarios; tests/lab/fixtures.py has the pytest fixtures. Exports are loaded
lazily so that the lab's server processes, which import this package, start fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.lab.lab import Lab, unavailable_reason
    from tests.lab.scenarios import SCENARIOS, Scenario, get_scenario
    from tests.lab.topology import LabError

__all__ = ["SCENARIOS", "Lab", "LabError", "Scenario", "get_scenario", "unavailable_reason"]

_EXPORTS = {
    "Lab": "tests.lab.lab",
    "unavailable_reason": "tests.lab.lab",
    "SCENARIOS": "tests.lab.scenarios",
    "Scenario": "tests.lab.scenarios",
    "get_scenario": "tests.lab.scenarios",
    "LabError": "tests.lab.topology",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tests.lab' has no attribute {name!r}")
