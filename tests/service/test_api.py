"""The HTTP API in-process: authentication, the deletion life cycle, serving, and clear 4xx answers."""

from __future__ import annotations

import fcntl
import json
import time
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from recunlearn.data.deletion import DeletionRequest
from recunlearn.service.api import create_app
from recunlearn.service.audit import verify_request
from recunlearn.service.store import Ledger
from recunlearn.service.versions import load_current
from recunlearn.service.worker import Worker
from tests.conftest import make_tiny


@pytest.fixture
def client(service):
    with TestClient(create_app(service.home)) as test_client:
        yield test_client


def _wait_for_version(client, service, name: str) -> None:
    for _ in range(100):
        if client.get("/v1/health").json()["version"] == name:
            return
        time.sleep(0.05)
    raise AssertionError(f"server never switched to {name}")


def test_tokens_401_without_or_with_unknown_token_403_for_a_read_token(client, service):
    assert client.get("/v1/recommendations/u1").status_code == 401
    bad = client.get("/v1/recommendations/u1", headers={"Authorization": "Bearer not-a-token"})
    assert (
        bad.status_code == 401
        and "unknown, revoked or expired bearer token" in bad.json()["detail"]
    )
    assert client.get("/v1/recommendations/u1", headers=service.headers("read")).status_code == 200
    refused = client.post(
        "/v1/deletions", json={"request_id": "a", "users": ["u1"]}, headers=service.headers("read")
    )
    assert refused.status_code == 403 and "may read but not submit" in refused.json()["detail"]
    assert client.get("/v1/health").status_code == 200, "health needs no token"


def test_deletion_life_cycle_is_idempotent_and_removes_the_user(client, service):
    body = {"request_id": "forget-u3", "users": ["u3"], "pairs": [["u4", "i1"]]}
    first = client.post("/v1/deletions", json=body, headers=service.headers())
    assert first.status_code == 202 and first.json()["status"] == "received"
    again = client.post("/v1/deletions", json=body, headers=service.headers())
    assert again.status_code == 200 and again.json()["received_at"] == first.json()["received_at"]
    conflict = client.post(
        "/v1/deletions", json={**body, "users": ["u5"]}, headers=service.headers()
    )
    assert conflict.status_code == 409 and "different deletion" in conflict.json()["detail"]
    before = client.get("/v1/recommendations/u3?k=5", headers=service.headers()).json()
    assert before["version"] == "v000001" and len(before["items"]) == 5

    assert Worker(service.home).run(drain=True) == 1
    record = client.get("/v1/deletions/forget-u3", headers=service.headers("read")).json()
    assert (record["status"], record["removed_version"], record["version"]) == ("published", 2, 3)
    assert record["named"] == {"pairs": 1, "users": 1, "items": 0} and "request" not in record
    audit = record["audit"]
    assert audit["method"] == "sisa" and audit["removed_rows"] == audit["store_rows_removed"] > 0
    tiny = make_tiny().to_frame()
    removed = {("u3", i) for i in tiny.item[tiny.user == "u3"]} | (
        {("u4", "i1")} & set(zip(tiny.user, tiny.item))
    )
    assert len(audit["removed_pair_digests"]) == len(removed) and "removed_pairs" not in audit
    ledger = service.home.ledger()
    stored = ledger.get("forget-u3")
    assert all(ledger.was_removed(stored, u, i) for u, i in removed) and not ledger.was_removed(
        stored, "u4", "i2"
    )
    ledger.close()
    assert set(audit["changed_parts"]) <= set(audit["part_data_sha256"])
    assert {"queued_s", "forget_s", "save_s"} <= set(audit["timings"])

    _wait_for_version(client, service, "v000003")
    gone = client.get("/v1/recommendations/u3", headers=service.headers())
    assert gone.status_code == 404 and "unknown user id" in gone.json()["detail"], (
        "u3 is erased from the version"
    )
    assert audit["erased_users"] == 1
    again_later = client.post(
        "/v1/deletions", json={"request_id": "late", "users": ["u3"]}, headers=service.headers()
    )
    assert again_later.status_code == 404, "an erased user is unknown to the served version"
    scores = client.post(
        "/v1/scores", json={"pairs": [["u1", "i1"], ["u2", "i2"]]}, headers=service.headers()
    )
    assert (
        scores.status_code == 200
        and scores.json()["version"] == "v000003"
        and len(scores.json()["scores"]) == 2
    )


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"request_id": "x", "users": ["nobody"]}, 404, "unknown user id(s): 'nobody'"),
        ({"request_id": "x", "pairs": [["u1", "no-item"]]}, 404, "unknown item id(s): 'no-item'"),
        ({"request_id": "x"}, 400, "names no pairs, users or items"),
        (
            {"request_id": "x", "users": ["u1"], "samples": ["s"]},
            422,
            "Extra inputs are not permitted",
        ),
        ({"request_id": "", "users": ["u1"]}, 422, "at least 1 character"),
        ({"request_id": "x", "pairs": [["u1"]]}, 422, "Field required"),
    ],
)
def test_bad_deletions_get_a_clear_4xx(client, service, body, status, message):
    answer = client.post("/v1/deletions", json=body, headers=service.headers())
    assert answer.status_code == status and message in str(answer.json()["detail"])


