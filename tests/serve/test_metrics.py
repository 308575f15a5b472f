"""Prometheus metrics: cumulative buckets, counts and sums by hand."""

from __future__ import annotations

from funnel.serve.metrics import Metrics, labels_key


def test_histogram_buckets_are_cumulative_and_bounds_inclusive() -> None:
    m = Metrics()
    for ms in (0.5, 1.0, 1.5, 5.0, 7000.0, float("nan")):
        m.observe_ms("lat_ms", ms, {"route": "/s"}, "latency")
    m.observe_many_ms("lat_ms", [(labels_key({"route": "/s"}), 20.0)])
    lines = m.render().splitlines()
    assert lines[:2] == ["# HELP lat_ms latency", "# TYPE lat_ms histogram"]
    le = {ln.split('le="')[1].split('"')[0]: float(ln.rsplit(" ", 1)[1])
          for ln in lines if ln.startswith("lat_ms_bucket")}
    # 0.5 and 1.0 are <= 1; 1.5 <= 2; 5.0 <= 5; 20 <= 20; 7000 and NaN only in +Inf
    assert le == {"1": 2, "2": 3, "5": 4, "10": 4, "20": 5, "50": 5, "100": 5, "200": 5,
                  "500": 5, "1000": 5, "2000": 5, "5000": 5, "+Inf": 7}
    assert 'lat_ms_count{route="/s"} 7' in lines
    assert any(ln.startswith('lat_ms_sum{route="/s"} nan') for ln in lines)


def test_counters_and_label_escaping() -> None:
    m = Metrics()
    m.inc("req_total", {"route": '/a"b', "method": "GET"}, 2, "requests")
    m.inc_key("req_total", labels_key({"method": "GET", "route": '/a"b'}), 1)
    assert 'req_total{method="GET",route="/a\\"b"} 3' in m.render().splitlines()
