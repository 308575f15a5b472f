"""The HTTP layer: the funnel end to end, real-time personalization, limits and errors."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from fastapi.testclient import TestClient

from funnel.serve.app import create_app
from funnel.serve.settings import Settings

TOKEN = "test-admin-7f3a9c"


@pytest.fixture(scope="module")
def client(served_workspace):
    app = create_app(Settings(workspace=served_workspace.root, admin_token=TOKEN),
                     flush_every_s=0)
    with TestClient(app) as c:
        yield c


def test_search_runs_the_whole_funnel_within_the_market(client):
    meta = client.get("/meta").json()
    market = meta["markets"][0]
    r = client.post("/search", json={"query": market, "market": market, "k": 10, "debug": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["items"]) == 10
    assert {i["market"] for i in body["items"]} == {market}
    assert len({i["item_id"] for i in body["items"]}) == 10
    for stage in ("recall", "rank", "rerank", "total"):
        assert body["timings_ms"][stage] >= 0
    dbg = body["items"][0]["debug"]
    assert dbg["recall_sources"] and "rank_score" in dbg and dbg["kind"] in (
        "organic", "pinned", "sponsored")


def test_lexical_query_finds_matching_titles(client):
    r = client.post("/search", json={"query": "loft", "k": 10}).json()
    titles = [i["title"].lower() for i in r["items"]]
    assert sum("loft" in t for t in titles) >= 5, titles


def test_events_personalize_the_very_next_request(client):
    """Airbnb's real-time loop: clicks in one market/category pull the next feed toward them."""
    user = "fresh-user-1"
    before = client.get(f"/recommend/{user}", params={"k": 20}).json()["items"]
    meta = client.get("/meta").json()
    target = meta["markets"][-1]  # the smallest market: unlikely to dominate by popularity
    picks = client.post("/search", json={"query": target, "market": target, "k": 5}).json()
    clicked = [i["item_id"] for i in picks["items"][:3]]
    events = [{"user_id": user, "event_type": "click", "item_id": item,
               "request_id": picks["request_id"], "position": p, "dwell_ms": 90_000}
              for p, item in enumerate(clicked)]
    assert client.post("/events", json={"events": events}).json() == {
        "accepted": 3, "users_updated": 1}
    after_body = client.get(f"/recommend/{user}", params={"k": 20}).json()
    after = after_body["items"]
    share = lambda items: sum(i["market"] == target for i in items) / len(items)  # noqa: E731
    assert share(after) >= share(before) + 0.3, (share(before), share(after))
    # the response says what the personalization rests on: the 3 clicks in the user's state
    assert after_body["state_clicks"] == 3
    mine = client.post("/search", json={"query": target, "user_id": user, "k": 5}).json()
    assert mine["state_clicks"] == 3 and picks["state_clicks"] is None  # picks: anonymous


def test_similar_items_share_market_mostly(client):
    item = client.post("/search", json={"query": "", "k": 1}).json()["items"][0]
    sim = client.get(f"/similar/{item['item_id']}", params={"k": 10}).json()["items"]
    assert len(sim) == 10 and item["item_id"] not in {s["item_id"] for s in sim}
    markets = Counter(s["market"] for s in sim)
    assert markets[item["market"]] >= 6, markets


def test_suggest_related_hint(client):
    meta = client.get("/meta").json()
    prefix = meta["markets"][0][:3]
    sug = client.get("/suggest", params={"prefix": prefix, "k": 5}).json()["suggestions"]
    assert sug and all(s["text"].startswith(prefix) for s in sug[:3])
    rel = client.get("/related", params={"query": sug[0]["text"]}).json()["suggestions"]
    assert all(r["text"] != sug[0]["text"] for r in rel)
    hint = client.get("/hint/nobody-at-all").json()
    assert hint["hint"]  # popular fallback for a new user


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "detail"),
    [
        ("post", "/search", {"query": "x", "k": 201}, 422,
         "k: Input should be less than or equal to 200"),
        ("post", "/search", {"query": "x" * 201}, 422, "query: String should have at most 200"),
        ("post", "/search", {"query": "x", "bogus": 1}, 422,
         "bogus: Extra inputs are not permitted"),
        ("get", "/similar/no-such-item", None, 404, "unknown item 'no-such-item'"),
        ("post", "/events", {"events": []}, 422, "events: List should have at least 1 item"),
        ("post", "/events", {"events": [{"user_id": "u", "event_type": "explode"}]}, 422,
         "events.0.event_type: Input should be"),
        ("post", "/events", {"events": [{"user_id": "u", "event_type": "click"}]}, 422,
         "events[0]: click events need an item_id"),
        ("post", "/events", {"events": [{"user_id": "u", "event_type": "search"}]}, 422,
         "events[0]: search events need a query"),
        ("get", "/suggest?prefix=", None, 422, "query.prefix: String should have at least 1"),
        ("post", "/admin/reload", None, 401, "missing or wrong bearer token"),
    ],
)
def test_bad_input_gets_a_clear_4xx(client, method, path, payload, status, detail):
    r = getattr(client, method)(path, **({"json": payload} if payload is not None else {}))
    assert r.status_code == status, r.text
    assert r.json()["detail"].startswith(detail), r.json()


