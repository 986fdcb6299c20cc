"""The finetune baseline passes the shared conformance tests."""

from tests.conformance import UnlearnerConformance


class TestFineTune(UnlearnerConformance):
    method = "finetune"
