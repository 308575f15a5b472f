"""POST /search's fast path: plain JSON searches answered like the route, the rest by the route."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from funnel.serve.app import create_app
from funnel.serve.routes.search import SearchFastPath
from funnel.serve.settings import Settings
from funnel.workspace import Workspace

FAST = {"Content-Type": "application/json"}
SLOW = {"Content-Type": "application/json; charset=utf-8"}  # valid JSON, not the plain case


def _fast_path(app) -> SearchFastPath:
    layer = app.middleware_stack
    while not isinstance(layer, SearchFastPath):
        layer = layer.app
    return layer


@pytest.fixture(scope="module")
def client(served_workspace):
    settings = Settings(workspace=served_workspace.root, max_k=50, max_query_chars=30)
    with TestClient(create_app(settings, flush_every_s=0)) as c:
        c.post("/search", content=b'{"query": "x"}', headers=FAST)  # builds the stack
        yield c


def _stable(body: dict) -> dict:
    return {k: v for k, v in body.items() if k not in ("request_id", "timings_ms")}


@pytest.mark.parametrize(
    "payload",
    [
        {"query": "villa", "k": 7, "debug": True},
        {"query": "", "k": 3, "user_id": "fast-path-user"},
        {"query": "loft", "filters": {"category": "nope"}, "k": 5},
    ],
)
def test_plain_json_searches_are_answered_by_the_fast_path_exactly_like_the_route(
    client, payload
):
    fast = _fast_path(client.app)
    data = json.dumps(payload).encode()
    before = fast.answered
    quick = client.post("/search", content=data, headers=FAST)
    assert fast.answered == before + 1
    routed = client.post("/search", content=data, headers=SLOW)
    assert fast.answered == before + 1
    assert quick.status_code == routed.status_code == 200, quick.text
    assert quick.headers["content-type"] == routed.headers["content-type"] == "application/json"
    assert float(quick.headers["x-funnel-time-ms"]) > 0
    assert _stable(quick.json()) == _stable(routed.json())
    assert len(quick.json()["items"]) == payload["k"] or payload.get("filters")
    assert set(quick.json()["timings_ms"]) == set(routed.json()["timings_ms"])


@pytest.mark.parametrize(
    ("content", "status", "detail"),
    [
        (b'{"query": "villa", "k": ', 422, "24: JSON decode error"),
        (b"", 422, "Field required"),
        (b"[1, 2]", 422, "Input should be a valid dictionary"),
        (b'{"query": "villa", "k": 0}', 422, "k: Input should be greater than or equal to 1"),
        (b'{"query": "villa", "k": 60}', 422, "k must be <= 50"),
        (b'{"query": "' + b"q" * 31 + b'"}', 422, "query longer than 30 characters"),
        (b'{"query": "villa", "surprise": 1}', 422, "surprise: Extra inputs are not permitted"),
        (b'{"query": "villa", "user_id": ""}', 422, "user_id: String should have at least 1"),
    ],
)
def test_bad_searches_fall_back_to_the_route_and_get_its_exact_error(
    client, content, status, detail
):
    fast = _fast_path(client.app)
    before = fast.answered
    tried = client.post("/search", content=content, headers=FAST)
    routed = client.post("/search", content=content, headers=SLOW)
    assert fast.answered == before
    assert tried.status_code == routed.status_code == status, tried.text
    assert tried.json() == routed.json()
    assert tried.json()["detail"].startswith(detail), tried.json()


def test_a_chunked_body_goes_through_the_route(client):
    fast = _fast_path(client.app)
    before = fast.answered
    r = client.post("/search", content=iter([b'{"query": ', b'"villa", "k": 4}']), headers=FAST)
    assert r.status_code == 200 and len(r.json()["items"]) == 4
    assert fast.answered == before


def _count(text: str, line_start: str) -> float:
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
               if ln.startswith(line_start))


def test_fast_path_requests_are_counted_under_the_search_route(client):
    fast = _fast_path(client.app)
    requests = 'funnel_requests_total{method="POST",route="/search",status="200"}'
    stages = 'funnel_stage_latency_ms_count{route="search",stage="total"}'
    text = client.get("/metrics").text
    n_req, n_stage, before = _count(text, requests), _count(text, stages), fast.answered
    for _ in range(3):
        assert client.post("/search", content=b'{"query": "villa"}', headers=FAST).is_success
    text = client.get("/metrics").text
    assert fast.answered == before + 3
    assert _count(text, requests) == n_req + 3
    assert _count(text, stages) == n_stage + 3


def test_without_a_model_the_fast_path_answers_the_routes_503(tmp_path):
    ws = Workspace.init(tmp_path / "empty")
    app = create_app(Settings(workspace=ws.root), load_on_start=False, flush_every_s=0)
    with TestClient(app) as c:
        quick = c.post("/search", content=b'{"query": "villa"}', headers=FAST)
        routed = c.post("/search", content=b'{"query": "villa"}', headers=SLOW)
    assert quick.status_code == routed.status_code == 503
    assert quick.json() == routed.json()
    assert quick.json()["detail"].startswith("no model loaded")
    assert str(tmp_path) not in quick.text  # no server path reaches a client (issue 19)
