"""Deletion requests and the deletion sets built from a table."""

from __future__ import annotations

import numpy as np
import pytest

from recunlearn.data import (
    DeletionRequest,
    item_deletion,
    label_flip_attack,
    random_interactions,
    user_deletion,
)
from recunlearn.errors import EmptyRequestError, UnknownIdError


def test_random_interactions_size_and_seed(tiny):
    request = random_interactions(tiny, 0.1, seed=1)
    assert len(request.pairs) == round(0.1 * len(tiny))
    assert request.rows(tiny).sum() == len(request.pairs)  # pairs are unique in the table
    assert random_interactions(tiny, 0.1, seed=1).pairs == request.pairs
    assert random_interactions(tiny, 0.1, seed=2).pairs != request.pairs
    with pytest.raises(ValueError, match="fraction"):
        random_interactions(tiny, 1.5)


def test_user_deletion_removes_every_row_of_the_users(tiny):
    request = user_deletion(tiny, n_users=3, seed=0)
    assert len(request.users) == 3
    rows = request.rows(tiny)
    chosen = tiny.users.index(request.users)
    np.testing.assert_array_equal(rows, np.isin(tiny.user, chosen))
    assert user_deletion(tiny, n_users=3, seed=0).users == request.users
    assert user_deletion(tiny, users=["u5"]).users == ("u5",)


def test_item_deletion_removes_every_row_of_the_items(tiny):
    request = item_deletion(tiny, n_items=2, seed=4)
    rows = request.rows(tiny)
    np.testing.assert_array_equal(rows, np.isin(tiny.item, tiny.items.index(request.items)))
    assert rows.any()


def test_label_flip_flips_exactly_the_rows_the_request_names(tiny_split):
    train = tiny_split.train
    polluted, request = label_flip_attack(train, fraction=0.05, seed=3)
    flipped = polluted.label != train.label
    assert flipped.sum() == round(0.05 * len(train))
    np.testing.assert_array_equal(request.rows(polluted), flipped)
    np.testing.assert_array_equal(polluted.label[flipped], 1 - train.label[flipped])
    np.testing.assert_array_equal(polluted.rating, train.rating)  # only labels change
    _, again = label_flip_attack(train, fraction=0.05, seed=3)
    assert again.pairs == request.pairs


def test_requests_reject_unknown_ids_and_emptiness(tiny):
    with pytest.raises(UnknownIdError, match="'ghost'"):
        DeletionRequest(users=["ghost"]).rows(tiny)
    with pytest.raises(UnknownIdError, match="'nothing'"):
        DeletionRequest(pairs=[("u1", "nothing")]).rows(tiny)
    with pytest.raises(EmptyRequestError):
        DeletionRequest()


def test_request_round_trips_through_json(tiny):
    request = random_interactions(tiny, 0.05, seed=0)
    again = DeletionRequest.model_validate_json(request.model_dump_json())
    assert again == request
    np.testing.assert_array_equal(again.rows(tiny), request.rows(tiny))


def test_erased_users_become_unknown_and_requests_skip_them(tiny):
    from recunlearn.data import DeletionRequest
    from recunlearn.errors import DataError

    u3 = tiny.users.index(["u3"])[0]
    rest = tiny.drop(tiny.user == u3)
    erased = rest.with_erased_users([u3])
    assert "u3" not in erased.users and len(erased.users) == len(tiny.users)
    assert (
        erased.users.ids[u3].startswith("<erased ") and erased.content_hash() == rest.content_hash()
    )
    with pytest.raises(DataError, match="only users without rows"):
        tiny.with_erased_users([u3])
    with pytest.raises(UnknownIdError):
        DeletionRequest(users=["u3"]).rows(erased)
    assert DeletionRequest(users=["u3"]).known_to(erased) is None
    partial = DeletionRequest(users=["u3", "u4"], pairs=[("u3", "i1")]).known_to(erased)
    assert partial.users == ("u4",) and partial.pairs == ()
    assert partial.rows(erased).sum() == (erased.user == erased.users.index(["u4"])[0]).sum()


@pytest.mark.parametrize("pairs", [("u1", "i2"), ["u1", "i2"], "u1i2", [("u1", "i2", "x")], [3]])
def test_a_pair_not_given_as_a_pair_is_refused(pairs):
    """A bare pair passed as the list was split character by character: ('12', '34') named user '1'
    item '2' and user '3' item '4', other users' rows."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="pairs"):
        DeletionRequest(pairs=pairs)
    assert DeletionRequest(pairs=[("u1", "i2"), ["u3", 4]]).pairs == (("u1", "i2"), ("u3", "4"))


def test_an_id_that_begins_like_a_placeholder_is_still_erased():
    """Only an index that holds its own placeholder was erased before; a real id such as
    '<erased 7>' at index 0 used to be skipped, so the erased user kept their id."""
    from recunlearn.data import Vocabulary

    vocabulary = Vocabulary.from_values(["<erased 7>", "<erased 1>", "bob"], kind="user")
    first = vocabulary.ids.tolist().index("<erased 7>")
    erased = vocabulary.erased([first])
    assert "<erased 7>" not in erased and erased.ids[first].startswith("<erased ")
    again = erased.erased([first])
    assert again.ids.tolist() == erased.ids.tolist(), "erasing twice changes nothing"
    assert erased.placeholders([erased.ids[first]]) == {erased.ids[first]}


def test_label_flip_flips_every_row_of_a_repeated_pair():
    """A request names pairs: flipping one of two rows of a pair made its request remove the clean
    copy too, so 'retraining without the flipped rows' lost a clean row."""
    import pandas as pd

    from recunlearn.data import Interactions

    frame = pd.DataFrame(
        {
            "user": ["a", "a", "a", "b", "b", "c"],
            "item": ["x", "x", "y", "x", "y", "y"],
            "rating": [5.0, 1.0, 4.0, 2.0, 5.0, 3.0],
        }
    )
    data = Interactions.from_frame(frame, timestamp=None, threshold=3)
    for seed in range(20):
        polluted, request = label_flip_attack(data, fraction=0.2, seed=seed)
        flipped = polluted.label != data.label
        np.testing.assert_array_equal(request.rows(data), flipped)
        assert flipped[0] == flipped[1], "the two rows of (a, x) go together"
