"""One contract suite for every registered ranker, plus quality on planted interactions."""

from __future__ import annotations

import numpy as np
import pytest

from funnel.exceptions import ConfigError, NotFittedError
from funnel.rank import RANKERS, Ranker, RankingData, get_ranker
from funnel.rank.metrics import auc, logloss

from ._data import SPECS, interaction_data

NEURAL = ["lr", "fm", "ffm", "widedeep", "deepfm", "dcnv2", "din"]


def make(name: str, **kw) -> Ranker:
    if name in NEURAL:
        base = {"epochs": 3, "batch_size": 256, "learning_rate": 0.01, "hidden_units": (16,)}
        if name == "din":  # attends over the rows' hist_* columns (see with_history)
            base |= {"item_field": "item_group", "history_len": 4}
    else:
        base = {"n_estimators": 30}
    return get_ranker(name)(SPECS, **(base | kw))


def with_history(data: RankingData, seed: int) -> RankingData:
    """``data`` plus random behaviour-sequence columns (``hist_*``, 0-6 entries), which only
    the sequence ranker reads."""
    rng = np.random.default_rng(seed)
    cols = dict(data.columns)
    lengths = rng.integers(0, 7, len(data))
    for name, values in (("hist_items", [f"i{k}" for k in range(30)]),
                         ("hist_kinds", ["click", "skip", "booking"]),
                         ("hist_ages", ["age0", "age3", "age5"])):
        cols[name] = np.empty(len(data), dtype=object)
        cols[name][:] = [list(rng.choice(values, n)) for n in lengths]
    return RankingData(cols, data.label, data.group, data.negative_rate)


@pytest.fixture(scope="module")
def small() -> tuple[RankingData, RankingData]:
    return (with_history(interaction_data(3000, seed=1)[0], 1),
            with_history(interaction_data(1000, seed=2)[0], 2))


@pytest.mark.parametrize("name", sorted(RANKERS))
class TestRankerContract:
    def test_fit_returns_self_and_probabilities(self, name, small) -> None:
        train, valid = small
        model = make(name)
        assert model.fit(train, valid) is model
        p = model.predict_proba(valid.columns)
        assert p.shape == (len(valid),) and np.all((p > 0) & (p < 1))
        assert auc(valid.label, p) > 0.6

    def test_save_load_round_trip_is_exact(self, name, small, tmp_path) -> None:
        train, valid = small
        model = make(name).fit(train, valid)
        model.save(tmp_path / "m")
        assert not list((tmp_path / "m").glob("*.pkl"))
        again = Ranker.load(tmp_path / "m")
        assert type(again) is type(model)
        np.testing.assert_array_equal(
            again.predict_proba(valid.columns), model.predict_proba(valid.columns)
        )

    def test_batch_equals_single_rows(self, name, small) -> None:
        train, valid = small
        model = make(name).fit(train)
        batch = model.predict_proba(valid.columns)
        single = [model.predict_proba(valid.take(np.array([i])).columns)[0] for i in range(5)]
        np.testing.assert_allclose(single, batch[:5], rtol=1e-5)

    def test_fit_is_deterministic_under_a_seed(self, name, small) -> None:
        train, valid = small
        a = make(name, seed=3).fit(train, valid).predict_proba(valid.columns)
        b = make(name, seed=3).fit(train, valid).predict_proba(valid.columns)
        np.testing.assert_array_equal(a, b)

    def test_unfitted_use_raises(self, name, small) -> None:
        with pytest.raises(NotFittedError, match="not fitted"):
            make(name).predict_proba(small[1].columns)

    def test_bad_hyperparameter_names_value(self, name, small) -> None:
        key = "batch_size" if name in NEURAL else "n_estimators"
        with pytest.raises(ValueError, match=f"'{key}' parameter must be a positive int. Got -1"):
            make(name, **{key: -1}).fit(small[0])


def test_registry_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown ranker 'xgb'; expected one of dcnv2, deepfm"):
        get_ranker("xgb")


def test_load_refuses_unknown_params(small, tmp_path) -> None:
    import json

    make("lr").fit(small[0]).save(tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text())
    raw["params"]["learning_rat"] = 0.1
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="bad params for 'lr'"):
        Ranker.load(tmp_path)


@pytest.fixture(scope="module")
def planted() -> tuple[RankingData, RankingData, RankingData, np.ndarray]:
    train, _ = interaction_data(20000, seed=1)
    valid, _ = interaction_data(5000, seed=2)
    test, p_true = interaction_data(10000, seed=3)
    return train, valid, test, p_true


@pytest.mark.slow
def test_fm_and_deepfm_beat_lr_and_approach_bayes(planted) -> None:
    """The true logit has a rank-2 user x item interaction that LR cannot express."""
    train, valid, test, p_true = planted
    bayes = logloss(test.label, p_true)
    scores = {}
    for name in ("lr", "fm", "deepfm"):
        model = get_ranker(name)(SPECS, epochs=20, batch_size=256, learning_rate=0.01)
        p = model.fit(train, valid).predict_proba(test.columns)
        scores[name] = (logloss(test.label, p), auc(test.label, p))
    for name in ("fm", "deepfm"):
        assert scores[name][0] < scores["lr"][0] - 0.10, scores  # logloss margin 0.10
        assert scores[name][1] > scores["lr"][1] + 0.15, scores  # AUC margin 0.15
        assert scores[name][0] - bayes < 0.04, (scores, bayes)  # gap to Bayes logloss


def test_negative_downsampling_is_undone_at_prediction(planted) -> None:
    train, valid, test, _ = planted
    rng = np.random.default_rng(0)
    keep = (train.label > 0) | (rng.random(len(train)) < 0.25)
    sampled = train.take(np.flatnonzero(keep))
    sampled.negative_rate = 0.25
    model = get_ranker("fm")(SPECS, epochs=8, batch_size=256, learning_rate=0.01)
    p = model.fit(sampled).predict_proba(test.columns)
    assert abs(p.mean() - test.label.mean()) < 0.02
    assert model.negative_rate_ == 0.25
    raw = model._raw_proba(model.features_.transform(test.columns))
    assert raw.mean() > test.label.mean() + 0.1  # without the correction it is far off


def test_position_fixed_at_serving(planted) -> None:
    """Position lowers the true logit by 0.08 per slot; scoring at a fixed slot removes it."""
    train, valid, test, _ = planted
    model = get_ranker("lr")(SPECS, epochs=5, batch_size=256, learning_rate=0.01).fit(train)
    top = model.predict_proba(test.columns, at_position=1)
    low = model.predict_proba(test.columns, at_position=10)
    assert np.all(top > low)
    assert model.predict_proba(test.columns).mean() < top.mean()
