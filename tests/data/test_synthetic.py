"""The synthetic generator: deterministic, sized as asked, and carrying learnable signal in ids and titles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recunlearn.data import (
    Interactions,
    SyntheticConfig,
    binarize,
    load_dataset,
    random_split,
    synthetic,
)
from recunlearn.data.synthetic import GENRE_WORDS, GENRES, generate
from recunlearn.errors import ConfigError
from recunlearn.evaluate import roc_auc
from recunlearn.models import MFConfig
from recunlearn.train import TrainConfig, fit_model, predict


def test_same_seed_same_table_other_seed_other_table():
    first = synthetic(n_interactions=3000, seed=7)
    again = load_dataset("synthetic", n_interactions=3000, seed=7)
    other = synthetic(n_interactions=3000, seed=8)
    assert first.content_hash() == again.content_hash()
    assert first.item_title.tolist() == again.item_title.tolist()
    assert first.content_hash() != other.content_hash()


@pytest.mark.parametrize(
    "options",
    [
        {"n_interactions": 12},
        {"n_interactions": 5000, "n_users": 80, "n_items": 300, "n_genres": 5},
        {"n_interactions": 20_000, "popularity": 1.5, "exposure": 3.0},
    ],
)
def test_sizes_are_exact_and_pairs_unique(options):
    data = synthetic(**options)
    config = SyntheticConfig(**options)
    assert len(data) == options["n_interactions"]
    assert (data.n_users, data.n_items) == (config.users, config.items)
    assert len(np.unique(data.user)) == data.n_users and len(np.unique(data.item)) == data.n_items
    assert len(np.unique(data.pair_keys)) == len(data)
    assert np.all(np.diff(data.timestamp) >= 0)
    assert set(np.unique(data.rating).tolist()) <= {1, 2, 3, 4, 5}


def test_ratings_agree_with_labels_under_the_movielens_threshold():
    data = synthetic(n_interactions=5000, seed=2)
    np.testing.assert_array_equal(binarize(data, 3).label, data.label)
    assert 0.45 < data.label.mean() < 0.7


def test_popularity_is_skewed():
    def top_tenth_share(popularity: float) -> float:
        counts = np.sort(np.bincount(synthetic(n_interactions=20_000, popularity=popularity).item))[
            ::-1
        ]
        return counts[: len(counts) // 10].sum() / counts.sum()

    assert top_tenth_share(1.0) > 2 * top_tenth_share(0.0)


def test_titles_name_the_genre():
    truth = generate(SyntheticConfig(n_interactions=2000, n_genres=6, seed=1))
    titles, genres = truth.interactions.item_title, truth.item_genre
    assert len(set(titles.tolist())) > 0.8 * len(titles)
    for title, genre in zip(titles.tolist(), genres.tolist()):
        adjectives, nouns = GENRE_WORDS[GENRES[genre]]
        words = title.split()
        assert words[1] in adjectives and words[2] in nouns, title


def test_labels_follow_taste_for_the_genre():
    truth = generate(SyntheticConfig(n_interactions=20_000, seed=3))
    data = truth.interactions
    taste = truth.user_taste[data.user, truth.item_genre[data.item]]
    assert roc_auc(data.label, taste) > 0.7
    assert roc_auc(data.label, truth.like_probability) > roc_auc(data.label, taste)


def test_matrix_factorisation_learns_it():
    split = random_split(synthetic(n_interactions=20_000, seed=1), seed=0)
    fitted = fit_model(
        MFConfig(dim=16),
        split.train,
        split.valid,
        TrainConfig(lr=0.01, l2=1e-3, batch_size=1024, max_epochs=20, patience=3, seed=0),
    )
    assert roc_auc(split.test.label, predict(fitted.model, split.test.user, split.test.item)) > 0.65


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="n_colours"):
        synthetic(n_colours=3)
    with pytest.raises(ConfigError, match="half of the 10 x 10"):
        synthetic(n_interactions=60, n_users=10, n_items=10)
    with pytest.raises(ConfigError, match="n_genres"):
        synthetic(n_genres=len(GENRES) + 1)
    with pytest.raises(ConfigError, match="could not draw 4900 distinct pairs"):
        synthetic(n_interactions=4900, n_users=100, n_items=100, popularity=3, exposure=5)


def _title_word_auc(split) -> float:
    """AUC of a model that sees only titles: a user's smoothed like-rate of each title word in training."""

    def rows(part):
        words = np.array([title.split()[1:3] for title in part.item_title.tolist()])[part.item]
        return pd.DataFrame(
            {"user": part.user, "label": part.label, "adjective": words[:, 0], "noun": words[:, 1]}
        )

    train, test = rows(split.train), rows(split.test)
    prior = train["label"].mean()
    both = pd.concat(
        [train[["user", "label"]].assign(word=train[c]) for c in ("adjective", "noun")]
    )
    stats = both.groupby(["user", "word"])["label"].agg(["sum", "count"])
    preference = (stats["sum"] + 2 * prior) / (stats["count"] + 2)
    score = sum(
        preference.reindex(pd.MultiIndex.from_arrays([test["user"], test[c]]))
        .fillna(prior)
        .to_numpy()
        for c in ("adjective", "noun")
    )
    return roc_auc(test["label"].to_numpy(), score)


def test_titles_alone_predict_likes_and_shuffled_titles_do_not():
    data = synthetic(n_interactions=20_000, seed=1)
    with_titles = _title_word_auc(random_split(data, seed=0))
    assert with_titles > 0.65
    # titles moved to other items keep only item-level noise (a popular item's words act as its id)
    shuffled = Interactions(
        user=data.user,
        item=data.item,
        label=data.label,
        rating=data.rating,
        timestamp=data.timestamp,
        users=data.users,
        items=data.items,
        item_title=np.random.default_rng(0).permutation(data.item_title),
    )
    assert _title_word_auc(random_split(shuffled, seed=0)) < with_titles - 0.08
