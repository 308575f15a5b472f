"""The evaluation of a small synthetic marketplace: numbers re-derived by hand from the
per-case lists in report.json, the HTML agrees with the JSON, it renders in Chromium, the
training copy holds only the past, and a second run with the same seed gives the same figures."""

from __future__ import annotations

import json
import math
import re
import shutil

import numpy as np
import pytest

from funnel.evaluate.cases import KINDS
from funnel.evaluate.replay import VARIANTS

from .conftest import EVAL, Evaluated

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
PLOTS = ("plot-quality", "plot-importance", "plot-calibration", "plot-tradeoff", "plot-latency",
         "plot-embeddings")


def _report(evaluated: Evaluated) -> dict:
    return json.loads((evaluated.out / "report.json").read_text())


def _hand_ndcg(shown: list[str], targets: list[str], k: int) -> tuple[float, float]:
    """NDCG@k with binary gains and reciprocal rank, written out longhand."""
    dcg = sum(1 / math.log2(r + 2) for r, item in enumerate(shown[:k]) if item in targets)
    idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(set(targets)))))
    first = [r for r, item in enumerate(shown[:k]) if item in targets]
    return dcg / idcg, (1 / (first[0] + 1) if first else 0.0)


def test_report_figures_equal_hand_computed_metrics(evaluated: Evaluated) -> None:
    report = _report(evaluated)
    figures, cases = report["figures"], report["cases"]
    k = EVAL.k
    assert cases, "the JSON keeps every evaluated case"
    for variant in VARIANTS:
        for kind in KINDS:
            rows = [c for c in cases if c["kind"] == kind]
            if not rows:
                assert f"{variant}.{kind}.ndcg@{k}" not in figures
                continue
            hand = np.array([_hand_ndcg(c[variant], c["targets"], k) for c in rows])
            assert figures[f"{variant}.{kind}.n"] == len(rows)
            assert figures[f"{variant}.{kind}.ndcg@{k}"] == pytest.approx(hand[:, 0].mean())
            assert figures[f"{variant}.{kind}.mrr@{k}"] == pytest.approx(hand[:, 1].mean())
            hit = np.mean([any(i in c["targets"] for i in c[variant][:k]) for c in rows])
            assert figures[f"{variant}.{kind}.hit@{k}"] == pytest.approx(hit)
    for kind in KINDS:
        rows = [c for c in cases if c["kind"] == kind]
        if rows:
            diff = [(_hand_ndcg(c["funnel"], c["targets"], k)[0]
                     - _hand_ndcg(c["popularity"], c["targets"], k)[0]) for c in rows]
            assert figures[f"gain.funnel_vs_popularity.{kind}.ndcg@{k}"] == pytest.approx(
                float(np.mean(diff)))
    for variant in VARIANTS:
        shown = {i for c in cases for i in c[variant]}
        assert figures[f"{variant}.catalog_coverage"] == pytest.approx(
            len(shown) / figures["catalog.items"])


def test_cases_are_held_out_and_lists_have_k_items(evaluated: Evaluated) -> None:
    report = _report(evaluated)
    figures = report["figures"]
    assert figures["evaluated.search_cases"] == min(EVAL.max_cases,
                                                    figures["held_out.search_cases"])
    assert figures["held_out.search_cases"] > 20 and figures["held_out.booking_cases"] > 3
    full = 0
    for case in report["cases"]:
        assert case["ts_ms"] >= evaluated.split_ms
        assert len(set(case["funnel"])) == len(case["funnel"]) <= EVAL.k
        full += len(case["funnel"]) == EVAL.k
    assert full >= 0.8 * len(report["cases"])  # only markets with < k items give shorter lists


def test_ranker_is_measured_against_bayes(evaluated: Evaluated) -> None:
    f = _report(evaluated)["figures"]
    # a trained ranker beats chance clearly, and the true p_click beats the ranker
    assert 0.62 < f["rank.auc"] < f["bayes.auc"]
    assert f["bayes.logloss"] < f["rank.logloss"] < 0.45
    assert f["gap.auc"] == pytest.approx(f["bayes.auc"] - f["rank.auc"])
    assert f["gap.logloss"] == pytest.approx(f["rank.logloss"] - f["bayes.logloss"])
    assert 0.0 <= f["rank.ece"] < 0.1
    assert f["rank.impressions"] > 500


