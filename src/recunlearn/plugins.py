"""Third-party models and methods, found through ``importlib.metadata`` entry points.

A package declares them in its ``pyproject.toml``::

    [project.entry-points."recunlearn.models"]
    two-tower = "my_package.models:TwoTowerConfig"

    [project.entry-points."recunlearn.methods"]
    my-method = "my_package.unlearn:MyMethod"

The entry point's name is the kind (or method name) users write in a config; recunlearn loads it
the first time that name is looked up, so an installed package needs no import of its own.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable

from recunlearn.errors import ConfigError

MODEL_GROUP = "recunlearn.models"
METHOD_GROUP = "recunlearn.methods"


def entry_point_names(group: str) -> list[str]:
    """Names declared under ``group`` by the installed distributions (none is loaded)."""
    return sorted({entry.name for entry in importlib.metadata.entry_points(group=group)})


def load_entry_points(
    group: str, register: Callable[[str, object], None], name: str | None = None
) -> None:
    """Load the entry points of ``group`` (only those called ``name``, if given) and hand each
    loaded object to ``register(name, obj)``; one that fails to import is a one-line ConfigError
    naming it, not a traceback from inside someone else's package."""
    selection = (
        importlib.metadata.entry_points(group=group)
        if name is None
        else importlib.metadata.entry_points(group=group, name=name)
    )
    for entry in selection:
        try:
            loaded = entry.load()
        except Exception as exc:  # any import-time failure of a third-party package
            raise ConfigError(
                f"entry point {entry.name!r} of {group!r} ({entry.value}) failed to load: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        register(entry.name, loaded)