def test_body_size_limit(client):
    big = json.dumps({"events": [{"user_id": "u" * 200, "event_type": "search",
                                  "query": "q" * 190}] * 4000})
    r = client.post("/events", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "larger than" in r.json()["detail"]


def test_a_chunked_body_over_the_limit_is_refused_while_it_streams(client):
    """Without Content-Length the limit used to be skipped: a 52 MB chunked body was read
    whole with one worker. Now the bytes are counted as they arrive (the app stops reading,
    so the server's flow control stops the client)."""
    chunks = (b" " * 65_536 for _ in range(400))  # 25 MiB, far over the 1 MB limit
    r = client.post("/events", content=chunks, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "larger than" in r.json()["detail"]
    small = client.post("/events", content=iter([b'{"events": []}']),
                        headers={"Content-Type": "application/json"})
    assert small.status_code != 413  # a chunked body under the limit goes through


def test_admin_reload_needs_the_token_and_metrics_count_requests(client):
    ok = client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json()["version"].startswith("v")
    bad = client.post("/admin/reload", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    text = client.get("/metrics").text
    assert 'funnel_requests_total{method="POST",route="/search",status="200"}' in text
    assert "funnel_stage_latency_ms_bucket" in text and 'le="+Inf"' in text


def test_admin_disabled_without_a_token_and_placeholder_tokens_refused(served_workspace):
    app = create_app(Settings(workspace=served_workspace.root), flush_every_s=0)
    with TestClient(app) as c:
        r = c.post("/admin/reload", headers={"Authorization": "Bearer anything"})
        assert r.status_code == 403 and "FUNNEL_ADMIN_TOKEN" in r.json()["detail"]
    with pytest.raises(ValueError, match="placeholder"):
        Settings(workspace=served_workspace.root, admin_token="changeme")
    # issue 19: a short token is refused; the comparison is constant-time (hmac.compare_digest)
    with pytest.raises(ValueError, match="has 9 characters; use at least 16"):
        Settings(workspace=served_workspace.root, admin_token="abc123xyz")


@pytest.mark.parametrize("ts", ["0001-01-01T00:00:00Z", "9999-12-31T00:00:00Z",
                                "1989-12-31T23:59:59+00:00", "2100-01-01T00:00:00"])
def test_events_outside_the_ingest_time_bounds_are_refused_issue_19(client, ts):
    # issue 19: the API accepted years 1 and 9999, which ingest then quarantined
    r = client.post("/events", json={"events": [
        {"user_id": "u", "event_type": "click", "item_id": "x", "ts": ts}]})
    assert r.status_code == 422
    assert "outside 1990-01-01..2100-01-01" in r.text
    ok = client.post("/events", json={"events": [
        {"user_id": "u", "event_type": "search", "query": "rome", "ts": "2024-05-01T10:00:00Z"}]})
    assert ok.status_code == 200 and ok.json()["accepted"] == 1


def test_events_are_durable_and_reach_the_store(served_workspace, client):
    from funnel.data.store import EventStore

    app = client.app
    n = client.post("/events", json={"events": [
        {"event_id": "durable-1", "user_id": "d", "event_type": "search", "query": "rome villa"},
    ]}).json()["accepted"]
    assert n == 1
    app.state.spool.rotate()
    assert app.state.spool.ready_segments()  # on disk before the reply
    stored = app.state.spool.flush_to_store(app.state.workspace)
    assert stored >= 1
    with EventStore.open(served_workspace.store_path, read_only=True) as store:
        rows = store.con.execute(
            "SELECT query FROM events WHERE event_id = 'durable-1'").fetchall()
    assert rows == [("rome villa",)]
    assert not app.state.spool.ready_segments()


def test_list_bodies_match_the_declared_response_model(client):
    """The list routes write JSON bytes themselves; the bodies must still be exactly what the
    OpenAPI schema (``ListResponse``) promises, debug values included (no NaN in JSON)."""
    from funnel.serve.schemas import ListResponse

    meta = client.get("/meta").json()
    responses = [
        client.post("/search", json={"query": meta["markets"][0], "k": 7, "debug": True}),
        client.post("/search", json={"query": "", "k": 3}),
        client.get("/recommend/someone", params={"k": 5, "debug": True}),
    ]
    item = responses[0].json()["items"][0]["item_id"]
    responses.append(client.get(f"/similar/{item}", params={"k": 4}))
    for r in responses:
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        assert float(r.headers["x-funnel-time-ms"]) > 0
        body = json.loads(r.text, parse_constant=lambda c: pytest.fail(f"{c} in JSON body"))
        assert ListResponse.model_validate(body).model_dump(mode="json") == body
    first = responses[0].json()["items"][0]
    assert first["debug"]["features"]["qm_has_query"] == 1.0 and first["market"]
    assert [len(r.json()["items"]) for r in responses] == [7, 3, 5, 4]


def test_meta_lists_user_ids_only_to_the_admin_or_a_demo(client, served_workspace):
    """User ids are real people's: GET /meta names them to the admin token or a demo server
    (``funnel serve --demo-users``), never to anyone who asks (issue 19 probe)."""
    anonymous = client.get("/meta").json()
    assert anonymous["users"] == [] and anonymous["markets"]
    assert client.get("/meta", headers={"Authorization": "Bearer wrong-token-xxxxxxxx"}
                      ).json()["users"] == []
    admin = client.get("/meta", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert admin["users"] and admin["markets"] == anonymous["markets"]
    demo = create_app(Settings(workspace=served_workspace.root, demo_users=True),
                      flush_every_s=0)
    with TestClient(demo) as c:
        assert c.get("/meta").json()["users"] == admin["users"]


def test_search_says_whether_anything_matched_the_query(client):
    """A query that matches nothing says so instead of passing popular items off as results
    ("qwxzzv plmnb" showed "24 results"; issue 20)."""
    market = client.get("/meta").json()["markets"][0]
    exact = client.post("/search", json={"query": market, "k": 5}).json()
    assert exact["match"] == "exact" and exact["items"]
    partial = client.post("/search", json={"query": f"{market} qwxzzv", "k": 5}).json()
    assert partial["match"] == "partial" and partial["items"]
    nothing = client.post("/search", json={"query": "qwxzzv plmnb", "k": 5}).json()
    assert nothing["match"] == "none" and len(nothing["items"]) == 5  # the popular fallback
    assert client.get("/recommend/someone", params={"k": 3}).json()["match"] is None


def test_the_openapi_spec_describes_every_endpoint_and_field_with_valid_examples(client):
    """Issue 20: the spec had no endpoint descriptions and 2 of ~57 fields described."""
    from funnel.serve.schemas import EventsRequest, SearchRequest

    spec = client.get("/openapi.json").json()
    ops = {f"{m.upper()} {p}": o for p, item in spec["paths"].items() for m, o in item.items()}
    assert len(ops) >= 11 and [k for k, o in ops.items() if not o.get("description")] == []
    ours = {n: s for n, s in spec["components"]["schemas"].items()
            if n not in ("HTTPValidationError", "ValidationError")}  # FastAPI's own
    bare = [(n, f) for n, s in ours.items() for f, d in s.get("properties", {}).items()
            if not d.get("description")]
    assert bare == []
    for model in (SearchRequest, EventsRequest):
        examples = ours[model.__name__]["examples"]
        assert examples and all(model.model_validate(e) for e in examples)
    example = ours["SearchRequest"]["examples"][0]
    assert client.post("/search", json=example).status_code == 200
