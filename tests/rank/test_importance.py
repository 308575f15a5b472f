"""Permutation importance and feature selection (issue 25) on planted signal and noise."""

from __future__ import annotations

import json

import numpy as np
import pytest

from funnel.exceptions import NotFittedError
from funnel.rank import Ranker, RankingData, get_ranker
from funnel.rank.importance import model_importance, permutation_importance, select_features

TRUE = ("x_strong", "x_mid", "x_weak", "cat")
NOISE = ("noise_a", "noise_b", "noise_c", "noise_cat")
SPECS = [{"type": "numeric", "name": n}
         for n in ("x_strong", "x_mid", "x_weak", "noise_a", "noise_b", "noise_c")]
SPECS += [{"type": "vocab", "name": "cat"}, {"type": "vocab", "name": "noise_cat"}]
FAST = {"gbdt": {}, "rf": {"n_estimators": 60},
        "lr": {"epochs": 5, "learning_rate": 0.02, "batch_size": 256}}


def planted(n: int, seed: int) -> RankingData:
    """Logit = three numeric effects (1.2, 0.6, 0.4) + a category's effect; four columns (three
    numeric, one categorical) drawn independently of everything: pure noise."""
    r = np.random.default_rng(seed)
    effect = np.random.default_rng(7).normal(scale=0.8, size=8)
    c = r.integers(0, 8, n)
    cols: dict[str, np.ndarray] = {k: r.normal(size=n) for k in
                                   ("x_strong", "x_mid", "x_weak", "noise_a", "noise_b", "noise_c")}
    cols["cat"] = np.array([f"c{i}" for i in c], dtype=object)
    cols["noise_cat"] = np.array([f"z{i}" for i in r.integers(0, 8, n)], dtype=object)
    logit = -0.5 + 1.2 * cols["x_strong"] + 0.6 * cols["x_mid"] + 0.4 * cols["x_weak"] + effect[c]
    y = (r.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return RankingData(cols, y)


@pytest.fixture(scope="module")
def data() -> tuple[RankingData, RankingData, RankingData]:
    return planted(8000, 1), planted(6000, 2), planted(6000, 3)


@pytest.fixture(scope="module")
def gbdt(data) -> Ranker:
    return get_ranker("gbdt")(SPECS).fit(data[0], data[1])


@pytest.mark.parametrize("name", ["gbdt", "rf", "lr"])
def test_every_true_feature_ranks_above_every_noise_feature(data, name) -> None:
    train, valid, test = data
    model = get_ranker(name)(SPECS, **FAST[name]).fit(train, valid)
    report = permutation_importance(model, test, repeats=5, seed=0)
    order = [f.name for f in report.features]
    assert max(order.index(t) for t in TRUE) < min(order.index(n) for n in NOISE), order
    assert report.rows == len(test) and report.repeats == 5
    strong = report.features[0]
    assert strong.low > 0 and strong.low <= strong.auc_drop <= strong.high


@pytest.fixture(scope="module")
def chosen(data, gbdt):
    train, valid, test = data
    return select_features(gbdt, train, valid, test, repeats=8, seed=0)


def test_selection_drops_exactly_the_noise_without_losing_002_auc(chosen) -> None:
    """Decided on the validation slice, measured on the test slice. Measured over six seeds
    (GBDT and LR): the four noise specs and only they were dropped every time; AUC change
    -0.0018 to +0.0021."""
    assert {d["name"] for d in chosen.dropped} == set(NOISE)
    assert set(chosen.kept) == set(TRUE)
    assert chosen.auc_after >= chosen.auc_before - 0.002, (chosen.auc_before, chosen.auc_after)
    assert chosen.model.features_.field_names == [s["name"] for s in SPECS
                                                  if s["name"] in TRUE]
    assert chosen.score_500_ms_before > 0 and chosen.score_500_ms_after > 0


def test_guard_keeps_real_features_a_small_validation_slice_cannot_vouch_for(data, gbdt) -> None:
    """400 validation rows: the intervals of ``cat`` and ``x_weak`` include 0 too. Measured:
    without the guard (tolerance 1) both go with the noise and test AUC falls .8094 -> .7762;
    with it (0.002) the refit that drops them is refused and AUC holds."""
    train, _, test = data
    small = planted(400, 2)
    model = get_ranker("gbdt")(SPECS).fit(train, small)
    loose = select_features(model, train, small, test, repeats=5, tolerance=1.0)
    assert {"cat", "x_weak"} <= {d["name"] for d in loose.dropped}
    guarded = select_features(model, train, small, test, repeats=5)
    kept_by_guard = {g["name"] for g in guarded.model.selection_["kept_by_guard"]}
    assert {"cat", "x_weak"} <= kept_by_guard and set(TRUE) <= set(guarded.kept)
    assert guarded.auc_after >= guarded.auc_before - 0.002
    with pytest.raises(ValueError, match="'tolerance' parameter must be a float >= 0"):
        select_features(model, train, small, test, tolerance=-0.1)


def test_selected_model_saves_what_it_dropped_and_why(data, chosen, tmp_path) -> None:
    test = data[2]
    chosen.model.save(tmp_path / "m")
    state = json.loads((tmp_path / "m" / "config.json").read_text())["state"]
    dropped = {d["name"]: d for d in state["selection"]["dropped"]}
    assert set(dropped) == set(NOISE)
    assert "includes 0" in dropped["noise_a"]["reason"]
    assert dropped["noise_a"]["spec"] == {"type": "numeric", "name": "noise_a", "column": "",
                                          "log1p": False, "standardize": True}
    again = Ranker.load(tmp_path / "m")
    assert again.selection_ == state["selection"]
    assert again.features_.field_names == chosen.model.features_.field_names
    np.testing.assert_array_equal(again.predict_proba(test.columns),
                                  chosen.model.predict_proba(test.columns))


def test_a_model_saved_without_selection_loads_as_before(data, gbdt, tmp_path) -> None:
    gbdt.save(tmp_path / "m")
    raw = json.loads((tmp_path / "m" / "config.json").read_text())
    assert "selection" not in raw["state"]
    assert not hasattr(Ranker.load(tmp_path / "m"), "selection_")


def test_model_importance_split_gain_and_weight_norms(data, gbdt) -> None:
    kind, gain = model_importance(gbdt)
    assert kind == "split_gain" and set(gain) == {s["name"] for s in SPECS}
    assert sum(gain.values()) == pytest.approx(1.0)
    assert gain["x_strong"] == max(gain.values())
    lr = get_ranker("lr")(SPECS, **FAST["lr"]).fit(data[0])
    kind, norms = model_importance(lr)
    assert kind == "weight_norm" and set(norms) == {s["name"] for s in SPECS}
    assert norms["x_strong"] > norms["noise_a"]


def test_shared_source_columns_are_named() -> None:
    specs = [{"type": "numeric", "name": "price"},
             {"type": "bucket", "name": "price_bucket", "column": "price", "n_buckets": 4},
             {"type": "numeric", "name": "other"}]
    r = np.random.default_rng(0)
    d = RankingData({"price": r.normal(size=600), "other": r.normal(size=600)},
                    (r.random(600) < 0.3).astype(np.float32))
    model = get_ranker("gbdt")(specs, n_estimators=5).fit(d)
    report = permutation_importance(model, d, repeats=2)
    by = {f.name: f for f in report.features}
    assert by["price"].shared_with == ("price_bucket",) and by["other"].shared_with == ()
    assert by["price_bucket"].columns == ("price",)


@pytest.mark.parametrize("name", ["gbdt", "rf", "lr"])
def test_shuffling_the_encoding_equals_rescoring_shuffled_raw_columns(name) -> None:
    """The fast path (encoded columns shuffled, partial readers such as a cross re-encoded)
    gives exactly the numbers of the definition (raw columns shuffled, everything re-encoded)."""
    from ._data import interaction_data

    specs = [{"type": "vocab", "name": "user_group"}, {"type": "vocab", "name": "item_group"},
             {"type": "cross", "name": "ug_x_ig", "columns": ["user_group", "item_group"],
              "bits": 8},
             {"type": "numeric", "name": "x"},
             {"type": "bucket", "name": "x_bucket", "column": "x", "n_buckets": 4},
             {"type": "bucket", "name": "position", "n_buckets": 5}]
    train, valid = interaction_data(2000, seed=1)[0], interaction_data(800, seed=2)[0]
    model = get_ranker(name)(specs, **FAST[name]).fit(train, valid)
    fast = permutation_importance(model, valid, repeats=2, seed=3)
    slow = permutation_importance(model, valid, repeats=2, seed=3, reuse_encoding=False)
    assert fast == slow


def test_bad_arguments_raise_named_errors(data, gbdt) -> None:
    test = data[2]
    with pytest.raises(ValueError, match="'repeats' parameter must be an int >= 2"):
        permutation_importance(gbdt, test, repeats=1)
    with pytest.raises(ValueError, match="'max_rows' parameter must be a positive int or None"):
        permutation_importance(gbdt, test, max_rows=0)
    with pytest.raises(ValueError, match="'seed' parameter must be a non-negative int"):
        permutation_importance(gbdt, test, seed=-1)
    with pytest.raises(NotFittedError):
        permutation_importance(get_ranker("gbdt")(SPECS), test)
    one_class = test.take(np.flatnonzero(test.label == 0))
    with pytest.raises(ValueError, match="AUC needs both classes"):
        permutation_importance(gbdt, one_class)


def test_build_summary_shows_top_features_and_details_rows(data, gbdt) -> None:
    from funnel.cli.build_summary import headline, importance_rows, is_importance

    report = permutation_importance(gbdt, data[2], repeats=3, max_rows=2000)
    metrics = {"gbdt.auc": report.base_auc, **report.metrics("gbdt", k=3),
               "importance.top": "x_strong, cat, x_mid"}
    assert headline("rank", metrics).endswith("; top features x_strong, cat, x_mid")
    rows = importance_rows(metrics)
    assert [r[1] for r in rows] == [f.name for f in report.top(3)]
    assert all(r[0] == "gbdt" and r[3] >= 0 for r in rows)
    assert is_importance("gbdt.importance.x_mid.ci95") and not is_importance("importance.top")


def test_importance_bar_chart_is_a_png(data, gbdt) -> None:
    from funnel.evaluate.plots import importance_bars

    report = permutation_importance(gbdt, data[2], repeats=2, max_rows=1000)
    png = importance_bars(report.to_dict()["features"], title="gbdt")  # type: ignore[arg-type]
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_train_select_json_reports_forest_importance_and_selection(tmp_path) -> None:
    """``funnel train --models gbdt,rf --select --json`` end to end on 8k synthetic events."""
    from typer.testing import CliRunner

    from funnel.cli import app

    from ._data import impressions_workspace

    ws = impressions_workspace(tmp_path / "ws")
    result = CliRunner().invoke(app, ["train", "-w", str(ws.root), "--models", "gbdt,rf",
                                      "--select", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert 0.5 < payload["rank.rf.oob_auc"] < 1
    for name in ("gbdt", "rf"):
        m = f"rank.{name}"
        assert payload[f"{m}.select.kept"] + payload[f"{m}.select.dropped"] > 0
        assert payload[f"{m}.select.auc_after"] == pytest.approx(payload[f"{m}.auc"])
        rows = payload["rank.importance"][name]
        assert rows and {"name", "auc_drop", "low", "high", "model"} <= set(rows[0])
    assert payload["rank.importance.top"]
    rank = ws.artifacts.require_current() / "rank"
    assert set(json.loads((rank / "importance.json").read_text())["models"]) == {"gbdt", "rf"}
    state = json.loads((rank / "models" / "rf" / "config.json").read_text())["state"]
    assert "oob_auc" in state
