"""A state the API reports is a state it serves: once a deletion's status says its version is served,
no answer of the API comes from an older version, whatever the watcher's poll interval."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from recunlearn.service.api import create_app
from recunlearn.service.versions import load_current
from recunlearn.service.worker import Worker


@pytest.fixture
def slow_watch_client(service):
    """The API with a watcher that never polls in a test's time: only the per-request pointer check can
    make it serve a new version."""
    config = json.loads(service.home.config_file.read_text())
    service.home.config_file.write_text(json.dumps({**config, "poll_seconds": 3600}))
    with TestClient(create_app(service.home)) as test_client:
        yield test_client


def test_the_first_answer_after_publication_comes_from_the_new_version(slow_watch_client, service):
    client = slow_watch_client
    before = client.get("/v1/recommendations/u3", headers=service.headers("read"))
    assert before.status_code == 200 and before.json()["version"] == "v000001"
    submitted = client.post(
        "/v1/deletions", json={"request_id": "now", "users": ["u3"]}, headers=service.headers()
    )
    assert submitted.status_code == 202
    assert Worker(service.home).run(drain=True) == 1

    status = client.get("/v1/deletions/now", headers=service.headers("read")).json()
    assert (status["status"], status["removed_version"], status["version"]) == ("published", 2, 3)
    gone = client.get("/v1/recommendations/u3", headers=service.headers("read"))
    assert gone.status_code == 404, gone.json()
    other = client.post(
        "/v1/scores", json={"pairs": [["u1", "i1"]]}, headers=service.headers("read")
    )
    assert other.status_code == 200 and other.json()["version"] == "v000003"
    assert client.get("/v1/health").json()["version"] == "v000003"


def test_no_answer_after_the_status_flip_comes_from_the_old_version(slow_watch_client, service):
    """Readers ask for the erased user and for another user while the worker publishes; every request
    sent after a status poll first saw 'removed' is answered without the user's data, and every one
    sent after it saw 'published' from the repaired version."""
    client = slow_watch_client
    assert (
        client.post(
            "/v1/deletions", json={"request_id": "flip", "users": ["u3"]}, headers=service.headers()
        ).status_code
        == 202
    )
    answers: list[tuple[float, str, int, str | None]] = []
    flipped: list[float] = []
    done = threading.Event()

    def read(user: str) -> None:
        more = 5  # reads after the poller saw the flip
        while more:
            more -= done.is_set()
            sent = time.monotonic()
            answer = client.get(f"/v1/recommendations/{user}", headers=service.headers("read"))
            version = answer.json().get("version") if answer.status_code == 200 else None
            answers.append((sent, user, answer.status_code, version))

    removed: list[float] = []

    def poll() -> None:
        while not flipped:
            status = client.get("/v1/deletions/flip", headers=service.headers("read")).json()
            if status["status"] in ("removed", "repaired", "published") and not removed:
                removed.append(time.monotonic())
            if status["status"] == "published":
                flipped.append(time.monotonic())
            time.sleep(0.001)

    readers = [threading.Thread(target=read, args=(u,)) for u in ("u3", "u1")]
    poller = threading.Thread(target=poll)
    for thread in [*readers, poller]:
        thread.start()
    assert Worker(service.home).run(drain=True) == 1
    poller.join(timeout=60)
    done.set()
    for thread in readers:
        thread.join(timeout=60)
    assert flipped, "the status never said published"
    after = [a for a in answers if a[0] > flipped[0]]
    assert {a[1] for a in after} == {"u3", "u1"}
    assert all(code == 404 for _, user, code, _ in after if user == "u3"), after
    assert all(
        (code, version) == (200, "v000003") for _, user, code, version in after if user == "u1"
    ), after
    assert any(a[0] < flipped[0] and a[3] == "v000001" for a in answers), "readers ran before"
    since_removed = [
        a for a in answers if a[0] > removed[0]
    ]  # the removal version, then the repair
    assert all(code == 404 for _, user, code, _ in since_removed if user == "u3"), since_removed
    assert all(version != "v000001" for _, user, _, version in since_removed if user == "u1")


def test_two_phases_each_serve_what_the_status_says(slow_watch_client, service):
    """SISA: the request is 'removed' (exactly) as soon as the removal version is served, before any
    shard is retrained; recommendations are served from it meanwhile; the repair version follows."""
    client = slow_watch_client
    read = service.headers("read")
    _, model = load_current(service.home)
    train = model.train
    user = next(  # one whose rows two of the three shards hold: the third serves meanwhile
        str(train.users.ids[u])
        for u in range(train.n_users)
        if len(np.unique(model.assignment[train.user == u])) < model.config.n_shards
    )
    assert (
        client.post(
            "/v1/deletions", json={"request_id": "two", "users": [user]}, headers=service.headers()
        ).status_code
        == 202
    )
    seen: dict[str, dict] = {}

    def stage(name: str) -> None:
        if name == "repair_started":  # the removal version is published, nothing retrained yet
            seen["status"] = client.get("/v1/deletions/two", headers=read).json()
            seen["erased"] = client.get(f"/v1/recommendations/{user}", headers=read).json()
            seen["other"] = client.get("/v1/recommendations/u1", headers=read).json()

    assert Worker(service.home, stage=stage).run(drain=True) == 1
    status = seen["status"]
    assert (status["status"], status["removed_exact"], status["removed_version"]) == (
        "removed",
        True,
        2,
    )
    assert status["version"] is None and status["audit"]["quarantined_parts"]
    assert "unknown user id" in seen["erased"]["detail"]
    assert seen["other"]["version"] == "v000002" and seen["other"]["items"]
    final = client.get("/v1/deletions/two", headers=read).json()
    assert (final["status"], final["removed_version"], final["version"]) == ("published", 2, 3)
    assert final["removed_at"] <= final["repaired_at"] <= final["published_at"]
    assert set(final["audit"]["changed_parts"]) == set(status["audit"]["held_parts"])
    assert client.get("/v1/recommendations/u1", headers=read).json()["version"] == "v000003"
