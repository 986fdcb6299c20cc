"""Concurrent clients submitting the same new request ids at once (on each store): one 202 per id,
200 for the same body, 409 for another, never a 5xx; nothing lost or stored twice."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient

from recunlearn.service.api import create_app

IDS, COPIES = 6, 10


def _body(request_id: str, copy: int) -> dict:
    """The last copy of each id names another user: a different deletion under the same id."""
    return {"request_id": request_id, "users": ["u2" if copy == COPIES - 1 else "u1"]}


def test_sixty_duplicate_first_submissions_give_one_202_per_id_and_no_5xx(service):
    barrier = threading.Barrier(IDS * COPIES)
    with TestClient(create_app(service.home)) as client:

        def submit(job: tuple[str, int]) -> tuple[str, int, int]:
            request_id, copy = job
            barrier.wait()
            answer = client.post(
                "/v1/deletions", json=_body(request_id, copy), headers=service.headers()
            )
            return request_id, copy, answer.status_code

        jobs = [(f"dup-{k}", copy) for k in range(IDS) for copy in range(COPIES)]
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            results = list(pool.map(submit, jobs))
        stored = {
            f"dup-{k}": client.get(f"/v1/deletions/dup-{k}", headers=service.headers("read")).json()
            for k in range(IDS)
        }
    assert max(status for *_, status in results) < 500, Counter(status for *_, status in results)
    for request_id in stored:
        mine = {copy: status for rid, copy, status in results if rid == request_id}
        winner = [copy for copy, status in mine.items() if status == 202]
        assert len(winner) == 1, mine
        same = _body(request_id, winner[0])["users"]
        assert mine == {
            copy: 202
            if copy == winner[0]
            else 200
            if _body(request_id, copy)["users"] == same
            else 409
            for copy in range(COPIES)
        }
        assert (
            stored[request_id]["status"] == "received" and stored[request_id]["named"]["users"] == 1
        )
    ledger = service.home.ledger()
    assert {r.request_id: r.request.users for r in ledger.records()} == {
        rid: tuple(_body(rid, next(c for r, c, s in results if r == rid and s == 202))["users"])
        for rid in stored
    }
    assert Counter(e["request_id"] for e in ledger.events() if e["kind"] == "received") == {
        rid: 1 for rid in stored
    }
    ledger.close()
