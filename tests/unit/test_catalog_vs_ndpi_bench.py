"""bench/catalog_vs_ndpi.py reads nDPI's host table as nDPI matches it, and the catalog agrees with it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from gatewayd.policy.applications import load_catalog
from gatewayd.policy.errors import PolicyIssue

BENCH = Path(__file__).resolve().parents[2] / "bench" / "catalog_vs_ndpi.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("catalog_vs_ndpi_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_a_pattern_ending_the_name_beats_one_inside_it() -> None:
    bench = load_bench()
    table = [bench.NdpiPattern("qq.com", "qq"), bench.NdpiPattern("wx.", "wechat"),
             bench.NdpiPattern("v.qq.com", "tencentvideo"), bench.NdpiPattern("google.", "google"),
             bench.NdpiPattern("-mtalk.google.com", "googleservices"), bench.NdpiPattern("goog", "google")]
    assert bench.ndpi_app(table, "res.wx.qq.com") == "qq"  # what nDPI's own labels say
    assert bench.ndpi_app(table, "wx.example.org") == "wechat"
    assert bench.ndpi_app(table, "v.qq.com") == "tencentvideo"  # the longest ending pattern
    assert bench.ndpi_app(table, "vv.qq.com") == "qq"  # a label boundary, not a substring
    assert bench.ndpi_app(table, "www.google.it") == "google"
    assert bench.ndpi_app(table, "alt3-mtalk.google.com") == "googleservices"
    assert bench.ndpi_app(table, "b1.nel.goog") == "google"
    assert bench.ndpi_app(table, "googlemail.com") is None  # "goog" is a top-level domain, not a prefix
    assert [bench.sample_name(p) for p in ("qq.com", "wx.", "fbcdn-", "-mtalk.google.com", "goog")] == \
        ["qq.com", None, None, None, None]


def test_the_catalog_names_no_server_unlike_ndpi_except_where_kept_on_purpose() -> None:
    bench = load_bench()
    issues: list[PolicyIssue] = []
    catalog = load_catalog(None, issues)
    assert not issues
    result = bench.compare(catalog, bench.read_table(bench.TABLE))
    assert result.disagree == []
    assert all(app in catalog for _name, app, _ndpi, _why in result.kept)
