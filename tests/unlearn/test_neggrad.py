"""The neggrad baseline passes the shared conformance tests."""

from tests.conformance import UnlearnerConformance


class TestNegGrad(UnlearnerConformance):
    method = "neggrad"
