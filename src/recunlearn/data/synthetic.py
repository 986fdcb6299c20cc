"""A seeded synthetic interaction log with a known latent structure, from tiny to 10M rows.

Every item has one genre; every user has a taste score per genre. Users interact more often with
genres they like (exposure) and with popular items (Zipf popularity), and whether they like an item
depends on their taste for its genre plus the item's quality. Item titles are built from words
typical of the genre ("The Haunted Night" for horror), so a language model can read the signal that
matrix factorisation finds in the ids. Everything is vectorised numpy: no Python loop over rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from recunlearn.data.interactions import Interactions, Vocabulary
from recunlearn.errors import ConfigError, validation_problems
from recunlearn.seeds import Seed

GENRE_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "horror": (
        ("Haunted", "Cursed", "Bloody", "Screaming", "Undead", "Sinister", "Possessed", "Wicked"),
        ("Night", "Grave", "Asylum", "Crypt", "Nightmare", "Coffin", "Demon", "Ghost"),
    ),
    "romance": (
        ("Tender", "Secret", "Sweet", "Forbidden", "Eternal", "Gentle", "Passionate", "Lovely"),
        ("Kiss", "Heart", "Wedding", "Valentine", "Romance", "Sweetheart", "Honeymoon", "Embrace"),
    ),
    "science fiction": (
        ("Galactic", "Quantum", "Robotic", "Cosmic", "Orbital", "Android", "Stellar", "Cyber"),
        ("Starship", "Planet", "Nebula", "Robot", "Spaceship", "Asteroid", "Colony", "Galaxy"),
    ),
    "comedy": (
        ("Crazy", "Silly", "Wacky", "Goofy", "Hilarious", "Clumsy", "Zany", "Funny"),
        ("Party", "Prank", "Vacation", "Roommates", "Mixup", "Blunder", "Circus", "Joke"),
    ),
    "western": (
        ("Dusty", "Outlaw", "Wild", "Lone", "Frontier", "Gunslinging", "Desert", "Rustler"),
        ("Saloon", "Sheriff", "Ranch", "Cowboy", "Canyon", "Stagecoach", "Rodeo", "Prairie"),
    ),
    "war": (
        ("Fallen", "Brave", "Iron", "Armored", "Frontline", "Victorious", "Embattled", "Heroic"),
        ("Battalion", "Battle", "Trench", "Regiment", "Siege", "Soldier", "Platoon", "Invasion"),
    ),
    "fantasy": (
        ("Enchanted", "Magic", "Mythic", "Elven", "Mystic", "Sorcerous", "Fabled", "Dragonborn"),
        ("Dragon", "Wizard", "Kingdom", "Sword", "Sorcerer", "Castle", "Quest", "Unicorn"),
    ),
    "crime": (
        (
            "Deadly",
            "Corrupt",
            "Undercover",
            "Criminal",
            "Ruthless",
            "Stolen",
            "Crooked",
            "Hardboiled",
        ),
        ("Heist", "Detective", "Mobster", "Gangster", "Murder", "Robbery", "Witness", "Cartel"),
    ),
    "documentary": (
        ("True", "Real", "Untold", "Natural", "Historic", "Inside", "Documented", "Scientific"),
        (
            "Story",
            "Report",
            "Investigation",
            "Chronicle",
            "Journey",
            "Record",
            "Wildlife",
            "History",
        ),
    ),
    "animation": (
        ("Cartoon", "Animated", "Colorful", "Talking", "Magical", "Tiny", "Playful", "Fluffy"),
        ("Bunny", "Puppy", "Kitten", "Toys", "Adventure", "Critters", "Penguin", "Teddy"),
    ),
    "musical": (
        ("Singing", "Dancing", "Melodic", "Rhythmic", "Jazzy", "Harmonious", "Broadway", "Lyrical"),
        ("Song", "Dance", "Melody", "Ballad", "Chorus", "Symphony", "Opera", "Serenade"),
    ),
    "sports": (
        (
            "Winning",
            "Champion",
            "Underdog",
            "Athletic",
            "Fastest",
            "Olympic",
            "Undefeated",
            "Rookie",
        ),
        ("Team", "Championship", "Touchdown", "Goal", "Coach", "Stadium", "Marathon", "Boxer"),
    ),
}
"""Per genre, adjectives and nouns that appear only in that genre's titles."""

GENRES: tuple[str, ...] = tuple(GENRE_WORDS)


