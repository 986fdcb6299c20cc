"""The finetune baseline passes the shared conformance tests."""

from recunlearn.testing import UnlearnerConformance


class TestFineTune(UnlearnerConformance):
    method = "finetune"
