"""The download cache, against a loopback HTTP server that serves ../shared/data (never the internet)."""

from __future__ import annotations

import functools
import http.server
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from recunlearn.data import fetch, load_dataset
from recunlearn.data.download import MIRROR_ENV, REMOTE, DownloadError, cache_dir, sha256_of
from recunlearn.errors import DataError
from tests.conftest import ml100k_path


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _serve(folder: Path) -> Iterator[str]:
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def shared_server() -> Iterator[str]:
    """Serves the folder holding ml-100k/, as a mirror of the public datasets."""
    yield from _serve(ml100k_path().parent)


@pytest.fixture()
def corrupt_server(tmp_path) -> Iterator[str]:
    """A mirror whose u.data lost its last line."""
    folder = tmp_path / "mirror" / "ml-100k"
    folder.mkdir(parents=True)
    shutil.copy(ml100k_path() / "u.item", folder / "u.item")
    lines = (ml100k_path() / "u.data").read_bytes().splitlines(keepends=True)
    (folder / "u.data").write_bytes(b"".join(lines[:-1]))
    yield from _serve(tmp_path / "mirror")


def test_pinned_checksums_are_those_of_the_real_files():
    for file, sha256 in REMOTE["ml-100k"].files.items():
        assert sha256_of(ml100k_path() / file) == sha256


@pytest.mark.realdata
def test_first_use_downloads_then_the_cache_serves(shared_server, tmp_path, monkeypatch, ml100k):
    cache = tmp_path / "cache"
    monkeypatch.setenv("RECUNLEARN_CACHE", str(cache))
    monkeypatch.setenv(MIRROR_ENV, shared_server)
    data = load_dataset("ml-100k-download")
    assert data.content_hash() == ml100k.content_hash()
    assert sorted(p.name for p in (cache / "ml-100k").iterdir()) == [
        "u.data",
        "u.item",
    ]  # no temp files left
    # the cache now answers without the server
    monkeypatch.setenv(MIRROR_ENV, "http://127.0.0.1:9/")
    assert fetch("ml-100k") == cache / "ml-100k"


def test_base_url_argument_and_explicit_cache(shared_server, tmp_path):
    folder = fetch("ml-100k", base_url=f"{shared_server}/ml-100k", cache=tmp_path)
    assert folder == tmp_path / "ml-100k"
    assert sha256_of(folder / "u.item") == REMOTE["ml-100k"].files["u.item"]


def test_a_damaged_cached_file_is_fetched_again(shared_server, tmp_path):
    folder = fetch("ml-100k", base_url=f"{shared_server}/ml-100k", cache=tmp_path)
    (folder / "u.data").write_bytes(b"1\t2\t3\t4\n")
    fetch("ml-100k", base_url=f"{shared_server}/ml-100k", cache=tmp_path)
    assert sha256_of(folder / "u.data") == REMOTE["ml-100k"].files["u.data"]


def test_corrupted_download_is_rejected_and_not_kept(corrupt_server, tmp_path):
    with pytest.raises(DownloadError, match="u.data: sha256 .* does not match the pinned"):
        fetch("ml-100k", base_url=f"{corrupt_server}/ml-100k", cache=tmp_path)
    assert not (tmp_path / "ml-100k" / "u.data").exists()
    assert [p.name for p in (tmp_path / "ml-100k").iterdir() if p.name != "u.item"] == []


class _CutOff(http.server.BaseHTTPRequestHandler):
    """Promises a megabyte, sends ten bytes, hangs up."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 20))
        self.end_headers()
        self.wfile.write(b"1\t2\t3\t4\n12")
        self.close_connection = True

    def log_message(self, *args) -> None:
        pass


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_http_failures_are_clear(shared_server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch("ml-100k", base_url=f"{shared_server}/no-such-folder", cache=tmp_path)
    port = _closed_port()
    with pytest.raises(DownloadError, match=f"downloading http://127.0.0.1:{port}/u.data failed"):
        fetch("ml-100k", base_url=f"http://127.0.0.1:{port}/", cache=tmp_path, timeout=5)
    assert list((tmp_path / "ml-100k").iterdir()) == []


def test_a_transfer_cut_off_midway_is_an_error_and_leaves_nothing(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CutOff)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    try:
        with pytest.raises(DownloadError, match="closed after 10 of 1,048,576 bytes"):
            fetch(
                "ml-100k",
                base_url=f"http://127.0.0.1:{server.server_address[1]}/",
                cache=tmp_path,
                timeout=5,
            )
    finally:
        server.shutdown()
        server.server_close()
    assert list((tmp_path / "ml-100k").iterdir()) == []


def test_unknown_dataset_and_cache_location(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="no downloadable dataset 'ml-42m'"):
        fetch("ml-42m")
    monkeypatch.setenv("RECUNLEARN_CACHE", str(tmp_path / "elsewhere"))
    assert cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("RECUNLEARN_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "recunlearn"
