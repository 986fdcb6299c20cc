"""The unlearning contract every method implements, its report, and the registry of methods by name.

A method subclasses a family's class, :class:`CFUnlearner` (interaction tables, scored by user and
item) or :class:`~recunlearn.unlearn.LLMUnlearner` (prompt samples), declares a pydantic
``Config`` and implements the hooks: ``_fit`` (train on ``self.train``), ``_forget`` (remove rows,
say what changed), ``_state`` / ``_restore`` (tensors + JSON metadata for save/load) and, for
interactions, ``_score_index`` (scores of index pairs). :class:`Unlearner` owns what must behave the
same everywhere: validating requests, idempotency, timing, content hashes, and the on-disk format
(safetensors + npz + JSON, never pickle); a family says only what differs through small hooks (its
table type, its checks of the tables, which rows a request names and how removed rows are keyed,
files of its own). Scoring is the family's: its signature differs (user and item ids, or prompt
samples), so neither family overrides the other's.

Validation, idempotency, batches, quarantine defaults and save/load live in :class:`Unlearner` so
that every method of either family behaves the same there, and neither family's request handling can
drift from the other's. :class:`CFUnlearner` is defined here so that the type checker, which covers
this module, checks its query API with the contract.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeGuard, TypeVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors.torch import load_file, save_file

from recunlearn.data.deletion import DeletionRequest
from recunlearn.data.interactions import Interactions, member_mask
from recunlearn.data.table import Table
from recunlearn.errors import (
    ConfigError,
    NotFittedError,
    RecUnlearnError,
    UnknownIdError,
    validation_problems,
)
from recunlearn.plugins import METHOD_GROUP, load_entry_points


class PartChange(BaseModel):
    """One part of a model (a shard, the aggregator, a set of parameter rows) and what happened to it."""

    part: str
    action: str
    """'retrained', 'updated' (approximate update of parameters), 'quarantined' (set aside until the
    repair) or 'unchanged'."""
    data_hash_before: str | None = None
    data_hash_after: str | None = None
    rows_before: int | None = None
    rows_after: int | None = None
    parameter_rows: int | None = None
    """For approximate methods: how many embedding rows were changed."""


class UnlearningReport(BaseModel):
    """What a ``forget`` call removed, what it changed, and how long it took (wall time of the call)."""

    model_config = ConfigDict(extra="forbid")
    request_id: str
    method: str
    exact: bool
    removed_rows: int
    removed_valid_rows: int = 0
    """Rows of the validation data the request named, dropped with it (see :meth:`Unlearner.forget`)."""
    removed_pairs: list[tuple[str, str]] = Field(default_factory=list)
    parts: list[PartChange] = Field(default_factory=list)
    seconds: float = 0.0
    noop: bool = False
    """True when the request removes nothing: what it names was already forgotten, or (a user or item
    of the vocabulary) has no training or validation rows, e.g. one seen only in test data."""
    details: dict[str, Any] = Field(default_factory=dict)
    phase: Literal["forget", "quarantine", "repair"] = "forget"
    """'forget'; 'quarantine': the data left at once (exact for partition methods, which set parts
    aside; approximate for a single model); 'repair': the pending requests made exact
    (see :mod:`recunlearn.unlearn.quarantine`)."""
    quarantined_parts: list[str] = Field(default_factory=list)
    """Parts set aside, not served, after this call (quarantine)."""

    @property
    def changed_parts(self) -> list[str]:
        return [p.part for p in self.parts if p.action != "unchanged"]


# registry ----------------------------------------------------------------------------------------
_REGISTRY: dict[str, type[Unlearner]] = {}
U = TypeVar("U", bound="type[Unlearner]")


def register(name: str) -> Callable[[U], U]:
    """Class decorator: make a method available as ``get_method(name)`` and in the CLI. The class
    subclasses a family's class, which reads its tables and handles its requests."""

    def decorate(cls: U) -> U:
        if not _of_a_family(cls):
            raise ConfigError(
                f"method {name!r}: {getattr(cls, '__name__', cls)!r} must subclass CFUnlearner "
                "(interaction tables) or LLMUnlearner (prompt samples)"
            )
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise RuntimeError(f"method name {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


METHOD_MODULES = (
    "retrain",
    "sisa",
    "receraser",
    "grapheraser",
    "apa",
    "finetune",
    "neggrad",
    "influence_function",
    "scif",
    "ifru",
    "llm_retrain",
    "llm_sisa",
    "llm_receraser",
    "llm_grapheraser",
    "llm_neggrad",
)
"""The modules of :mod:`recunlearn.unlearn` that define the built-in methods (each registers its own
with ``@register``): named, so that the machinery beside them is never imported as a method."""


def _import_methods() -> None:
    import importlib

    for module in METHOD_MODULES:
        importlib.import_module(f"recunlearn.unlearn.{module}")


def _of_a_family(cls: object) -> TypeGuard[type[Unlearner]]:
    """Whether ``cls`` subclasses :class:`CFUnlearner` or ``LLMUnlearner``. The latter's module brings
    in the language-model side, so it is not imported here: a class can only subclass it once it is."""
    llm = sys.modules.get("recunlearn.unlearn._llm_common")
    families = (CFUnlearner, *((llm.LLMUnlearner,) if llm is not None else ()))
    return isinstance(cls, type) and issubclass(cls, families)


def _register_entry_point(name: str, loaded: object) -> None:
    """A ``recunlearn.methods`` entry point names a subclass of a family's class, or a module whose
    import registers ``name``."""
    if name in _REGISTRY:
        return
    if not _of_a_family(loaded) or loaded in _REGISTRY.values():
        raise ConfigError(
            f"entry point {name!r} of {METHOD_GROUP!r} names neither a subclass of CFUnlearner or "
            "LLMUnlearner not yet registered nor a module that registers that name"
        )
    register(name)(loaded)


def available_methods(data_kind: str | None = None) -> dict[str, type[Unlearner]]:
    """Registered methods by name (installed packages' included), optionally only those for
    ``data_kind`` ('interactions', 'samples')."""
    _import_methods()
    load_entry_points(METHOD_GROUP, _register_entry_point)
    return {
        n: c for n, c in sorted(_REGISTRY.items()) if data_kind is None or c.data_kind == data_kind
    }


def get_method(name: str) -> type[Unlearner]:
    _import_methods()
    if name not in _REGISTRY:  # an installed package's method, loaded on first use
        load_entry_points(METHOD_GROUP, _register_entry_point, name=name)
    if name not in _REGISTRY:
        raise ConfigError(f"unknown method {name!r}; available: {', '.join(available_methods())}")
    return _REGISTRY[name]


def make_config(
    config_class: type[BaseModel], config: BaseModel | dict | None, overrides: dict
) -> BaseModel:
    """Validate a config (object, dict or nothing, plus keyword overrides) with a clear error."""
    if isinstance(config, BaseModel):
        values = config.model_dump()
    else:
        values = dict(config or {})
    values.update(overrides)
    try:
        return config_class.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(f"invalid {config_class.__name__}: {validation_problems(exc)}") from None


@contextmanager
def restored_on_error(
    owner: object,
    names: Sequence[str],
    deep: Sequence[str] = (),
    after: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Put ``owner``'s named attributes back if the block raises, so that a failed ``forget`` (a shard
    whose training fails, a worker that dies) leaves the model as it was, still holding the rows, and
    the request can be retried, instead of half-updated with its rows already gone.

    Lists, dicts, sets and arrays among ``names`` are copied one level (the block may write into
    them), anything else there is only rebound; ``deep`` names are deep-copied (objects the block
    changes in place); a name the owner did not have is removed again. ``after`` runs once the
    attributes are back (to reload state that lives outside them)."""
    saved = {}
    absent = {name for name in (*names, *deep) if name not in vars(owner)}
    for name in (*names, *deep):
        if name in vars(owner):
            value = vars(owner)[name]
            saved[name] = (
                copy.deepcopy(value)
                if name in deep
                else copy.copy(value)
                if isinstance(value, (list, dict, set, np.ndarray))
                else value
            )
    try:
        yield
    except BaseException:
        for name, value in saved.items():
            setattr(owner, name, value)
        for name in absent:
            vars(owner).pop(name, None)
        if after is not None:
            after()
        raise


# the contract --------------------------------------------------------------------------------------
T = TypeVar("T", bound="Unlearner")


class Unlearner(ABC):
    """A recommender that can forget.

    Use it like a scikit-learn estimator: ``m = get_method("sisa")(n_shards=5).fit(train, valid)``,
    then ``m.forget(DeletionRequest(users=["42"]))`` and ``m.score(...)`` as its family scores.
    """

    name: ClassVar[str] = "unnamed"
    exact: ClassVar[bool] = False
    """Exact methods give what training from scratch without the data gives (same seed)."""
    data_kind: ClassVar[str] = "interactions"
    table_type: ClassVar[type[Table]]
    """The table the family trains on (``Interactions``, ``SampleTable``): ``fit`` checks it, ``load``
    reads ``train.npz`` / ``valid.npz`` as it."""
    state_file: ClassVar[str] = "weights.safetensors"
    """The saved folder's file of :meth:`_state`'s tensors."""
    row_noun: ClassVar[str] = "row"
    """What a row of the family's table is called in errors."""
    Config: ClassVar[type[BaseModel]]

    def __init__(self, config: BaseModel | dict | None = None, **overrides: Any):
        self.config = make_config(self.Config, config, overrides)
        self.train: Table = None  # type: ignore[assignment]  # set by fit(); None before
        self.valid: Table | None = None
        self._forgotten: set[Any] = set()
        """What forgetting removed so far, as the family keys its rows (pair keys, sample ids): an
        already-forgotten row is a no-op, never an unknown one."""
        self._validation_changed = False  # inside forget: whether it dropped validation rows
        self.fit_seconds: float = float("nan")

    # public API ------------------------------------------------------------------------------------
    def fit(self: T, train: Table, valid: Table | None = None) -> T:
        """Train on ``train``; ``valid`` (the same kind of table) drives early stopping."""
        kind = self.table_type
        if not isinstance(train, kind) or (valid is not None and not isinstance(valid, kind)):
            raise RecUnlearnError(
                f"{self.name} trains on {self.data_kind} ({kind.__name__}), got "
                f"{type(train if not isinstance(train, kind) else valid).__name__}"
            )
        if len(train) == 0:
            raise RecUnlearnError("cannot fit on an empty training table")
        self._check_tables(train, valid)
        with self._as_before_on_error():
            self.train, self.valid = train, valid
            self._forgotten = set()
            self._restore_quarantine(None)
            start = time.perf_counter()
            self._fit()
        train.content_hash()  # fingerprinted once, as part of fitting: every forget report names it
        self.fit_seconds = time.perf_counter() - start
        return self

    def forget(self, request: DeletionRequest) -> UnlearningReport:
        """Remove the data ``request`` names; the report's ``seconds`` is the wall time of this call.

        The training rows it names leave the model; the validation rows it names (a deleted user's,
        a validation pair) leave the validation data first, so that what is retrained early-stops
        and what is cached from validation (aggregator errors, APA's attention, IFRU's guard) is
        computed without them. Choices already made with them (an unaffected shard's stopping
        epoch) are not revisited."""
        self._check_fitted()
        start = time.perf_counter()
        if not isinstance(request, DeletionRequest):
            raise RecUnlearnError(f"expected a DeletionRequest, got {type(request).__name__}")
        report = self._forget_rows(*self._masks_of(request))
        report.request_id = request.request_id
        report.seconds = time.perf_counter() - start
        return report

    def _forget_rows(self, mask: np.ndarray, valid_mask: np.ndarray) -> UnlearningReport:
        """Forget the masked training and validation rows (``forget`` less the request's parsing)."""
        if not mask.any() and not valid_mask.any():
            return UnlearningReport(
                request_id="", method=self.name, exact=self.exact, removed_rows=0, noop=True
            )
        if mask.all():
            raise RecUnlearnError(
                f"{self.name}: a request may not remove every training {self.row_noun} (nothing "
                "would be left to recommend from); fit a new model instead"
            )
        self._check_validation_left(valid_mask)
        removed = self.train.take(mask)
        removed_valid = (
            self.valid.take(valid_mask) if self.valid is not None and valid_mask.any() else None
        )
        report = self._forget_after_validation(mask, valid_mask)
        self._record_removed(report, removed, removed_valid)
        report.removed_rows = int(mask.sum())
        report.removed_valid_rows = int(valid_mask.sum())
        return report

    def _forget_after_validation(
        self, mask: np.ndarray, valid_mask: np.ndarray
    ) -> UnlearningReport:
        """Drop the masked validation rows, then ``_forget`` the masked training rows (or, if none,
        ``_forget_validation_only``); the validation data and its caches are put back if that fails."""
        if self.pending:
            raise RecUnlearnError(
                f"{self.name}: {len(self.pending)} quarantined request(s) await repair(); "
                "repair first, or quarantine this request too"
            )
        self._validation_changed = bool(
            valid_mask.any()
        )  # read by methods that cache from validation
        try:
            with restored_on_error(self, self._validation_state):
                if self._validation_changed:
                    self._drop_validation(valid_mask)
                return self._forget(mask) if mask.any() else self._forget_validation_only()
        finally:
            self._validation_changed = False

    _validation_state: ClassVar[tuple[str, ...]] = ("valid",)
    """Attributes that hold the validation data or what is cached from it: put back if ``forget`` fails."""

    def _check_validation_left(self, valid_mask: np.ndarray) -> None:
        """Refuse, before anything changes, a request that would leave no validation data, or one label
        class where there were two: validation AUC (early stopping, APA's choice of tau) would be
        undefined, and what is built from the validation data (APA's attention) would have nothing."""
        if self.valid is None or not valid_mask.any():
            return
        left = np.unique(self.valid.label[~valid_mask])
        if len(left) < min(2, len(np.unique(self.valid.label))):
            raise RecUnlearnError(
                f"{self.name}: forgetting these rows would leave the validation data with "
                f"{'no rows' if not len(left) else 'one label class only'}, on which validation AUC "
                "is undefined; fit again with other validation data, or without any"
            )

    def _drop_validation(self, valid_mask: np.ndarray) -> None:
        """Remove the masked validation rows, and from whatever is cached from them."""
        if self.valid is not None:
            self.valid = self.valid.drop(valid_mask)

    def _forget_validation_only(self) -> UnlearningReport:
        """A request that names validation rows only: nothing trained on training rows changes (none
        is removed); a method that caches or fits something from the validation data (an aggregator,
        APA's attention) does it again without them."""
        return self._report([], validation_only=True)

    def forget_many(self, requests: Sequence[DeletionRequest]) -> list[UnlearningReport]:
        """Process waiting requests; methods that can batch (retraining, shard-based) override this
        with :meth:`_forget_union`."""
        return [self.forget(r) for r in requests]

    def _forget_union(self, requests: Sequence[DeletionRequest]) -> list[UnlearningReport]:
        """Forget the union of the requests' rows in one ``forget`` call (what an exact method retrains
        once instead of once per request); one report per request, in order.

        A row two requests name is removed by (and reported in) the first, as one by one; a request
        that removes nothing new is a no-op. The others share the batch's parts, timing and details
        (the work was done once for all), with ``details["batched_with"]`` saying how many requests.
        """
        if not requests:
            return []
        self._check_fitted()
        start = time.perf_counter()
        masks, union = [], np.zeros(len(self.train), np.bool_)
        valid_masks, valid_union = (
            [],
            np.zeros(len(self.valid) if self.valid is not None else 0, np.bool_),
        )
        for request in requests:
            mask, valid_mask = self._masks_of(request)
            mask, valid_mask = mask & ~union, valid_mask & ~valid_union
            masks.append(mask)
            valid_masks.append(valid_mask)
            union |= mask
            valid_union |= valid_mask
        if (
            not union.any() and not valid_union.any()
        ):  # every request is a no-op: forget reports each one as such
            return [self.forget(r) for r in requests]
        data, valid = self.train, self.valid
        batch = self._forget_rows(union, valid_union)
        batch.seconds = time.perf_counter() - start
        reports = []
        for request, mask, valid_mask in zip(requests, masks, valid_masks):
            if not mask.any() and not valid_mask.any():
                reports.append(
                    UnlearningReport(
                        request_id=request.request_id,
                        method=self.name,
                        exact=self.exact,
                        removed_rows=0,
                        noop=True,
                    )
                )
                continue
            share = self._batch_share(data, valid, mask, valid_mask)
            reports.append(
                batch.model_copy(
                    update={
                        "request_id": request.request_id,
                        "removed_rows": int(mask.sum()),
                        "removed_valid_rows": int(valid_mask.sum()),
                        **share,
                        "details": {
                            **batch.details,
                            **share.get("details", {}),
                            "batched_with": len(requests),
                        },
                    }
                )
            )
        return reports

    # quarantine (recunlearn.unlearn.quarantine) ------------------------------------------------------
    def quarantine(self, request: DeletionRequest) -> UnlearningReport:
        """Remove the request's data at once, ahead of a slower exact repair. Partition methods set the
        parts that held it aside, a single retrained model applies an approximate update; a method
        with neither (an approximate one) forgets: that is its fast path already."""
        report = self.forget(request)
        report.phase = "quarantine"
        return report

    @property
    def pending(self) -> list[str]:
        """Ids of the requests quarantined and not yet repaired."""
        return []

    @property
    def quarantined_parts(self) -> list[str]:
        """Parts set aside until the repair."""
        return []

    def repair(self) -> UnlearningReport | None:
        """Make every pending request's removal exact; None when nothing is pending."""
        return None

    def repair_due(self, now: float | None = None) -> bool:
        """Whether the pending requests are due for repair (``now``: epoch seconds)."""
        return False

    def _quarantine_record(self) -> dict[str, Any] | None:
        """What a save records of pending requests (None: nothing pending)."""
        return None

    def _restore_quarantine(self, record: dict[str, Any] | None) -> None:
        """Take up a saved record of pending requests (None: nothing pending)."""
        return None

    # persistence ------------------------------------------------------------------------------------
    def save(self, path: str | Path, keep_forgotten: bool = True) -> Path:
        """Write a folder: ``unlearner.json``, the state tensors (:attr:`state_file`), ``train.npz``,
        ``valid.npz``, and any files of the family's own (:meth:`_save_files`).

        ``keep_forgotten``: also write the keys of the pairs forgotten so far, so that the loaded copy
        still tells an already-forgotten pair (nothing to do) from one it never saw (an error). A copy
        that must hold no trace of deleted data (a served version) leaves them out; it then treats
        them as never seen."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors, meta = self._state()
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
            str(path / self.state_file),
        )
        self.train.save(path / "train.npz")
        if self.valid is not None:
            self.valid.save(path / "valid.npz")
        else:  # a table saved here before must not be read back as this model's
            (path / "valid.npz").unlink(missing_ok=True)
        document = {
            "method": self.name,
            "config": self.config.model_dump(mode="json"),
            "forgotten": sorted(self._forgotten) if keep_forgotten else [],
            **self._save_files(path, keep_forgotten),
            "fit_seconds": self.fit_seconds,
            "state": meta,
            "quarantine": self._quarantine_record(),
        }
        (path / "unlearner.json").write_text(json.dumps(document, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Unlearner:
        """Load a folder written by :meth:`save`; ``Unlearner.load`` dispatches on the stored method."""
        path = Path(path)
        method, document = cls._read_saved(path)
        obj = method(document["config"])
        obj._load_tables(path)
        obj._forgotten = set(document["forgotten"])
        obj.fit_seconds = document["fit_seconds"]
        obj._restore(load_file(str(path / obj.state_file)), document["state"])
        obj._load_files(path, document)
        obj._restore_quarantine(document["quarantine"])
        return obj

    # family hooks: how a family reads its tables and keys its rows ----------------------------------
    @abstractmethod
    def _load_tables(self, path: Path) -> None:
        """Read ``train.npz`` and, where saved, ``valid.npz`` into ``self.train`` / ``self.valid``."""

    @abstractmethod
    def _masks_of(self, request: DeletionRequest) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the training data and of the validation data the request names; unknown ids
        raise, what was already forgotten matches nothing."""

    @abstractmethod
    def _record_removed(
        self, report: UnlearningReport, removed: Table, removed_valid: Table | None
    ) -> None:
        """Note the removed training and validation rows in ``_forgotten`` and say in ``report``
        which they were."""

    @abstractmethod
    def _batch_share(
        self, data: Table, valid: Table | None, mask: np.ndarray, valid_mask: np.ndarray
    ) -> dict[str, Any]:
        """Report fields of one request's share of a batch (the tables as they were before it):
        which rows it removed."""

    @classmethod
    def _read_saved(cls, path: Path) -> tuple[type[Unlearner], dict[str, Any]]:
        """The stored method class and document of a saved folder, checked against ``cls``."""
        if not (path / "unlearner.json").is_file():
            raise RecUnlearnError(f"{path} is not a saved unlearner (no unlearner.json)")
        document = json.loads((path / "unlearner.json").read_text())
        method = get_method(document["method"])
        if cls is not Unlearner and not issubclass(method, cls):
            raise RecUnlearnError(f"{path} holds a {document['method']!r} model, not {cls.name!r}")
        return method, document

    # helpers for subclasses ------------------------------------------------------------------------
    @contextmanager
    def _as_before_on_error(self) -> Iterator[None]:
        """Every attribute as it was if the block raises: a failed ``fit`` leaves the object unfitted
        (or as its last fit left it), not half-built."""
        before = dict(vars(self))
        try:
            yield
        except BaseException:
            vars(self).clear()
            vars(self).update(before)
            raise

    def _check_fitted(self) -> None:
        if self.train is None:
            raise NotFittedError(f"{self.name}: call fit() first")

    # hooks ----------------------------------------------------------------------------------------------
    @abstractmethod
    def _fit(self) -> None:
        """Train on ``self.train`` (and ``self.valid``)."""

    @abstractmethod
    def _forget(self, mask: np.ndarray) -> UnlearningReport:
        """Remove the masked rows of ``self.train`` (and set ``self.train`` to the rest)."""

    @abstractmethod
    def _state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Tensors and JSON-able metadata that :meth:`_restore` rebuilds the fitted method from."""

    @abstractmethod
    def _restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Rebuild from :meth:`_state`'s output; ``self.config``, ``self.train`` and ``self.valid`` are set."""

    def _check_tables(self, train: Table, valid: Table | None) -> None:
        """Refuse, before anything changes, tables the family cannot fit (``fit`` has checked their
        type and that ``train`` is not empty)."""
        return None

    def _save_files(self, path: Path, keep_forgotten: bool) -> dict[str, Any]:
        """Write files of the family's own into the saved folder; entries to add to ``unlearner.json``."""
        return {}

    def _load_files(self, path: Path, document: dict[str, Any]) -> None:
        """Read what :meth:`_save_files` wrote (after :meth:`_restore`)."""
        return None

    def _report(self, parts: list[PartChange], **details: Any) -> UnlearningReport:
        return UnlearningReport(
            request_id="",
            method=self.name,
            exact=self.exact,
            removed_rows=0,
            parts=parts,
            details=details,
        )


class CFUnlearner(Unlearner):
    """The collaborative family: interaction tables sharing user and item vocabularies, scored by
    (user, item) ids or indices, with top-K recommendation. A method implements ``_score_index``."""

    table_type = Interactions
    train: Interactions
    valid: Interactions | None
    _forgotten: set[int]  # pair keys

    def _check_tables(self, train: Table, valid: Table | None) -> None:
        assert isinstance(train, Interactions) and isinstance(
            valid, (Interactions, type(None))
        )  # fit checked
        if valid is not None and (valid.users is not train.users or valid.items is not train.items):
            if not (
                np.array_equal(valid.users.ids, train.users.ids)
                and np.array_equal(valid.items.ids, train.items.ids)
            ):
                raise RecUnlearnError("validation data must share the training data's vocabularies")

    def _load_tables(self, path: Path) -> None:
        self.train = Interactions.load(path / "train.npz")
        if (path / "valid.npz").is_file():
            self.valid = Interactions.load(
                path / "valid.npz", users=self.train.users, items=self.train.items
            )

    # requests: users, items and (user, item) pairs ---------------------------------------------------
    def _masks_of(self, request: DeletionRequest) -> tuple[np.ndarray, np.ndarray]:
        """The tables share vocabularies, so the pairs' keys are computed once for both."""
        keys = request.pair_keys(self.train) if request.pairs else None
        return self._rows_of(request, keys), self._valid_rows_of(request, keys)

    def _rows_of(self, request: DeletionRequest, keys: np.ndarray | None = None) -> np.ndarray:
        """Rows of the current training data the request removes; unknown ids and never-seen pairs
        raise. ``keys``: the request's :meth:`DeletionRequest.pair_keys` where the caller has them."""
        data = self.train
        if keys is None and request.pairs:
            keys = request.pair_keys(data)
        mask = request.rows(data, keys)
        if keys is not None:
            present = member_mask(keys, data.pair_keys[mask]) | member_mask(
                keys, np.fromiter(self._forgotten, np.int64)
            )
            if (
                self.valid is not None and not present.all()
            ):  # a validation pair is the model's data too
                present |= member_mask(keys, self.valid.pair_keys)
            if not present.all():
                bad = [request.pairs[j] for j in np.flatnonzero(~present)[:5]]
                raise UnknownIdError(
                    f"{int((~present).sum())} pair(s) were never in the training or validation "
                    f"data, e.g. {bad}"
                )
        return mask

    def _valid_rows_of(
        self, request: DeletionRequest, keys: np.ndarray | None = None
    ) -> np.ndarray:
        """Rows of the validation data the request names (none without validation data)."""
        if self.valid is None or not len(self.valid):
            return np.zeros(0 if self.valid is None else len(self.valid), bool)
        return request.rows(self.valid, keys)

    def _record_removed(
        self, report: UnlearningReport, removed: Table, removed_valid: Table | None
    ) -> None:
        """The removed pairs' keys, and the pairs by id in the report."""
        assert isinstance(removed, Interactions)  # the family's table
        self._forgotten.update(removed.pair_keys.tolist())
        report.removed_pairs = removed.id_pairs()
        if isinstance(removed_valid, Interactions):
            self._forgotten.update(removed_valid.pair_keys.tolist())
            report.removed_pairs += removed_valid.id_pairs()

    def _batch_share(
        self, data: Table, valid: Table | None, mask: np.ndarray, valid_mask: np.ndarray
    ) -> dict[str, Any]:
        """The pairs the request removed."""
        assert isinstance(data, Interactions) and isinstance(valid, (Interactions, type(None)))
        return {
            "removed_pairs": data.take(mask).id_pairs()
            + (valid.take(valid_mask).id_pairs() if valid is not None and valid_mask.any() else [])
        }

    def score(self, users: Iterable[Any], items: Iterable[Any]) -> np.ndarray:
        """Scores (higher = more likely liked) of (user, item) pairs given by external ids; an erased
        user is unknown (see :meth:`recommend`)."""
        self._check_fitted()
        u = self.train.users.index(users)
        self._refuse_erased(u)
        i = self.train.items.index(items)
        if len(u) != len(i):
            raise RecUnlearnError(
                f"got {len(u)} users but {len(i)} items; pass one of each per pair"
            )
        return self.score_index(u, i)

    def score_index(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores of (user, item) index pairs into the training vocabularies."""
        self._check_fitted()
        return np.asarray(
            self._score_index(np.asarray(users, np.int64), np.asarray(items, np.int64)), np.float32
        )

    def score_all(self, users: np.ndarray) -> np.ndarray:
        """Scores of the given user indices against every item (rows: users)."""
        self._check_fitted()
        users = np.asarray(users, np.int64)
        grid_u = np.repeat(users, self.train.n_items)
        grid_i = np.tile(np.arange(self.train.n_items), len(users))
        return self.score_index(grid_u, grid_i).reshape(len(users), self.train.n_items)

    def recommend(
        self, user: Any, k: int = 10, exclude_seen: bool = True
    ) -> list[tuple[str, float]]:
        """Top-``k`` items for one user (external id) with their scores.

        A user whom forgetting left without a training row (``forget(DeletionRequest(users=[u]))``,
        or requests that removed each of their pairs) is erased: unknown here as in the deletion
        service, an :class:`UnknownIdError`, rather than served a list built from nothing of theirs.
        A user who never had a training row is still known."""
        self._check_fitted()
        u = self.train.users.index([user])
        self._refuse_erased(u)
        scores = self.score_all(u)[0].astype(np.float64)
        if exclude_seen:
            scores[self.train.item[self.train.user == u[0]]] = -np.inf
        top = np.argsort(-scores, kind="stable")[:k]
        return [
            (str(self.train.items.ids[t]), float(scores[t])) for t in top if np.isfinite(scores[t])
        ]

    def _refuse_erased(self, users: np.ndarray) -> None:
        """Raise naming the users among ``users`` (indices) that forgetting left with no training row."""
        train = self.train
        if train is None or not self._forgotten:
            return
        forgotten = np.fromiter(self._forgotten, np.int64) // np.int64(train.n_items)
        asked = np.unique(users)
        touched = asked[member_mask(asked, forgotten)]
        erased = touched[np.bincount(train.user, minlength=train.n_users)[touched] == 0]
        if erased.size:
            shown = ", ".join(repr(i) for i in train.users.ids[erased[:5]].tolist())
            raise UnknownIdError(f"unknown user id(s): {shown} (erased: their data was forgotten)")

    @abstractmethod
    def _score_index(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores of index pairs."""
