"""Interaction tables and prompt samples behave alike where the unlearning machinery uses them."""

import numpy as np
import pytest

from recunlearn.data import Interactions, SampleTable, Table
from recunlearn.data.tallrec import build_samples
from tests.conftest import make_tiny


@pytest.fixture(params=["interactions", "samples"])
def table(request) -> Table:
    data = make_tiny()
    return data if request.param == "interactions" else build_samples(data, history=4)


def test_both_tables_satisfy_the_protocol(table):
    assert isinstance(table, Table)
    assert isinstance(table, (Interactions, SampleTable))


def test_take_drop_hash_and_files_agree(table, tmp_path):
    mask = np.zeros(len(table), bool)
    mask[::3] = True
    kept = table.drop(mask)
    assert len(kept) == len(table) - mask.sum()
    assert kept.content_hash() == table.take(np.flatnonzero(~mask)).content_hash()
    assert kept.content_hash() != table.content_hash()
    np.testing.assert_array_equal(kept.label, table.label[~mask])
    path = tmp_path / "table.npz"
    kept.save(path)
    again = type(table).load(path)
    assert again.content_hash() == kept.content_hash() and again.name == kept.name