def test_stage_figures_are_present(evaluated: Evaluated) -> None:
    f = _report(evaluated)["figures"]
    for source in ("merged", "popularity", "lexical", "covisit", "query_items", "vector"):
        assert 0.0 <= f[f"recall.{source}.click.recall@10"] <= f[
            f"recall.{source}.click.recall@500"] <= 1.0
    # every candidate a source returns can reach the merged list (quotas <= 300 < 500)
    assert f["recall.merged.click.recall@500"] >= f["recall.popularity.click.recall@100"] - 1e-9
    assert 0.0 < f["suggest.mrr"] <= 1.0 and f["suggest.prefixes"] > 100
    for stage in ("recall", "rank", "rerank", "total"):
        assert f[f"latency.{stage}.p50_ms"] <= f[f"latency.{stage}.p95_ms"]
    assert f["latency.total.p50_ms"] >= f["latency.rank.p50_ms"]
    assert 0.0 < f["funnel.ild@10"] <= 2.0 and 0.0 < f["funnel.catalog_coverage"] <= 1.0
    assert 0.0 <= f["embed.category_cohesion@10"] <= 1.0
    assert -1.0 <= f["embed.mean_random_cosine"] <= 1.0
    assert 0.0 <= f["no_rerank.tied_adjacent_scores@10"] <= 1.0
    assert "popularity.tied_adjacent_scores@10" not in f  # popularity has no ranker scores
    assert f["curve.dpp.0.ndcg"] == pytest.approx(1.0)  # knob 0 keeps the ranker's order
    assert _report(evaluated)["not_applicable"] == {
        "next-click NDCG/MRR": "every held-out click belongs to a logged request"}


def test_html_shows_the_json_figures(evaluated: Evaluated) -> None:
    html = (evaluated.out / "report.html").read_text()
    figures = _report(evaluated)["figures"]
    shown = re.findall(r'data-figure="([^"]+)">([^<±]+)', html)
    assert len(shown) >= 8
    for key, text in shown:
        assert float(text.strip()) == pytest.approx(figures[key], abs=5e-5), key
    assert "http://" not in html and "https://" not in html  # self-contained
    assert html.count("data:image/png;base64,") == len(PLOTS)


@pytest.mark.browser
@pytest.mark.slow
def test_report_renders_in_chromium(evaluated: Evaluated, tmp_path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium not installed (make system installs it from Debian packages)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto((evaluated.out / "report.html").resolve().as_uri())
            for plot in PLOTS:
                size = page.evaluate(
                    "id => { const im = document.getElementById(id);"
                    " return im && im.complete ? [im.naturalWidth, im.naturalHeight] : null; }",
                    plot)
                assert size is not None and size[0] > 200 and size[1] > 150, plot
            assert page.locator("#quality tr").count() == 1 + len(VARIANTS)
            assert page.locator("#ranker tr").count() == 4
            assert page.locator("table.neighbours").count() == 5
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            assert (tmp_path / "report.png").stat().st_size > 20_000
        finally:
            browser.close()


def test_training_copy_holds_only_the_past(evaluated: Evaluated) -> None:
    from funnel.workspace import Workspace

    train = Workspace.open(evaluated.out / "train-workspace")
    split = evaluated.split_ms
    con = train.connect(read_only=True)
    try:
        n, latest = con.execute("SELECT count(*), max(epoch_ms(ts)) FROM events").fetchall()[0]
        n_truth, orphans = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE event_id NOT IN "
            "(SELECT event_id FROM events)) FROM truth").fetchall()[0]
        n_sessions = con.execute("SELECT count(*) FROM sessions").fetchall()[0][0]
    finally:
        con.close()
    src = evaluated.ws.connect(read_only=True)
    try:
        before = src.execute("SELECT count(*) FROM events WHERE epoch_ms(ts) < ?",
                             [split]).fetchall()[0][0]
    finally:
        src.close()
    assert latest < split and n == before and n_truth == n and orphans == 0
    assert n_sessions > 0


@pytest.mark.slow
def test_same_seed_same_figures(evaluated: Evaluated) -> None:
    from funnel.evaluate.run import evaluate_artifact
    from funnel.workspace import Workspace

    artifact = Workspace.open(evaluated.out / "train-workspace").artifacts.require_current()
    again = evaluate_artifact(evaluated.ws, artifact, evaluated.split_ms, config=EVAL)
    first = evaluated.result.figures
    timing = re.compile(r"^(latency\.|seconds|curve\..*\.ms_per_list)")
    keys = {k for k in first if not timing.match(k)}
    assert keys == {k for k in again.figures if not timing.match(k)}
    for key in sorted(keys):
        a, b = first[key], again.figures[key]
        assert (math.isnan(a) and math.isnan(b)) or a == b, key