def test_malformed_and_huge_bodies(client, service):
    malformed = client.post(
        "/v1/deletions",
        content=b"{not json",
        headers={**service.headers(), "Content-Type": "application/json"},
    )
    assert malformed.status_code == 422 and "JSON decode error" in str(malformed.json()["detail"])
    many = {"request_id": "big", "users": [f"u{i % 60}" for i in range(10_001)]}
    too_many = client.post("/v1/deletions", json=many, headers=service.headers())
    assert too_many.status_code == 413 and "at most 10000" in too_many.json()["detail"]
    huge = client.post(
        "/v1/deletions",
        content=b"x" * (5 * 1024 * 1024),
        headers={**service.headers(), "Content-Type": "application/json"},
    )
    assert huge.status_code == 413 and "request body over" in huge.json()["detail"]


def test_inputs_json_cannot_echo_get_a_4xx_not_a_5xx(client, service):
    headers = {**service.headers(), "Content-Type": "application/json"}
    nan = client.post(
        "/v1/deletions", content=b'{"request_id": "x", "users": [NaN]}', headers=headers
    )
    assert nan.status_code == 422 and nan.json()["detail"][0]["loc"] == ["body", "users", 0]
    surrogate = client.post(
        "/v1/deletions", content=b'{"request_id": "x", "users": ["\\udfff"]}', headers=headers
    )
    assert 400 <= surrogate.status_code < 500 and surrogate.json()["detail"]


RULE = "request ids are 1 to 200 printable characters"


@pytest.mark.parametrize(
    "request_id, message",
    [
        ("ticket/1001", RULE),
        (".", RULE),
        ("..", RULE),
        ("nul\u0000inside", RULE),
        ("line\nbreak", RULE),
        ("x" * 201, "at most 200 characters"),
        ("lone\udfff", "unable to parse raw data as a unicode string"),
    ],
)
def test_request_ids_outside_the_rule_are_a_422(client, service, request_id, message):
    """One rule (printable, 1 to 200 characters, no '/', not '.' or '..'): the id is read back as a
    path segment, and PostgreSQL text cannot hold NUL."""
    body = json.dumps({"request_id": request_id, "users": ["u1"]}).encode()
    submitted = client.post(
        "/v1/deletions",
        content=body,
        headers={**service.headers(), "Content-Type": "application/json"},
    )
    assert submitted.status_code == 422 and submitted.json()["detail"][0]["loc"] == [
        "body",
        "request_id",
    ]
    assert message in submitted.json()["detail"][0]["msg"]
    if message == RULE and "/" not in request_id and request_id not in (".", ".."):
        read = client.get(
            f"/v1/deletions/{quote(request_id, safe='')}", headers=service.headers("read")
        )
        assert read.status_code == 422 and read.json()["detail"][0]["loc"] == ["path", "request_id"]
        assert RULE in read.json()["detail"][0]["msg"]


def test_a_read_token_sees_status_not_the_removed_data(client, service):
    body = {"request_id": "private", "pairs": [["u2", "i3"], ["u4", "i5"]], "users": ["u6"]}
    assert client.post("/v1/deletions", json=body, headers=service.headers()).status_code == 202
    for stage in ("received", "published"):
        answer = client.get("/v1/deletions/private", headers=service.headers("read"))
        assert answer.status_code == 200 and answer.json()["status"] == stage
        assert not any(f'"{x}"' in answer.text for x in ("u2", "i3", "u4", "i5", "u6")), answer.text
        assert answer.json()["named"] == {"pairs": 2, "users": 1, "items": 0}
        if stage == "received":
            assert Worker(service.home).run(drain=True) == 1
    assert answer.json()["audit"]["removed_rows"] > 0