class SyntheticConfig(BaseModel):
    """Sizes and strengths of the latent structure; unknown keys are an error."""

    model_config = ConfigDict(extra="forbid")

    n_interactions: int = Field(100_000, ge=1)
    """Rows to generate; every (user, item) pair occurs at most once."""
    n_users: int | None = Field(None, ge=1)
    """Users (each gets at least one row); default the larger of n_interactions / 100 and
    2 * sqrt(n_interactions): about 100 rows per user, like MovieLens-100K, in large tables, and
    a grid at most a quarter full in small ones."""
    n_items: int | None = Field(None, ge=1)
    """Items (each gets at least one row); default as many as users, at least n_genres."""
    n_genres: int = Field(8, ge=1, le=len(GENRES))
    """Latent genres; they name the title words, so at most as many as there are word lists."""
    seed: Seed = 0
    """The same seed and sizes give the same table, bit for bit."""
    popularity: float = Field(1.0, ge=0.0)
    """Zipf exponent of item popularity (0 = uniform): a few items get most interactions."""
    activity: float = Field(0.8, ge=0.0)
    """Zipf exponent of user activity (0 = every user equally active)."""
    exposure: float = Field(1.0, ge=0.0)
    """How much users seek out genres they like (0 = genre chosen independently of taste)."""
    taste_rank: int = Field(3, ge=1)
    """Users' tastes for the genres are mixtures of this many hidden taste profiles, so genres
    correlate (a horror fan tends to like crime) and a few interactions reveal a user's taste."""
    taste_strength: float = Field(1.5, ge=0.0)
    """Weight of the user's taste for the item's genre in the like/dislike logit (0 = no signal)."""
    quality_strength: float = Field(0.5, ge=0.0)
    """Spread of per-item quality in the logit (good items are liked by more users)."""
    bias: float = -0.5
    """Global logit offset; -0.5 gives a positive rate near MovieLens' 0.55 (exposure already
    leans the rows towards genres users like)."""
    start_time: int = 880_000_000
    """First timestamp (seconds since the epoch)."""
    time_span: int = Field(3 * 365 * 86_400, ge=1)
    """Timestamps are spread uniformly over this many seconds."""

    @model_validator(mode="after")
    def _sizes_fit(self) -> SyntheticConfig:
        users, items = self.users, self.items
        if items < self.n_genres:
            raise ValueError(f"n_items ({items}) must be at least n_genres ({self.n_genres})")
        if self.n_interactions < max(users, items):
            raise ValueError(
                f"n_interactions ({self.n_interactions}) must be at least max(n_users, n_items) "
                f"= {max(users, items)}, so that every user and item has a row"
            )
        if self.n_interactions > 0.5 * users * items:
            raise ValueError(
                f"n_interactions ({self.n_interactions}) exceeds half of the {users} x {items} "
                "user-item grid; add users or items"
            )
        return self

    @property
    def users(self) -> int:
        if self.n_users is not None:
            return self.n_users
        return max(10, int(2 * self.n_interactions**0.5), self.n_interactions // 100)

    @property
    def items(self) -> int:
        return self.n_items if self.n_items is not None else max(self.n_genres, self.users)


@dataclass(frozen=True)
class SyntheticData:
    """The generated table and the ground truth behind it (for tests and analyses)."""

    interactions: Interactions
    item_genre: np.ndarray
    """Genre index of each item (in vocabulary order); ``GENRES[g]`` names it."""
    user_taste: np.ndarray
    """``(n_users, n_genres)`` taste scores; the like logit uses ``taste[user, genre[item]]``."""
    like_probability: np.ndarray
    """Per row, the probability the label was drawn from."""


def _zipf_weights(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Weights proportional to rank^-exponent, assigned to entities in random order."""
    weights = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    return weights[rng.permutation(n)] / weights.sum()


def _sample_genres(
    user_rows: np.ndarray,
    taste: np.ndarray,
    exposure: float,
    rng: np.random.Generator,
    chunk: int = 1 << 21,
) -> np.ndarray:
    """Per row, a genre drawn from softmax(exposure * taste[user]) by inverse CDF, in chunks."""
    weights = np.exp(exposure * (taste - taste.max(axis=1, keepdims=True)))
    cumulative = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1).astype(np.float32)
    out = np.empty(len(user_rows), np.int64)
    for start in range(0, len(user_rows), chunk):
        users = user_rows[start : start + chunk]
        uniform = rng.random(len(users), dtype=np.float32)
        out[start : start + chunk] = (cumulative[users, :-1] < uniform[:, None]).sum(axis=1)
    return out


def _sample_items(
    genres: np.ndarray, item_genre: np.ndarray, popularity: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Per row, an item of the row's genre drawn in proportion to popularity (inverse CDF)."""
    order = np.argsort(item_genre, kind="stable")
    cumulative = np.cumsum(popularity[order])
    counts = np.bincount(item_genre)
    ends = np.cumsum(counts)
    mass_before = np.r_[0.0, cumulative[ends[:-1] - 1]]
    mass = cumulative[ends - 1] - mass_before
    target = mass_before[genres] + rng.random(len(genres)) * mass[genres]
    position = np.searchsorted(cumulative, target, side="right")
    position = np.clip(position, ends[genres] - counts[genres], ends[genres] - 1)
    return order[position]


def _titles(item_genre: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """'The <Adjective> <Noun> (<year>)' with both words from the item's genre."""
    n = len(item_genre)
    adjective_pick = rng.integers(0, 8, n)
    noun_pick = rng.integers(0, 8, n)
    year = rng.integers(1950, 2021, n)
    words = [GENRE_WORDS[GENRES[g]] for g in range(int(item_genre.max()) + 1)]
    return np.array(
        [
            f"The {words[g][0][a]} {words[g][1][b]} ({y})"
            for g, a, b, y in zip(
                item_genre.tolist(), adjective_pick.tolist(), noun_pick.tolist(), year.tolist()
            )
        ],
        dtype=str,
    )


def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    keys = np.sort(keys)
    return keys[np.r_[True, keys[1:] != keys[:-1]]] if len(keys) else keys


def _unique_pairs(
    config: SyntheticConfig,
    user_weight: np.ndarray,
    item_genre: np.ndarray,
    item_weight: np.ndarray,
    taste: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """``n_interactions`` distinct pair keys (user * n_items + item) covering every user and item.

    First one row per user and per item, then rounds of draws from the popularity/exposure model,
    keeping pairs not seen yet, until there are enough; each round sizes its draw by the share of
    fresh pairs the previous round yielded. Gives up after 30 draws per requested row.
    """
    n_users, n_items = config.users, config.items
    k = np.arange(max(n_users, n_items), dtype=np.int64)
    covering = _sorted_unique((k % n_users) * n_items + rng.permutation(n_items)[k % n_items])
    need = config.n_interactions - len(covering)
    seen, fresh_parts, have, fresh_share, drawn = covering, [], 0, 0.8, 0
    while have < need:
        if drawn > 30 * config.n_interactions:
            raise ConfigError(
                f"could not draw {config.n_interactions} distinct pairs ({drawn:,} draws gave "
                f"{len(covering) + have:,}): the popularity skew concentrates them on too few "
                "items; lower popularity/exposure or add items"
            )
        draws = int((need - have) / fresh_share * 1.1) + 64
        drawn += draws
        users = rng.choice(n_users, size=draws, p=user_weight)
        items = _sample_items(
            _sample_genres(users, taste, config.exposure, rng), item_genre, item_weight, rng
        )
        keys = _sorted_unique(users * np.int64(n_items) + items)
        position = np.minimum(np.searchsorted(seen, keys), len(seen) - 1)
        fresh = keys[seen[position] != keys]
        fresh_parts.append(fresh)
        have += len(fresh)
        seen = np.sort(
            np.concatenate([seen, fresh]), kind="stable"
        )  # two sorted runs: a linear merge
        fresh_share = max(len(fresh) / draws, 0.01)
    extra = np.concatenate(fresh_parts) if fresh_parts else np.empty(0, np.int64)
    if len(extra) > need:
        extra = extra[rng.choice(len(extra), size=need, replace=False)]
    return np.concatenate([covering, extra])


def generate(config: SyntheticConfig) -> SyntheticData:
    """The table and its ground truth for ``config``."""
    rng = np.random.default_rng(config.seed)
    n_users, n_items = config.users, config.items
    item_genre = (np.arange(n_items) % config.n_genres)[rng.permutation(n_items)]
    profiles = rng.standard_normal((config.taste_rank, config.n_genres))
    taste = (
        rng.standard_normal((n_users, config.taste_rank)) @ profiles / np.sqrt(config.taste_rank)
    ).astype(np.float32)
    quality = rng.standard_normal(n_items).astype(np.float32)
    item_weight = _zipf_weights(n_items, config.popularity, rng)
    user_weight = _zipf_weights(n_users, config.activity, rng)

    keys = _unique_pairs(config, user_weight, item_genre, item_weight, taste, rng)
    timestamp = config.start_time + rng.integers(0, config.time_span, len(keys))
    order = np.argsort(timestamp, kind="stable")
    keys, timestamp = keys[order], timestamp[order]
    user, item = keys // n_items, keys % n_items

    logit = (
        config.taste_strength * taste[user, item_genre[item]]
        + config.quality_strength * quality[item]
        + config.bias
    )
    probability = 1.0 / (1.0 + np.exp(-logit))
    label = rng.random(len(keys)) < probability
    # ratings 1-5 consistent with label = rating > 3: likes are 4 or 5, dislikes 1 to 3
    strong = rng.random(len(keys)) < np.abs(2.0 * probability - 1.0)
    rating = np.where(label, 4 + strong, 3 - strong - (strong & (rng.random(len(keys)) < 0.5)))

    data = Interactions(
        user=user,
        item=item,
        label=label.astype(np.float32),
        rating=rating.astype(np.float32),
        timestamp=timestamp,
        users=Vocabulary(np.char.add("u", np.arange(n_users).astype(str)), kind="user"),
        items=Vocabulary(np.char.add("i", np.arange(n_items).astype(str)), kind="item"),
        item_title=_titles(item_genre, rng),
        name=f"synthetic-{config.n_interactions}-s{config.seed}",
    )
    return SyntheticData(data, item_genre, taste, probability.astype(np.float32))


def synthetic(**options) -> Interactions:
    """A synthetic table; options are the fields of :class:`SyntheticConfig` (e.g. ``n_interactions``)."""
    try:
        config = SyntheticConfig(**options)
    except ValidationError as exc:
        raise ConfigError(f"synthetic dataset: {validation_problems(exc)}") from None
    return generate(config).interactions
