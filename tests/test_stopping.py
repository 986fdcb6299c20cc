"""The one early-stopping loop every trainer uses."""

from __future__ import annotations

from recunlearn.train.stopping import early_stopping


def run(scores, max_epochs, patience=None, every=1):
    trained, state = [], {"epoch": 0}

    def train_epoch(epoch):
        trained.append(epoch)
        state["epoch"] = epoch

    reads = iter(scores)
    stopped = early_stopping(
        train_epoch, lambda: next(reads), lambda: dict(state), max_epochs, patience, every
    )
    return stopped, trained


def test_keeps_the_best_state_and_stops_after_patience_epochs_without_a_gain():
    stopped, trained = run([0.5, 0.7, 0.6, 0.7, 0.65, 0.9], max_epochs=10, patience=3)
    assert trained == [1, 2, 3, 4, 5], "epochs 3, 4, 5 do not beat epoch 2 (a tie is no gain)"
    assert (stopped.best_epoch, stopped.best_score, stopped.best_state) == (2, 0.7, {"epoch": 2})
    assert stopped.history == [0.5, 0.7, 0.6, 0.7, 0.65] and stopped.epochs == 5


def test_measures_every_few_epochs_and_after_the_last():
    stopped, trained = run([0.5, 0.6, 0.4], max_epochs=7, patience=2, every=3)
    assert trained == list(range(1, 8)) and stopped.history == [0.5, 0.6, 0.4]
    assert stopped.best_epoch == 6, "measured after epochs 3, 6 and the last, 7"
    stopped, trained = run([0.5, 0.4, 0.3], max_epochs=20, patience=2, every=3)
    assert trained == list(range(1, 10)), "two measures (six epochs) without a gain after epoch 3"


def test_without_patience_or_measure_every_epoch_is_trained():
    stopped, trained = run([0.9] + [0.1] * 9, max_epochs=10)
    assert trained == list(range(1, 11)) and stopped.best_epoch == 1
    nothing = early_stopping(lambda _: None, None, lambda: "state", 4, patience=1)
    assert (nothing.epochs, nothing.best_state, nothing.history) == (4, None, [])


def test_a_nan_measure_is_never_best():
    stopped, trained = run([float("nan")] * 3, max_epochs=5, patience=2)
    assert trained == [1, 2] and stopped.best_state is None and stopped.best_epoch == 0
