"""POST /search through FastAPI's router: status codes, error bodies, limits and metrics, for
plain JSON, other JSON content types and chunked bodies alike (issue 19 dropped the fast path
that answered plain JSON searches around the router)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from funnel.serve.app import create_app
from funnel.serve.schemas import ListResponse
from funnel.serve.settings import Settings
from funnel.workspace import Workspace

PLAIN = {"Content-Type": "application/json"}
CHARSET = {"Content-Type": "application/json; charset=utf-8"}


@pytest.fixture(scope="module")
def client(served_workspace):
    settings = Settings(workspace=served_workspace.root, max_k=50, max_query_chars=30)
    with TestClient(create_app(settings, flush_every_s=0)) as c:
        yield c


def _stable(body: dict) -> dict:
    return {k: v for k, v in body.items() if k not in ("request_id", "timings_ms")}


def test_the_app_has_no_search_middleware(client):
    """Only the edge's own layers wrap the router: no second parser for POST /search."""
    layer, names = client.app.middleware_stack, []
    while hasattr(layer, "app"):
        names.append(type(layer).__name__)
        layer = layer.app
    assert not any("Search" in n or "Fast" in n for n in names), names


@pytest.mark.parametrize(
    "payload",
    [
        {"query": "villa", "k": 7, "debug": True},
        {"query": "", "k": 3, "user_id": "route-user"},
        {"query": "loft", "filters": {"category": "nope"}, "k": 5},
    ],
)
def test_searches_answer_alike_for_any_json_content_type(client, payload):
    data = json.dumps(payload).encode()
    plain = client.post("/search", content=data, headers=PLAIN)
    charset = client.post("/search", content=data, headers=CHARSET)
    assert plain.status_code == charset.status_code == 200, plain.text
    assert plain.headers["content-type"] == charset.headers["content-type"] == "application/json"
    assert float(plain.headers["x-funnel-time-ms"]) > 0
    ListResponse.model_validate(plain.json())
    assert _stable(plain.json()) == _stable(charset.json())
    assert len(plain.json()["items"]) == payload["k"] or payload.get("filters")
    assert set(plain.json()["timings_ms"]) == set(charset.json()["timings_ms"])


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
def test_bad_searches_get_the_routes_error(client, content, status, detail):
    plain = client.post("/search", content=content, headers=PLAIN)
    charset = client.post("/search", content=content, headers=CHARSET)
    assert plain.status_code == charset.status_code == status, plain.text
    assert plain.json() == charset.json()
    assert plain.json()["detail"].startswith(detail), plain.json()


def test_a_chunked_body_is_searched(client):
    r = client.post("/search", content=iter([b'{"query": ', b'"villa", "k": 4}']), headers=PLAIN)
    assert r.status_code == 200 and len(r.json()["items"]) == 4


def _count(text: str, line_start: str) -> float:
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
               if ln.startswith(line_start))


def test_searches_are_counted_once_under_the_search_route(client):
    requests = 'funnel_requests_total{method="POST",route="/search",status="200"}'
    stages = 'funnel_stage_latency_ms_count{route="search",stage="total"}'
    text = client.get("/metrics").text
    n_req, n_stage = _count(text, requests), _count(text, stages)
    for _ in range(3):
        assert client.post("/search", content=b'{"query": "villa"}', headers=PLAIN).is_success
    text = client.get("/metrics").text
    assert _count(text, requests) == n_req + 3
    assert _count(text, stages) == n_stage + 3


def test_a_failing_search_runs_no_stage(client):
    """A request the route refuses is counted as a request, never as a funnel run."""
    stages = 'funnel_stage_latency_ms_count{route="search",stage="total"}'
    before = _count(client.get("/metrics").text, stages)
    assert client.post("/search", content=b'{"query": "villa", "k": 60}',
                       headers=PLAIN).status_code == 422
    assert _count(client.get("/metrics").text, stages) == before


def test_without_a_model_a_search_is_a_503(tmp_path):
    ws = Workspace.init(tmp_path / "empty")
    app = create_app(Settings(workspace=ws.root), load_on_start=False, flush_every_s=0)
    with TestClient(app) as c:
        plain = c.post("/search", content=b'{"query": "villa"}', headers=PLAIN)
        charset = c.post("/search", content=b'{"query": "villa"}', headers=CHARSET)
    assert plain.status_code == charset.status_code == 503
    assert plain.json() == charset.json()
    assert plain.json()["detail"].startswith("no model loaded")
    assert str(tmp_path) not in plain.text  # no server path reaches a client (issue 19)
