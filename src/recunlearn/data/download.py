"""Public datasets fetched on first use into a local cache, each file checked against a pinned sha256.

The cache is ``$RECUNLEARN_CACHE`` (default ``~/.cache/recunlearn``); a dataset's files live in
``<cache>/<dataset>/``. A file enters the cache only whole and verified: it is streamed into a
temporary file beside its destination, hashed on the way, and renamed into place only when the
hash matches, so an interrupted or corrupted download never leaves a file that looks valid.
Files are fetched from the dataset's own URL, from ``base_url`` if given, or from a mirror named by
``$RECUNLEARN_MIRROR`` that holds ``<mirror>/<dataset>/<file>``.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from recunlearn.errors import DataError

CACHE_ENV = "RECUNLEARN_CACHE"
"""Environment variable naming the cache folder."""
MIRROR_ENV = "RECUNLEARN_MIRROR"
"""Environment variable naming a mirror whose ``<dataset>/<file>`` replace the original URLs."""
CHUNK = 1 << 20

log = logging.getLogger(__name__)


class DownloadError(DataError):
    """A dataset file could not be fetched, or what arrived does not match its pinned checksum."""


@dataclass(frozen=True)
class RemoteDataset:
    """A public dataset: where its files are and the sha256 each must have."""

    name: str
    base_url: str
    files: Mapping[str, str]
    description: str


REMOTE: dict[str, RemoteDataset] = {}
"""Known remote datasets by name."""


def register_remote(dataset: RemoteDataset) -> None:
    REMOTE[dataset.name] = dataset


register_remote(
    RemoteDataset(
        name="ml-100k",
        base_url="https://files.grouplens.org/datasets/movielens/ml-100k/",
        files={
            "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
            "u.item": "6dd287831559152bea892eb27694a492ff14926ac5f7a16e5f8c4968e6fe13c3",
        },
        description="MovieLens-100K ratings and titles from GroupLens",
    )
)


def cache_dir(cache: str | Path | None = None) -> Path:
    """The cache folder: ``cache`` if given, else ``$RECUNLEARN_CACHE``, else ``~/.cache/recunlearn``."""
    if cache is not None:
        return Path(cache).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path.home() / ".cache" / "recunlearn"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _source_url(dataset: RemoteDataset, base_url: str | None) -> str:
    if base_url:
        return base_url.rstrip("/") + "/"
    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        return f"{mirror.rstrip('/')}/{dataset.name}/"
    return dataset.base_url


def download_file(url: str, destination: Path, sha256: str, timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``destination`` atomically, keeping it only if its sha256 is ``sha256``."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=destination.parent, prefix=f".{destination.name}.", suffix=".part"
    )
    digest = hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    expected = response.headers.get("Content-Length")
                    received = 0
                    for block in iter(lambda: response.read(CHUNK), b""):
                        digest.update(block)
                        out.write(block)
                        received += len(block)
                if expected is not None and received != int(expected):
                    raise DownloadError(
                        f"downloading {url} failed: the connection closed after {received:,} "
                        f"of {int(expected):,} bytes"
                    )
            except urllib.error.HTTPError as exc:
                raise DownloadError(
                    f"downloading {url} failed: HTTP {exc.code} {exc.reason}"
                ) from None
            except (
                OSError,
                http.client.HTTPException,
            ) as exc:  # unreachable, timed out, cut off mid-file
                reason = getattr(exc, "reason", None) or repr(exc)
                raise DownloadError(f"downloading {url} failed: {reason}") from None
        if digest.hexdigest() != sha256:
            raise DownloadError(
                f"{url}: sha256 {digest.hexdigest()} does not match the pinned {sha256}; "
                "the file was not kept (corrupted download or changed upstream file)"
            )
        os.replace(temporary, destination)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return destination


def fetch(
    name: str,
    *,
    base_url: str | None = None,
    cache: str | Path | None = None,
    timeout: float = 60.0,
) -> Path:
    """The cache folder of dataset ``name`` with every file present and verified, downloading what is missing.

    A cached file whose hash no longer matches (edited or damaged on disk) is fetched again.
    """
    if name not in REMOTE:
        raise DataError(f"no downloadable dataset {name!r}; known: {', '.join(sorted(REMOTE))}")
    dataset = REMOTE[name]
    folder = cache_dir(cache) / dataset.name
    source = _source_url(dataset, base_url)
    for file, sha256 in dataset.files.items():
        target = folder / file
        if target.is_file() and sha256_of(target) == sha256:
            continue
        log.info("downloading %s%s into %s", source, file, folder)
        download_file(source + file, target, sha256, timeout)
    return folder
