"""Models by kind: a method's ``model = {kind = "...", ...}`` names one of them.

A model is described by a :class:`ModelSpec`, a typed pydantic config whose ``kind`` names it and
whose :meth:`~ModelSpec.build` makes a fresh :class:`~recunlearn.models.base.CFModel`. MF and
LightGCN are registered here; a user's model with :func:`register_model`, or by a package under
the ``recunlearn.models`` entry-point group (see :mod:`recunlearn.plugins`). Every method that trains
through :func:`~recunlearn.train.loop.fit_model` then trains, saves and loads it like the built-ins.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import torch
from pydantic import BaseModel, ConfigDict

from recunlearn.errors import ConfigError
from recunlearn.models.base import CFModel
from recunlearn.plugins import MODEL_GROUP, entry_point_names, load_entry_points


class ModelSpec(BaseModel):
    """A model's settings. Subclasses declare ``kind: Literal["<kind>"] = "<kind>"`` and their
    fields (each with a docstring), and implement :meth:`build`."""

    model_config = ConfigDict(extra="forbid")
    kind: str

    @abstractmethod
    def build(self, n_users: int, n_items: int, generator: torch.Generator) -> CFModel:
        """A freshly initialised model, its random draws taken from ``generator`` (seeded by the
        training seed, so that the same seed gives the same model)."""


_MODELS: dict[str, type[ModelSpec]] = {}
S = TypeVar("S", bound=type[ModelSpec])


def register_model(kind: str) -> Callable[[S], S]:
    """Class decorator: ``{"kind": kind, ...}`` in a method's ``model`` config builds this spec's model."""

    def decorate(spec: S) -> S:
        if not (isinstance(spec, type) and issubclass(spec, ModelSpec)):
            raise ConfigError(f"model kind {kind!r}: {spec!r} is not a ModelSpec subclass")
        declared = spec.__pydantic_fields__["kind"].default
        if declared != kind:
            raise ConfigError(
                f"model kind {kind!r}: {spec.__name__} declares kind {declared!r}; "
                f"give it `kind: Literal[{kind!r}] = {kind!r}`"
            )
        if _MODELS.get(kind, spec) is not spec:
            raise ConfigError(
                f"model kind {kind!r} registered twice ({_MODELS[kind].__name__} and {spec.__name__})"
            )
        _MODELS[kind] = spec
        return spec

    return decorate


def _register_entry_point(kind: str, loaded: object) -> None:
    """An entry point names the spec class, or a module whose import registers the kind."""
    if kind in _MODELS:
        return
    if isinstance(loaded, type) and issubclass(loaded, ModelSpec):
        register_model(kind)(loaded)
    else:
        raise ConfigError(
            f"entry point {kind!r} of {MODEL_GROUP!r} names neither a ModelSpec subclass nor a "
            "module that registers that kind"
        )


def model_spec(kind: str) -> type[ModelSpec]:
    """The spec registered for ``kind``, loading an installed package's entry point of that name if needed."""
    if kind not in _MODELS:
        load_entry_points(MODEL_GROUP, _register_entry_point, name=kind)
    if kind not in _MODELS:
        raise ConfigError(
            f"unknown model kind {kind!r}; available: {', '.join(available_models())}"
        )
    return _MODELS[kind]


def available_models() -> list[str]:
    """Registered kinds and those installed packages declare (not loaded until used)."""
    return sorted(set(_MODELS) | set(entry_point_names(MODEL_GROUP)))


def spec_of(value: Any) -> Any:
    """Pydantic's before-validator of a ``model`` field: a mapping is validated by its kind's spec;
    a spec object must be the one registered for its kind (else a saved method could not be loaded)."""
    if not isinstance(value, (ModelSpec, Mapping)):
        return value  # the field's own schema says what is wrong with it
    if isinstance(value, Mapping) and "kind" not in value:
        raise ValueError(f"a model config needs a 'kind' (one of: {', '.join(available_models())})")
    try:
        spec = model_spec(str(value["kind"] if isinstance(value, Mapping) else value.kind))
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    if isinstance(value, ModelSpec):
        if type(value) is not spec:
            raise ValueError(
                f"{type(value).__name__} is not the spec registered for kind {value.kind!r}: "
                f"decorate it with @register_model({value.kind!r})"
            )
        return value
    return spec.model_validate(dict(value))
