"""Prometheus metrics through prometheus_client: one process, and several summed through the
multiprocess directory (what ``GET /metrics`` answers behind ``--workers N``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from funnel.serve.metrics import MULTIPROC_ENV, Metrics, labels_key, mark_worker_dead


def _samples(text: str) -> dict[str, float]:
    return {ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1])
            for ln in text.splitlines() if ln and not ln.startswith("#")}


def test_histogram_buckets_are_cumulative_and_bounds_inclusive() -> None:
    m = Metrics()
    for ms in (0.5, 1.0, 1.5, 5.0, 7000.0):
        m.observe_ms("lat_ms", ms, {"route": "/s"}, "latency")
    m.observe_many_ms("lat_ms", [(labels_key({"route": "/s"}), 20.0)])
    text = m.render()
    assert "# HELP lat_ms latency\n# TYPE lat_ms histogram" in text
    got = _samples(text)
    le = {k.split('le="')[1].split('"')[0]: v for k, v in got.items()
          if k.startswith("lat_ms_bucket")}
    # 0.5 and 1.0 are <= 1; 1.5 <= 2; 5.0 <= 5; 20 <= 20; 7000 only in +Inf
    assert le == {"1.0": 2, "2.0": 3, "5.0": 4, "10.0": 4, "20.0": 5, "50.0": 5, "100.0": 5,
                  "200.0": 5, "500.0": 5, "1000.0": 5, "2000.0": 5, "5000.0": 5, "+Inf": 6}
    assert got['lat_ms_count{route="/s"}'] == 6
    assert got['lat_ms_sum{route="/s"}'] == 7028.0


def test_counters_label_order_and_escaping() -> None:
    m = Metrics()
    m.inc("req_total", {"route": '/a"b', "method": "GET"}, 2, "requests")
    m.inc_key("req_total", labels_key({"method": "GET", "route": '/a"b'}), 1)
    m.inc("events_total", {}, 3)
    got = _samples(m.render())
    assert got['req_total{method="GET",route="/a\\"b"}'] == 3
    assert got["events_total"] == 3
    assert not any("_created" in k for k in got)  # per-process timestamps would not sum


def test_two_apps_in_one_process_keep_their_own_counts() -> None:
    one, two = Metrics(), Metrics()
    one.inc("x_total", {}, 1)
    assert "x_total" not in two.render()


WORKER = textwrap.dedent("""
    import sys
    from funnel.serve.metrics import Metrics
    m = Metrics()
    m.set_up(True)
    m.inc("funnel_requests_total", {"route": "/search", "method": "POST", "status": "200"},
          int(sys.argv[1]))
    m.observe_ms("funnel_request_latency_ms", 3.0, {"route": "/search", "method": "POST"})
""")


def test_workers_metrics_are_summed_and_a_dead_worker_leaves_the_up_gauge(tmp_path: Path):
    env = dict(os.environ, **{MULTIPROC_ENV: str(tmp_path)})
    for n in (2, 5):
        subprocess.run([sys.executable, "-c", WORKER, str(n)], env=env, check=True,
                       capture_output=True, text=True, timeout=120)
    scrape = Metrics()
    scrape.multiprocess_dir = str(tmp_path)  # what a worker started with the variable does
    got = _samples(scrape.render())
    assert got['funnel_requests_total{method="POST",route="/search",status="200"}'] == 7
    assert got['funnel_request_latency_ms_count{method="POST",route="/search"}'] == 2
    # the two processes have exited but nobody marked them dead: their gauges still count
    assert got["funnel_workers_up"] == 2
    for db in tmp_path.glob("gauge_livesum_*.db"):
        mark_worker_dead(int(db.stem.rsplit("_", 1)[1]), str(tmp_path))
    got = _samples(scrape.render())
    assert "funnel_workers_up" not in got or got["funnel_workers_up"] == 0
    assert got['funnel_requests_total{method="POST",route="/search",status="200"}'] == 7
