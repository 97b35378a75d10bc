"""Catalog + config + test lists -> the targets of one run, with the controls kept apart."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from probe.catalog import CatalogError, Platform, load_catalog
from probe.config import ConfigError, Settings
from probe.model import Target
from probe.testlists import TestListError, load_test_list


@dataclass(frozen=True, slots=True)
class Selection:
    """What a run will test: platform targets, control targets, and notes on skipped input."""

    targets: tuple[Target, ...]
    controls: tuple[Target, ...]
    problems: tuple[str, ...] = ()


def load_platforms(settings: Settings) -> list[Platform]:
    """The catalog this configuration uses (built-in, with its catalog dir's overrides)."""
    try:
        return load_catalog(settings.catalog_dir)
    except CatalogError as exc:
        raise ConfigError(str(exc)) from None


def select_targets(settings: Settings, platforms: Sequence[str] = ()) -> Selection:
    """The targets of a run. `platforms` (or config's [probe] platforms) narrows the selection."""
    wanted = tuple(platforms) or settings.platforms
    targets: list[Target] = []
    controls: list[Target] = []
    for platform in load_platforms(settings):
        (controls if platform.control else targets).extend(platform.targets)
    for target in settings.extra_targets:
        (controls if target.control else targets).append(target)
    problems: list[str] = []
    for path in settings.test_lists:
        try:
            test_list = load_test_list(path)
        except TestListError as exc:
            raise ConfigError(str(exc)) from None
        targets.extend(test_list.targets)
        problems.extend(test_list.problems)
    if wanted:
        available = {t.platform for t in targets}
        missing = [name for name in wanted if name not in available]
        if missing:
            raise ConfigError(
                f"unknown platform(s): {', '.join(missing)} (known: {', '.join(sorted(available))})"
            )
        targets = [t for t in targets if t.platform in wanted]
    unique = list({(t.platform, t.name): t for t in targets}.values())
    return Selection(tuple(unique), tuple(controls), tuple(problems))