def test_revoked_and_expired_tokens_are_refused(service, monkeypatch):
    import recunlearn.service.api as api

    ledger = service.home.ledger()
    doomed = ledger.add_token("read", "doomed")
    brief = ledger.add_token("read", "brief", expires_in=30)
    with TestClient(create_app(service.home)) as client:
        for token in (doomed, brief):
            assert (
                client.get(
                    "/v1/recommendations/u1", headers={"Authorization": f"Bearer {token}"}
                ).status_code
                == 200
            )
        assert ledger.revoke_token("doomed") == 1
        now = time.time()
        monkeypatch.setattr(api.time, "time", lambda: now + 11)  # past the 10 s cache
        refused = client.get(
            "/v1/recommendations/u1", headers={"Authorization": f"Bearer {doomed}"}
        )
        assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
        assert (
            client.get(
                "/v1/recommendations/u1", headers={"Authorization": f"Bearer {brief}"}
            ).status_code
            == 200
        )
        monkeypatch.setattr(api.time, "time", lambda: now + 31)
        monkeypatch.setattr("recunlearn.service.store.time.time", lambda: now + 31)
        assert (
            client.get(
                "/v1/recommendations/u1", headers={"Authorization": f"Bearer {brief}"}
            ).status_code
            == 401
        )
    ledger.close()


def test_unknown_tokens_are_not_cached(client, service, monkeypatch):
    asked = []
    original = Ledger.token_role
    monkeypatch.setattr(
        Ledger, "token_role", lambda self, token: (asked.append(token), original(self, token))[1]
    )
    for n in range(3):
        assert (
            client.get(
                "/v1/recommendations/u1", headers={"Authorization": f"Bearer guess{n % 2}"}
            ).status_code
            == 401
        )
    assert asked == ["guess0", "guess1", "guess0"], (
        "every unknown token is looked up again, none kept in memory"
    )
    for _ in range(2):
        assert (
            client.get("/v1/recommendations/u1", headers=service.headers("read")).status_code == 200
        )
    assert asked.count(service.read_token) == 1, "a known token's role is cached"


def test_recommendations_and_scores_refuse_unknown_ids_and_bad_k(client, service):
    assert client.get("/v1/recommendations/nobody", headers=service.headers()).status_code == 404
    assert client.get("/v1/recommendations/u1?k=0", headers=service.headers()).status_code == 422
    top = client.get("/v1/recommendations/u1?k=3", headers=service.headers()).json()["items"]
    assert len(top) == 3 and top[0]["score"] >= top[1]["score"] >= top[2]["score"]
    unknown = client.post(
        "/v1/scores", json={"pairs": [["u1", "nothing"]]}, headers=service.headers()
    )
    assert unknown.status_code == 404 and "nothing" in unknown.json()["detail"]
    assert (
        client.post("/v1/scores", json={"pairs": []}, headers=service.headers()).status_code == 422
    )
    assert client.get("/v1/deletions/never-sent", headers=service.headers()).status_code == 404


def test_in_process_worker_publishes_while_serving(service):
    with TestClient(create_app(service.home, worker=True)) as client:
        sent = client.post(
            "/v1/deletions", json={"request_id": "w", "items": ["i7"]}, headers=service.headers()
        )
        assert sent.status_code == 202
        for _ in range(400):
            status = client.get("/v1/deletions/w", headers=service.headers()).json()["status"]
            assert (
                client.get("/v1/recommendations/u1?k=2", headers=service.headers()).status_code
                == 200
            )
            if status == "published":
                break
            time.sleep(0.05)
        assert status == "published"
        health = client.get("/v1/health").json()
        assert health["worker"] == "in-process" and health["worker_error"] is None
        assert health["requests"] == {"published": 1}


