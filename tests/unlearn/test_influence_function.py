"""The if baseline passes the shared conformance tests."""

from tests.conformance import UnlearnerConformance


class TestInfluenceFunction(UnlearnerConformance):
    method = "if"
