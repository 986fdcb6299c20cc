"""Model versions on disk, published by an atomic switch.

A version is written into a staging folder, every file and the folder are fsynced, a manifest with
each file's sha256 is added, and the folder is renamed to ``versions/vNNNNNN``. Publishing replaces
the ``CURRENT`` pointer file by a rename (write ``CURRENT.tmp``, fsync, ``os.replace``, fsync the
folder), so a reader sees the old version or the new one and never a half-written one. Versions the
pointer no longer names are deleted: they hold data that later requests removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recunlearn.errors import RecUnlearnError
from recunlearn.service.config import ServiceHome
from recunlearn.unlearn.base import Unlearner
from recunlearn.unlearn.sharded import ShardedUnlearner

MANIFEST = "manifest.json"
PREVIOUS_MANIFEST = "previous-manifest.json"
"""A copy of the manifest of the version a new one was made from: with the ledger's sha256 of that
manifest, it lets ``verify`` compare the new version's parts with the previous version's after the
previous folder is deleted."""
STAGING_PREFIX = ".staging-"
Stage = Callable[[str], None]
"""A hook called with the name of each step (the crash tests kill the worker there)."""


class VersionError(RecUnlearnError):
    """A model version folder that is missing, incomplete or altered."""


def version_name(number: int) -> str:
    return f"v{number:06d}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def part_hashes(model: Unlearner) -> dict[str, str]:
    """Content hash of the training data each part of the model depends on."""
    if isinstance(model, ShardedUnlearner):
        hashes = {
            f"shard-{k}": model.shard_data(k).content_hash() for k in range(model.config.n_shards)
        }
        if (
            model.aggregator.depends_on_shards
        ):  # fitted on every remaining row (RecEraser's attention)
            hashes["aggregator"] = model.train.content_hash()
        return hashes
    return {"model": model.train.content_hash()}


def part_weights(model: Unlearner) -> dict[str, str | None]:
    """Per part, the sha256 of its parameters (names and bytes, in name order); None for a part set
    aside (quarantined: it loads no weights). Empty for a model without parts."""
    if not isinstance(model, ShardedUnlearner):
        return {}
    digests: dict[str, str | None] = {}
    for k, shard in enumerate(model.models):
        if shard is None:
            digests[f"shard-{k}"] = None
            continue
        digest = hashlib.sha256()
        for name, tensor in sorted(shard.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        digests[f"shard-{k}"] = digest.hexdigest()
    return digests


def stage_version(
    home: ServiceHome,
    model: Unlearner,
    number: int,
    request_ids: list[str],
    stage: Stage = lambda _: None,
    previous: str | None = None,
) -> tuple[str, str]:
    """Write ``model`` as version ``number`` (complete on disk, not yet served), made from version
    ``previous`` (whose manifest it keeps a copy of); returns its name and the sha256 of its
    manifest."""
    name = version_name(number)
    home.versions.mkdir(parents=True, exist_ok=True)
    staging = home.versions / f"{STAGING_PREFIX}{name}-{uuid.uuid4().hex[:8]}"
    model.save(
        staging, keep_forgotten=False
    )  # served versions hold no trace of deleted data; the ledger is the record
    stage("saved")
    if previous is not None:
        shutil.copyfile(home.versions / previous / MANIFEST, staging / PREVIOUS_MANIFEST)
    files = {p.name: file_sha256(p) for p in sorted(staging.iterdir()) if p.is_file()}
    manifest = {
        "version": number,
        "name": name,
        "method": model.name,
        "exact": model.exact,
        "created_at": time.time(),
        "request_ids": request_ids,
        "files": files,
        "train_rows": len(model.train),
        "train_sha256": model.train.content_hash(),
        "parts": part_hashes(model),
        "part_weights": part_weights(model),
        "previous": previous,
        "set_aside": model.quarantined_parts,
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=1))
    for path in staging.iterdir():
        _fsync_file(path)
    _fsync_dir(staging)
    stage("manifest_written")
    target = home.versions / name
    if (
        target.exists()
    ):  # left by a crash before the ledger recorded it: never served, safe to replace
        shutil.rmtree(target)
    os.rename(staging, target)
    _fsync_dir(home.versions)
    stage("version_renamed")
    return name, file_sha256(target / MANIFEST)


def point_to(home: ServiceHome, name: str, stage: Stage = lambda _: None) -> None:
    """Make ``name`` the served version by an atomic rename of the pointer file."""
    if check_version(home.versions / name):
        raise VersionError(
            f"refusing to publish incomplete version {name}: {check_version(home.versions / name)}"
        )
    temporary = home.path / "CURRENT.tmp"
    with open(temporary, "w") as fh:
        fh.write(name + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    stage("pointer_written")
    os.replace(temporary, home.pointer)
    _fsync_dir(home.path)
    stage("pointer_renamed")


def current_name(home: ServiceHome) -> str | None:
    if not home.pointer.is_file():
        return None
    return home.pointer.read_text().strip() or None


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise VersionError(f"{path}: no readable {MANIFEST} ({exc})") from None


def check_version(path: Path) -> list[str]:
    """Problems that make a version folder unusable (empty list: complete and unaltered)."""
    if not path.is_dir():
        return [f"{path} does not exist"]
    try:
        manifest = read_manifest(path)
    except VersionError as exc:
        return [str(exc)]
    problems = []
    present = {p.name for p in path.iterdir()} - {MANIFEST}
    for name, digest in manifest["files"].items():
        if name not in present:
            problems.append(f"{name} is missing")
        elif file_sha256(path / name) != digest:
            problems.append(f"{name} does not match its sha256 in the manifest")
    problems += [
        f"{extra} is not in the manifest" for extra in sorted(present - set(manifest["files"]))
    ]
    return problems


def load_version(home: ServiceHome, name: str) -> Unlearner:
    problems = check_version(home.versions / name)
    if problems:
        raise VersionError(f"version {name} is incomplete: {'; '.join(problems)}")
    return Unlearner.load(home.versions / name)


def load_current(home: ServiceHome, attempts: int = 5) -> tuple[str, Unlearner]:
    """The served version. Retries when the worker switches versions (and deletes the old one) mid-read."""
    for attempt in range(attempts):
        name = current_name(home)
        if name is None:
            raise VersionError(f"{home.path} has no published model version (no CURRENT pointer)")
        try:
            return name, load_version(home, name)
        except Exception:  # whatever a half-deleted folder makes a reader raise (a missing table, a cut safetensors)
            if attempt == attempts - 1 or current_name(home) == name:
                raise
    raise AssertionError("unreachable")


def remove_unserved(home: ServiceHome, stage: Stage = lambda _: None) -> list[str]:
    """Delete every version folder except the served one (older versions, crashed staging folders)."""
    keep = current_name(home)
    removed = []
    if home.versions.is_dir():
        for path in sorted(home.versions.iterdir()):
            if path.name != keep:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
                removed.append(path.name)
                stage("removed_old_version")
    (home.path / "CURRENT.tmp").unlink(missing_ok=True)
    return removed
