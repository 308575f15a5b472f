"""The HAProxy configuration ``funnel serve`` generates: every answer the edge makes itself is
the app's JSON error shape, and HAProxy accepts the file (``haproxy -c``, where installed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from funnel.serve.haproxy import EdgeLimits, render_config

EDGE_ANSWERS = {400, 408, 413, 431, 500, 502, 503, 504}


def _answers(config: str) -> dict[int, dict]:
    """Status -> parsed body of every ``http-error`` and ``deny`` answer in ``config``."""
    found = {}
    for m in re.finditer(r"(?:http-error|deny) status (\d+) content-type application/json "
                         r"string '([^']*)'", config):
        found[int(m.group(1))] = json.loads(m.group(2))
    return found


def test_every_answer_of_the_edge_is_json_of_the_apps_shape_without_paths(tmp_path: Path):
    limits = EdgeLimits(max_body_bytes=5000, request_timeout_s=2.5)
    answers = _answers(render_config("127.0.0.1", 8123, [tmp_path / "w0.sock"], limits))
    assert set(answers) == EDGE_ANSWERS
    for status, body in answers.items():
        assert set(body) == {"detail"} and body["detail"], status
        assert "/" not in body["detail"], (status, body)  # no path of this machine
    assert answers[413]["detail"] == "request body larger than 5000 bytes"
    assert answers[431]["detail"] == "request headers larger than 16384 bytes"
    assert answers[408]["detail"] == "the request did not arrive within 2.5 s"


def test_one_worker_is_not_asked_again_after_a_timeout_and_admin_takes_no_slot(tmp_path: Path):
    one = render_config("127.0.0.1", 8123, [tmp_path / "w0.sock"], EdgeLimits())
    two = render_config("127.0.0.1", 8123, [tmp_path / "w0.sock", tmp_path / "w1.sock"],
                        EdgeLimits())
    assert "retry-on conn-failure empty-response\n" in one
    assert "retry-on conn-failure empty-response response-timeout\n" in two
    admin = two[two.index("\nbackend admin"):]
    assert "maxconn" not in admin and "track workers/w1" in admin
    assert "use_backend admin if { path_beg /admin/ }" in two


def test_a_header_limit_past_the_proxy_buffer_is_refused():
    with pytest.raises(ValueError, match="max_header_bytes 40000 must be at most 30720"):
        EdgeLimits(max_header_bytes=40_000)


@pytest.mark.skipif(shutil.which("haproxy", path="/usr/sbin:/usr/bin:/usr/local/sbin") is None,
                    reason="haproxy not installed (scripts/setup-system.sh installs it)")
@pytest.mark.parametrize("workers", [1, 3])
def test_haproxy_accepts_the_config(tmp_path: Path, workers: int):
    binary = shutil.which("haproxy", path="/usr/sbin:/usr/bin:/usr/local/sbin")
    config = tmp_path / "haproxy.cfg"
    sockets = [tmp_path / f"w{i}.sock" for i in range(workers)]
    config.write_text(render_config("127.0.0.1", 8123, sockets, EdgeLimits()))
    out = subprocess.run([str(binary), "-c", "-f", str(config)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "WARNING" not in out.stdout + out.stderr
