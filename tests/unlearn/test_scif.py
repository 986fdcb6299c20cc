"""The scif baseline passes the shared conformance tests."""

from tests.conformance import UnlearnerConformance


class TestSCIF(UnlearnerConformance):
    method = "scif"
