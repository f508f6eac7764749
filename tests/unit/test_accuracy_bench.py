"""bench/accuracy.py matches nDPI's labelled flows to ours whatever the address spelling."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench" / "accuracy.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("accuracy_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_ipv6_flows_match_whichever_way_a_zero_group_is_written() -> None:
    bench = load_bench()
    # nDPI compresses a lone zero group, Python's ipaddress does not (RFC 5952 says it should not).
    labelled = bench.flow_key("tcp", "2001:db8:f030:13:face:b00c::3", 443, "2001:db8:1::10", 51292)
    ours = bench.flow_key("tcp", "2001:db8:1:0:0:0:0:10", 51292, "2001:db8:f030:13:face:b00c:0:3", 443)
    assert labelled == ours
    assert bench.flow_key("udp", "192.0.2.1", 53, "198.51.100.2", 5353) != \
        bench.flow_key("udp", "192.0.2.1", 53, "198.51.100.2", 5354)
