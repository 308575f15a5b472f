"""The next-item protocol (issue 17): hand-computed HR/MRR, the new-to-session filter, the
clustered interval, the split rule, the CLI on a session-rec file pair, and the funnel against
popularity on the real DIGINETICA sample."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from funnel.cli import app
from funnel.data.paths import shared_data_dir
from funnel.evaluate.metrics import clustered_mean_ci
from funnel.evaluate.next_item import (
    ListRecommender,
    PopularityRecommender,
    Session,
    click_state,
    evaluate_next_item,
    filter_test,
    next_item_cases,
    split_by_start,
)

# popularity on TRAIN counts a:1 b:2 c:3 d:1, so its list is [c, b, a, d] (ties by id)
TRAIN = [Session("r1", None, 0, ("a", "b", "c")), Session("r2", None, 1, ("b", "c")),
         Session("r3", None, 2, ("c", "d"))]
TEST = [Session("t1", "u1", 10, ("a", "b", "c")), Session("t2", "u2", 11, ("b", "b", "d"))]


def _pop() -> PopularityRecommender:
    return PopularityRecommender().fit(TRAIN)


def test_popularity_list_is_counts_then_ids() -> None:
    assert _pop().recommend(["x"], 10) == ["c", "b", "a", "d"]


def test_hr_mrr_equal_hand_computed_values_at_20() -> None:
    # cases (prefix -> target; rank of the target in [c, b, a, d]):
    #   t1: [a] -> b: rank 2 (rr 1/2); [a, b] -> c: rank 1 (rr 1)
    #   t2: [b] -> b: rank 2 (rr 1/2), a repeat; [b, b] -> d: rank 4 (rr 1/4)
    # HR@20 = 4/4 = 1; MRR@20 = (1/2 + 1 + 1/2 + 1/4) / 4 = 0.5625
    # new-to-session cases: the three whose target is not in the prefix, each scored on the
    # list without the prefix's items: [a]->b on [c, b, d] rank 2; [a, b]->c on [c, d] rank 1;
    # [b, b]->d on [c, a, d] rank 3. HR = 1; MRR = (1/2 + 1 + 1/3) / 3 = 11/18
    res = evaluate_next_item([_pop()], TEST, k=20)
    s = res.methods["pop"].summary
    assert (res.cases, res.cases_new, res.sessions) == (4, 3, 2)
    assert s["hr@"].mean == pytest.approx(1.0)
    assert s["mrr@"].mean == pytest.approx(0.5625)
    assert s["hr@_new"].mean == pytest.approx(1.0)
    assert s["mrr@_new"].mean == pytest.approx(11 / 18)
    f = res.figures()
    assert f["hr20_pop"] == pytest.approx(1.0) and f["mrr20_new_pop"] == pytest.approx(11 / 18)
    assert f["cases"] == 4 and f["cases_new"] == 3


def test_hr_mrr_at_2_and_the_new_to_session_filter() -> None:
    # top 2 = [c, b]: [a]->b rank 2 (1/2); [a,b]->c rank 1 (1); [b]->b rank 2 (1/2); [b,b]->d
    # missed. HR@2 = 3/4, MRR@2 = 2/4.
    # new cases, lists without the prefix's items, asked for k + |set(prefix)| = 3 items:
    # [a]->b: [c, b] (from [c, b, a]) rank 2; [a,b]->c: [c] (from [c, b, a, d][:4]) rank 1;
    # [b,b]->d: [c, a] (from [c, b, a]) missed. HR = 2/3, MRR = (1/2 + 1) / 3 = 1/2
    # re-shown: top 2 [c, b] holds a session item in [a,b], [b] and [b,b]: 3 of 4 lists
    res = evaluate_next_item([_pop()], TEST, k=2)
    m = res.methods["pop"]
    assert m.summary["hr@"].mean == pytest.approx(0.75)
    assert m.summary["mrr@"].mean == pytest.approx(0.5)
    assert m.summary["hr@_new"].mean == pytest.approx(2 / 3)
    assert m.summary["mrr@_new"].mean == pytest.approx(0.5)
    assert m.reshow == pytest.approx(0.75)
    assert res.figures()["hr2_new_pop"] == pytest.approx(2 / 3)


def test_interval_is_clustered_by_session() -> None:
    # MRR@20 per case: t1 [1/2, 1], t2 [1/2, 1/4]; mean 0.5625. Deviations summed per session:
    # t1: -0.0625 + 0.4375 = 0.375; t2: -0.0625 - 0.3125 = -0.375. With G = 2 sessions,
    # se^2 = G/(G-1) * (0.375^2 + 0.375^2) / n^2 = 2 * 0.28125 / 16 = 0.03515625, se = 0.1875,
    # half-width = 1.96 * 0.1875 = 0.3675
    res = evaluate_next_item([_pop()], TEST, k=20)
    assert res.methods["pop"].summary["mrr@"].ci95 == pytest.approx(0.3675)
    assert clustered_mean_ci([0.5, 1.0, 0.5, 0.25], ["t1", "t1", "t2", "t2"]) == \
        pytest.approx((0.5625, 0.3675))


class _Recorder:
    """Returns a fixed list; records what it was asked."""

    name = "rec"

    def __init__(self, shown: Sequence[str]) -> None:
        self.shown = list(shown)
        self.asked: list[tuple[str | None, tuple[str, ...], int]] = []

    def recommend_for(self, user_id: str | None, prefix: Sequence[str], k: int) -> list[str]:
        self.asked.append((user_id, tuple(prefix), k))
        return self.shown[:k]

    def recommend(self, prefix: Sequence[str], k: int) -> list[str]:
        return self.recommend_for(None, prefix, k)


def test_every_position_is_asked_with_its_prefix_user_and_a_deep_enough_k() -> None:
    rec = _Recorder(["d"])
    evaluate_next_item([rec], TEST, k=20)
    assert rec.asked == [("u1", ("a",), 21), ("u1", ("a", "b"), 22),
                         ("u2", ("b",), 21), ("u2", ("b", "b"), 21)]


def test_a_list_that_never_reshows_is_not_penalized_on_new_cases() -> None:
    # the same list as popularity but with the prefix's items removed: identical new-case scores
    pop = _pop()
    prefixes = [["a"], ["a", "b"], ["b"], ["b", "b"]]
    lists = [[i for i in pop.recommend(p, 20) if i not in p] for p in prefixes]
    excl = ListRecommender.from_lists("excl", prefixes, lists)
    res = evaluate_next_item([pop, excl], TEST, k=20)
    assert res.methods["excl"].reshow == 0.0
    for metric in ("hr@_new", "mrr@_new"):
        assert res.methods["excl"].summary[metric].mean == \
            pytest.approx(res.methods["pop"].summary[metric].mean)
    # on all cases the repeat [b] -> b is lost: MRR (1/2 + 1 + 0 + 1/3) / 4
    assert res.methods["excl"].summary["mrr@"].mean == pytest.approx((0.5 + 1 + 1 / 3) / 4)


def test_sampled_cases_are_a_seeded_subset() -> None:
    sessions = [Session(f"s{j}", None, j, tuple("abcdef")) for j in range(10)]
    every = next_item_cases(sessions)
    assert len(every) == 50
    some = next_item_cases(sessions, max_cases=7, seed=3)
    assert len(some) == 7 and set(some) <= set(every)
    assert some == next_item_cases(sessions, max_cases=7, seed=3)


def test_errors_name_the_fix() -> None:
    with pytest.raises(ValueError, match="distinct names"):
        evaluate_next_item([_pop(), _pop()], TEST)
    with pytest.raises(ValueError, match="at least 2 clicks"):
        evaluate_next_item([_pop()], [Session("x", None, 0, ("a",))])
    with pytest.raises(ValueError, match="k: expected an int >= 1"):
        evaluate_next_item([_pop()], TEST, k=0)


def test_split_rule_last_fifth_of_start_times_and_ties_go_to_test() -> None:
    s = [Session(f"s{j}", None, 10 * j, ("a", "b")) for j in range(5)]  # starts 0..40
    split = split_by_start(s)  # sorted position floor(0.8 * 5) = 4 opens the test part
    assert split.cut_ms == 40
    assert [x.session_id for x in split.test] == ["s4"]
    assert [x.session_id for x in split.train] == ["s0", "s1", "s2", "s3"]
    tied = [*s[:4], Session("s5", None, 30, ("a",)), s[4]]  # s3 and s5 start at 30
    split = split_by_start(tied, 0.5)  # position floor(0.5 * 6) = 3 is a 30: both tie -> test
    assert split.cut_ms == 30
    assert [x.session_id for x in split.test] == ["s3", "s5", "s4"]


def test_unseen_items_are_dropped_then_short_sessions() -> None:
    test = [Session("a", None, 0, ("x", "p", "q")), Session("b", None, 0, ("p", "y")),
            Session("c", None, 0, ("q", "q"))]
    kept = filter_test(test, {"p", "q"})
    assert [(s.session_id, s.items) for s in kept] == [("a", ("p", "q")), ("c", ("q", "q"))]


def test_state_is_what_post_events_builds() -> None:
    from funnel.features.personalization import RecentActions

    prefix = [f"i{j}" for j in range(70)]
    state = click_state(prefix)
    actions = tuple((i, "click", 1000 * j, 0) for j, i in enumerate(prefix[-50:]))
    assert state == RecentActions(clicks=tuple(prefix[-50:]), max_len=50, actions=actions)


# -- end to end -----------------------------------------------------------------------------
def _session_rec_file(path: Path, sessions: list[list[int]], t0: int) -> None:
    lines = ["SessionId\tItemId\tTime"]
    for j, items in enumerate(sessions):
        for p, item in enumerate(items):
            lines.append(f"{j + 1 + (t0 // 1000)}\t{item}\t{t0 + 3600 * j + 30 * p}")
    path.write_text("\n".join(lines) + "\n")


def _tiny_split(tmp: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    # item i is mostly followed by i + 1 (mod 30): a pattern co-occurrence and SR learn
    def session() -> list[int]:
        i = int(rng.integers(30))
        return [(i + p) % 30 + 100 for p in range(int(rng.integers(2, 6)))]

    train, test = tmp / "train.tsv", tmp / "test.tsv"
    _session_rec_file(train, [session() for _ in range(400)], 1_500_000_000)
    _session_rec_file(test, [session() for _ in range(40)], 1_600_000_000)
    return train, test


@pytest.mark.slow
def test_cli_next_item_on_a_session_rec_file_pair(tmp_path: Path) -> None:
    train, test = _tiny_split(tmp_path)
    out = tmp_path / "figures.json"
    res = CliRunner().invoke(app, [
        "evaluate", "--protocol", "next-item", "--train", str(train), "--test", str(test),
        "--format", "yoochoose", "--json", str(out)])
    assert res.exit_code == 0, res.output
    figures = json.loads(out.read_text())
    for key in ("hr20_funnel", "mrr20_funnel", "hr20_new_funnel", "mrr20_new_funnel",
                "hr20_pop", "hr20_cooc", "hr20_sr", "hr20_vsknn", "cases", "cases_new",
                "build_s", "recommend_p99_ms"):
        assert key in figures, key
    # every test session has 1-4 next clicks, all new (items follow i -> i + 1)
    assert 40 <= figures["cases"] <= 160 and figures["cases_new"] == figures["cases"]
    # the pattern is deterministic: sequential rules find every next item first
    assert figures["mrr20_sr"] == pytest.approx(1.0)
    assert "HR@20" in res.output and "funnel" in res.output


def test_cli_next_item_flags_go_together(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["evaluate", "--protocol", "next-item", "--train", "x.tsv"])
    assert res.exit_code == 1
    assert "--train and --test go together" in " ".join(res.output.split())
    res = runner.invoke(app, ["evaluate", "--train", "x.tsv", "--test", "y.tsv"])
    assert res.exit_code == 1
    assert "go with --protocol next-item" in " ".join(res.output.split())


@pytest.mark.slow
def test_cli_next_item_on_a_workspace(tmp_path: Path) -> None:
    from .conftest import small_workspace

    ws = small_workspace(tmp_path / "ws", events=12_000, seed=5)
    out = tmp_path / "figures.json"
    res = CliRunner().invoke(app, ["evaluate", "-w", str(ws.root), "--protocol", "next-item",
                                   "--max-cases", "300", "--json", str(out)])
    assert res.exit_code == 0, res.output
    f = json.loads(out.read_text())
    # 12k synthetic events hold ~80 next-click cases in the latest fifth of sessions
    assert 30 <= f["cases"] <= 300 and 0 < f["cases_new"] <= f["cases"]
    # the held-out sessions start after every training event
    assert (ws.root / "evaluation" / "next-item" / "train" / "funnel.toml").exists()
    assert f["test_sessions"] > 0 and f["train_sessions"] > 4 * f["test_sessions"] * 0.8
    for method in ("funnel", "pop", "cooc", "sr", "vsknn", "recall_merged"):
        assert 0.0 <= f[f"hr20_new_{method}"] <= 1.0
        assert f[f"mrr20_new_{method}"] <= f[f"hr20_new_{method}"]


DIGINETICA = "diginetica-sample-srgnn/sample_train-item-views.csv"


def _replayed_shared_log(tmp_path: Path, relative: str, loader: str, **run_kw: object
                        ) -> dict[str, float]:
    """Figures of the served funnel on a shared real log: ingest, split by start time, build,
    replay (skips, saying where it looked, when ``../shared/data`` lacks the log)."""
    from funnel.evaluate.next_item_run import (
        build_split,
        ingest_sessionized,
        run_next_item,
        workspace_split,
    )

    path = shared_data_dir() / relative
    if not path.exists():
        pytest.skip(f"{relative} not found at {path} (../shared/data is not here)")
    ws = ingest_sessionized(path, loader, tmp_path / "all")
    split = workspace_split(ws, tmp_path)
    artifact, _, _ = build_split(split)
    return run_next_item(split, artifact, sources=False, **run_kw).figures


@pytest.mark.slow
def test_funnel_beats_popularity_on_the_diginetica_sample(tmp_path: Path) -> None:
    f = _replayed_shared_log(tmp_path, DIGINETICA, "diginetica")
    # measured at the commit of this test: 520 cases (343 new) in 193 test sessions; on new
    # cases (what the funnel is judged on) HR@20 0.338 +- 0.059 vs popularity 0.026 +- 0.019,
    # MRR@20 0.127 +- 0.032 vs 0.003 +- 0.003. The margins asserted are half of those gaps.
    assert f["cases"] >= 400 and f["judged_on_new"] == 1.0
    assert f["hr20_new_funnel"] - f["hr20_new_pop"] >= 0.15
    assert f["mrr20_new_funnel"] - f["mrr20_new_pop"] >= 0.06
    assert f["hr20_funnel"] > f["hr20_pop"] and f["mrr20_funnel"] > f["mrr20_pop"]
    assert not math.isnan(f["hr20_new_funnel_ci95"])


class _StateRecorder:
    """Stands in for the served funnel: records what the online state would hold."""

    max_actions = 50

    def __init__(self) -> None:
        self.asked: list[tuple[str | None, list[str], int | None]] = []

    def recommend_for(self, user_id, prefix, k):
        return self._answer(user_id, list(prefix), None, k)

    def recommend_state(self, user_id, state, k, *, now_ms=None):
        return self._answer(user_id, list(state.clicks), now_ms, k)

    def _answer(self, user_id, clicks, now_ms, k):
        self.asked.append((user_id, clicks, now_ms))
        order = ("b", "c", "d") if "x" in clicks else ("c", "d", "b")  # history changes the list
        return [p for p in order if p not in clicks][:k]


def test_returning_user_replays_earlier_sessions_and_the_gain_is_paired() -> None:
    from funnel.evaluate.next_item import (
        AnonymousFunnel,
        ReturningUserFunnel,
        Session,
        evaluate_next_item,
    )

    past = Session("s1", "u1", 1_000, ("x", "y"))
    later = Session("s3", "u1", 9_000, ("z",))
    test = [Session("s2", "u1", 5_000, ("a", "b", "c")), Session("s4", None, 6_000, ("a", "d"))]
    recorder = _StateRecorder()
    personal = ReturningUserFunnel.of(recorder, [past, later, *test])
    assert personal.earlier_clicks(test[0]) == ["x", "y"]  # not s3: it started later
    assert personal.earlier_clicks(test[1]) == []  # an anonymous session has no history
    personal.recommend_in(test[0], ["a"], 5)
    assert recorder.asked[-1] == ("u1", ["x", "y", "a"], 6_000)  # asked a second after "a"
    state, _ = personal.state_at(test[0], ["a"])
    assert [ts for _i, _k, ts, _l in state.actions] == [1_000, 2_000, 5_000]  # real times
    AnonymousFunnel(recorder).recommend(["a"], 5)
    assert recorder.asked[-1] == (None, ["a"], None)
    result = evaluate_next_item([AnonymousFunnel(recorder), personal], test, k=1)
    gain = result.paired_gain("funnel_personal", "funnel_anonymous")
    hit = result.methods["funnel_personal"].hit_new - result.methods["funnel_anonymous"].hit_new
    assert gain.mean == pytest.approx(hit.mean()) == pytest.approx(1 / 3)  # s2's first case
    assert result.figures()["gain_personal_hr1_new"] == pytest.approx(hit.mean())


@pytest.mark.slow
def test_generative_recall_is_measured_paired_in_the_next_item_protocol(tmp_path: Path) -> None:
    from funnel.evaluate.next_item_run import (
        WITHOUT_GENERATIVE,
        build_split,
        build_stages,
        file_split,
        run_next_item,
    )

    train, test = _tiny_split(tmp_path)
    split = file_split(train, test, "yoochoose", tmp_path / "split")
    with split.train_ws.config_path.open("a") as f:  # a small, quick generator
        f.write("\n[generative]\nepochs = 1\nhidden = 32\ndim = 16\nsvd_dim = 8\n")
    artifact, _, _ = build_split(split, (*build_stages(split.train_ws)[0], "generative"))
    run = run_next_item(split, artifact, sources=True)
    f = run.figures
    assert WITHOUT_GENERATIVE in run.result.methods and "recall:generative" in run.result.methods
    # the gain is the paired difference of the two funnels on the same cases
    assert f["gain_generative_hr20_new"] == pytest.approx(
        f["hr20_new_funnel"] - f[f"hr20_new_{WITHOUT_GENERATIVE}"], abs=1e-12)
    assert f["gain_generative_mrr20_new_ci95"] >= 0.0


TAOBAO = "taobao-userbehavior-sample/UserBehavior_head.csv"


@pytest.mark.slow
def test_a_returning_users_history_beats_the_anonymous_funnel_on_taobao(tmp_path: Path) -> None:
    """The history recall source is what personalization adds on a real log: measured at its
    commit on every case, HR@20 of new items 0.244 for the returning user vs 0.176 anonymous
    (+0.068 +- 0.018, MRR +0.019 +- 0.008, paired, clustered by user); 0.000 without it."""
    f = _replayed_shared_log(tmp_path, TAOBAO, "taobao", max_cases=1200, seed=0)
    gain, ci = f["gain_personal_hr20_new"], f["gain_personal_hr20_new_ci95"]
    assert gain - ci > 0 and gain >= 0.034, (gain, ci)  # half the gain measured on all cases
    assert f["gain_personal_mrr20_new"] > 0
