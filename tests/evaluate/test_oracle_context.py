"""The personalization ceiling on a marketplace with list context: each impression's own
position-and-context factor (p_click / p_attract) replaces the bare position bias."""

from __future__ import annotations

import numpy as np

from funnel.data.store import memory_store
from funnel.data.synthetic import MarketplaceConfig, generate_tables
from funnel.data.synthetic.context import EXAM_POWER, LIST_CONTEXT
from funnel.evaluate.cases import Case
from funnel.evaluate.oracle import _list_factor, has_attraction, true_attraction
from funnel.features.personalization import RecentActions


def test_the_list_factor_falls_back_to_the_position_bias_only_where_attraction_is_unknown():
    p = np.array([0.2, 0.1, 0.05])
    a = np.array([0.4, np.nan, 0.0])
    exam = np.array([1.0, 0.6, 0.4])
    assert _list_factor(p, a, exam).tolist() == [0.5, 0.6, 0.4]


def test_context_impressions_decompose_exactly_into_factor_times_attraction():
    tables = generate_tables(MarketplaceConfig(n_events=4000, seed=3, **LIST_CONTEXT))
    con = memory_store({k: tables[k] for k in ("events", "truth")})
    assert has_attraction(con)
    rows = con.execute("""
        SELECT e.request_id, e.position, e.item_id, t.p_click FROM events e
        JOIN truth t USING (event_id) WHERE e.event_type = 'impression' ORDER BY 1, 2
    """).fetchall()
    by_request: dict[str, list[tuple[str, int, float]]] = {}
    for request, position, item, p in rows:
        by_request.setdefault(request, []).append((item, position, p))
    requests = [Case("search", "u", 0, "", None, RecentActions(), (), request_id=r,
                     impressions=tuple(imps)) for r, imps in list(by_request.items())[:50]]
    attract = true_attraction(con, [str(c.request_id) for c in requests])
    p = np.array([t for c in requests for _, _, t in c.impressions])
    a = np.array([attract[str(c.request_id)][i] for c in requests for i, _, _ in c.impressions])
    pos = np.array([q for c in requests for _, q, _ in c.impressions], dtype=np.float64)
    factor = _list_factor(p, a, pos ** -EXAM_POWER)
    np.testing.assert_allclose(factor * a, p, rtol=1e-12)
    # the context makes the factor differ from the bare position bias somewhere, never above it
    assert (factor <= pos ** -EXAM_POWER * (1 + 1e-12)).all()
    assert (factor < pos ** -EXAM_POWER * (1 - 1e-6)).any()