def test_the_in_process_worker_waits_for_a_held_lock_and_health_says_503_meanwhile(service):
    """Another worker holds the lock: health is 503 'worker-waiting' and requests wait; once that
    worker stops, the in-process one takes the lock (trying again with back-off) and publishes."""
    holder = open(service.home.lock_file, "a+")
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with TestClient(create_app(service.home, worker=True)) as client:
            sent = client.post(
                "/v1/deletions",
                json={"request_id": "w", "items": ["i7"]},
                headers=service.headers(),
            )
            assert sent.status_code == 202
            time.sleep(1.0)
            health = client.get("/v1/health")
            assert health.status_code == 503 and health.json()["status"] == "worker-waiting"
            assert (
                client.get("/v1/deletions/w", headers=service.headers()).json()["status"]
                == "received"
            )
            fcntl.flock(holder, fcntl.LOCK_UN)
            for _ in range(200):
                if (
                    client.get("/v1/deletions/w", headers=service.headers()).json()["status"]
                    == "published"
                ):
                    break
                time.sleep(0.05)
            health = client.get("/v1/health")
            assert health.status_code == 200 and health.json()["status"] == "ok"
            assert (
                client.get("/v1/deletions/w", headers=service.headers()).json()["status"]
                == "published"
            )
    finally:
        holder.close()


def test_health_is_503_when_the_in_process_worker_failed(service, monkeypatch):
    from recunlearn.errors import RecUnlearnError

    def fail(self, stop=None, drain=False, on_running=lambda _: None):
        raise RecUnlearnError(
            "version v000002 is recorded as staged but its folder is not complete"
        )

    monkeypatch.setattr(Worker, "run", fail)
    with TestClient(create_app(service.home, worker=True)) as client:
        for _ in range(100):
            health = client.get("/v1/health")
            if health.json()["status"] != "worker-waiting":
                break
            time.sleep(0.02)
        assert health.status_code == 503 and health.json()["status"] == "worker-failed"
        assert "folder is not complete" in health.json()["worker_error"]


def test_a_retry_is_answered_from_the_ledger_after_its_users_are_erased(client, service):
    """Resubmitting an acknowledged request is idempotent even once the served version no longer
    knows the users it erased, and even when no version can be served."""
    body = {"request_id": "forget-u5", "users": ["u5"]}
    assert client.post("/v1/deletions", json=body, headers=service.headers()).status_code == 202
    assert Worker(service.home).run(drain=True) == 1
    _wait_for_version(client, service, "v000003")
    again = client.post("/v1/deletions", json=body, headers=service.headers())
    assert (
        again.status_code == 200
        and again.json()["status"] == "published"
        and again.json()["version"] == 3
    )
    changed = client.post(
        "/v1/deletions", json={**body, "users": ["u5", "u6"]}, headers=service.headers()
    )
    assert changed.status_code == 409 and "different deletion" in changed.json()["detail"]
    assert (
        client.post(
            "/v1/deletions", json={"request_id": "new", "users": ["u5"]}, headers=service.headers()
        ).status_code
        == 404
    ), "a new request still needs known ids"

    service.home.pointer.write_text("v999999\n")  # nothing loadable
    with TestClient(create_app(service.home)) as broken:
        assert broken.post("/v1/deletions", json=body, headers=service.headers()).status_code == 200
        assert (
            broken.post(
                "/v1/deletions",
                json={"request_id": "other", "users": ["u1"]},
                headers=service.headers(),
            ).status_code
            == 503
        )


def test_placeholders_of_erased_users_are_unknown_ids(client, service):
    assert (
        client.post(
            "/v1/deletions", json={"request_id": "u7", "users": ["u7"]}, headers=service.headers()
        ).status_code
        == 202
    )
    Worker(service.home).run(drain=True)
    _wait_for_version(client, service, "v000003")
    _, model = load_current(service.home)
    placeholder = next(u for u in model.train.users.ids.tolist() if u.startswith("<erased"))
    recommended = client.get(f"/v1/recommendations/{placeholder}", headers=service.headers())
    assert recommended.status_code == 404 and "unknown user id" in recommended.json()["detail"]
    scored = client.post(
        "/v1/scores", json={"pairs": [[placeholder, "i1"]]}, headers=service.headers()
    )
    assert scored.status_code == 404 and placeholder in scored.json()["detail"]
    deleted = client.post(
        "/v1/deletions",
        json={"request_id": "ph", "users": [placeholder]},
        headers=service.headers(),
    )
    assert deleted.status_code == 404 and placeholder in deleted.json()["detail"]

    ledger = service.home.ledger()  # one stored before the API refused placeholders
    ledger.submit(DeletionRequest(request_id="old", users=[placeholder]))
    ledger.close()
    Worker(service.home).run(drain=True)
    checks = verify_request(service.home, "old", retrain=False).checks
    assert all(c.ok for c in checks if c.name == "users erased"), (
        "a placeholder names nobody: nothing is kept"
    )
