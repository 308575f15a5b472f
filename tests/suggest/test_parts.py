"""Related, hint and refinement building blocks on hand-checkable inputs, and the CLI."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from funnel.data.schema import ITEM_SCHEMA
from funnel.suggest.hints import pick_hints
from funnel.suggest.refine import Catalog, refinements
from funnel.suggest.related import cooccurrence, merge_related, token_neighbours
from funnel.workspace import Workspace

from .conftest import T0, StoreBuilder, shop


def test_cooccurrence_weights_forward_backward_by_distance() -> None:
    nb = cooccurrence([[0, 1, 2], [0, 1]], window=2)
    # 0->1 twice at d=1 (2.0), 0->2 once at d=2 (0.5): scaled by the max
    assert nb[0] == {1: 1.0, 2: 0.25}
    # 1: forward to 2 (1.0), backward from 0 twice (0.5 + 0.5)
    assert nb[1] == {2: 1.0, 0: 1.0}


def test_token_neighbours_refine_and_generalise() -> None:
    queries = ["shoes", "nike shoes", "red nike shoes", "adidas shoes", "shoes nike", "boots"]
    score = np.array([10.0, 8.0, 2.0, 4.0, 1.0, 3.0])
    nb = token_neighbours(queries, score)
    assert nb[0] == {1: 1.0, 3: 0.5, 4: 1 / 8}  # supersets by one token, scaled by best
    assert nb[1] == {2: 1.0, 0: 0.5}  # "red nike shoes" refines; "shoes" generalises
    assert 5 not in nb


def test_merge_dedupes_against_anchor_and_each_other() -> None:
    queries = ["nike shoes", "shoes nike", "adidas shoes", "nike  shoes x"]
    cooc = {0: {1: 1.0, 2: 0.5, 3: 0.2}}
    emb = {0: {2: 1.0}}
    indptr, ids, scores = merge_related(queries, cooc, emb, embedding_weight=0.5, top=5)
    assert ids[indptr[0] : indptr[1]].tolist() == [2, 3]  # "shoes nike" re-spells the anchor
    assert scores[indptr[0]] == pytest.approx(1.0)


def test_pick_hints_round_robin_market_then_popular() -> None:
    by_cat = {"a": [0, 1], "b": [2]}
    market = ["x", "y", "y", "x", "x"]
    assert pick_hints(["a", "b"], by_cat, [4, 3], market, k=4) == [0, 2, 1, 4]
    assert pick_hints(["a"], by_cat, [4], market, market="y", k=1) == [1]
    assert pick_hints([], by_cat, [4, 3], market, exclude={4}, k=1) == [3]


def test_catalog_price_bands_and_refinement_shares() -> None:
    rows = [
        {"item_id": f"i{j}", "title": f"tent {j}", "category": "camping",
         "brand": "alpha" if j < 3 else "beta", "price": float(10 * (j + 1)),
         "market": "m", "bid": 0.0, "attributes": "{}", "created_at": T0}
        for j in range(6)
    ]
    cat = Catalog.from_items(pa.Table.from_pylist(rows, schema=ITEM_SCHEMA))
    # terciles of 10..60: cut points 26.67 and 43.33
    assert [cat.attrs[f"i{j}"]["price_band"] for j in range(6)] == \
        ["budget", "budget", "mid range", "mid range", "premium", "premium"]
    chips = refinements("tent", Counter({"i0": 2}), cat, top=10)
    brand = {c["value"]: c["share"] for c in chips if c["attribute"] == "brand"}
    assert brand == {"alpha": pytest.approx(5 / 8), "beta": pytest.approx(3 / 8)}
    assert not any(c["attribute"] == "category" for c in chips)  # one value: no split
    assert refinements("unknown words", Counter(), cat) == []


def test_cli_build_and_try(store: StoreBuilder, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from funnel.cli import app

    ws = Workspace.init(tmp_path / "ws")
    shop(store)
    store.write_into(ws)
    runner = CliRunner()
    w = ["--workspace", str(ws.root)]
    res = runner.invoke(app, ["suggest", "build", *w, "--min-count", "1", "--json"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["suggest", "complete", "NOK", *w, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["completions"] == ["nokia phone"]
    res = runner.invoke(app, ["suggest", "related", "nike shoes", *w, "--json"])
    assert json.loads(res.stdout)["related"][0] == "adidas shoes"
    res = runner.invoke(app, ["suggest", "hint", *w, "--user", "phonefan", "--json"])
    assert json.loads(res.stdout)["hints"][0] == "nokia phone"
    res = runner.invoke(app, ["suggest", "complete", "x", "--workspace", str(tmp_path / "no")])
    assert res.exit_code == 1 and "not a funnel" in " ".join(res.output.split())
