"""The if baseline passes the shared conformance tests."""

from recunlearn.testing import UnlearnerConformance


class TestInfluenceFunction(UnlearnerConformance):
    method = "if"
