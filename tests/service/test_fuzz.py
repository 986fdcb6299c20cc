"""Fuzz the API from its own OpenAPI spec (schemathesis, in-process ASGI): never a 5xx, and every answer
matches the status codes and schemas the spec declares, with a valid token and with wrong ones."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from recunlearn.service.api import create_app

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _operations(service):
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(service.home))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {(o.method.upper(), o.path) for o in operations} == {
        ("POST", "/v1/deletions"),
        ("GET", "/v1/deletions/{request_id}"),
        ("GET", "/v1/recommendations/{user}"),
        ("POST", "/v1/scores"),
        ("GET", "/v1/health"),
    }
    return operations


def _fuzz(operation, headers: dict[str, str], examples: int, seen: list[int]) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def run(case):
        response = case.call_and_validate(headers=headers, checks=CHECKS)
        seen.append(response.status_code)

    run()


def test_fuzzing_with_a_write_token_finds_no_server_error(service):
    seen: list[int] = []
    for operation in _operations(service):
        _fuzz(operation, service.headers("write"), 40, seen)
    assert max(seen) < 500 and 200 in seen and any(400 <= s < 500 for s in seen)


def test_fuzzing_with_wrong_tokens_gets_401(service):
    for headers in ({"Authorization": "Bearer wrong"}, {"Authorization": "Basic dXNlcjpwYXNz"}):
        for operation in _operations(service):
            seen: list[int] = []
            _fuzz(operation, headers, 10, seen)
            allowed = {200} if operation.path == "/v1/health" else {401, 413, 422}
            assert set(seen) <= allowed and (operation.path == "/v1/health" or 401 in seen), (
                operation.path,
                seen,
            )
