"""Small parsers the metrics collectors and the lab rely on."""

from __future__ import annotations

from pathlib import Path

from gatewayd.lab.gateway import metric_value
from gatewayd.metrics.nfqueue import read_queue_line
from gatewayd.metrics.server import parse_listen


def test_nfqueue_proc_line_is_read_by_queue_number(tmp_path: Path) -> None:
    proc = tmp_path / "nfnetlink_queue"
    # queue portid total mode range dropped user_dropped id_sequence 1
    proc.write_text("    0  12345     3 2 65531     7     9      100  1\n"
                    "    1  12346     0 2 65531     0     0        0  1\n")
    assert read_queue_line(0, proc) == {"backlog": 3, "queue_dropped": 7, "user_dropped": 9,
                                        "sequence": 100}
    assert read_queue_line(1, proc) == {"backlog": 0, "queue_dropped": 0, "user_dropped": 0,
                                        "sequence": 0}
    assert read_queue_line(5, proc) is None
    assert read_queue_line(0, tmp_path / "absent") is None


def test_listen_address_forms() -> None:
    assert parse_listen("127.0.0.1:9108") == ("127.0.0.1", 9108)
    assert parse_listen("[::1]:9200") == ("::1", 9200)


def test_metric_value_sums_matching_samples() -> None:
    exposition = "\n".join([
        "# HELP x_total help",
        'x_total{app="a",group="g,1"} 2.0',
        'x_total{app="a",group="h"} 3.0',
        'x_total{app="b",group="h"} 5.0',
        "x_total_created 1.0",
    ])
    assert metric_value(exposition, "x_total", app="a") == 5.0
    assert metric_value(exposition, "x_total", group="g,1") == 2.0
    assert metric_value(exposition, "x_total") == 10.0
    assert metric_value(exposition, "y_total") == 0.0
