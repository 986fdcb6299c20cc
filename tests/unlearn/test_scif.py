"""The scif baseline passes the shared conformance tests."""

from recunlearn.testing import UnlearnerConformance


class TestSCIF(UnlearnerConformance):
    method = "scif"
