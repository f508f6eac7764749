"""Quantiles of a Prometheus histogram read from a metrics exposition, as PromQL's
histogram_quantile does: linear interpolation inside the bucket the quantile falls in."""

from __future__ import annotations

import re

Buckets = dict[float, float]  # bucket upper bound (le) -> cumulative count


def current_buckets(exposition: str, name: str) -> Buckets:
    """The cumulative buckets of histogram `name`, summed over its label sets."""
    buckets: Buckets = {}
    for match in re.finditer(rf'^{name}_bucket\{{[^}}]*le="([^"]+)"[^}}]*\}} ([0-9.e+-]+)$', exposition, re.M):
        bound = float("inf") if match.group(1) == "+Inf" else float(match.group(1))
        buckets[bound] = buckets.get(bound, 0.0) + float(match.group(2))
    return buckets


def bucket_increase(after: Buckets, before: Buckets) -> Buckets:
    """What the histogram counted between two readings of it."""
    return {bound: count - before.get(bound, 0.0) for bound, count in after.items()}


def quantile_of_buckets(buckets: Buckets, quantile: float) -> float:
    """The `quantile` estimated from cumulative buckets; NaN when they hold nothing. A quantile
    in the +Inf bucket is reported as the highest finite bound (all the buckets can say)."""
    ordered = sorted(buckets.items())
    total = ordered[-1][1] if ordered else 0.0
    if total <= 0:
        return float("nan")
    wanted = quantile * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= wanted:
            if bound == float("inf"):
                return lower_bound
            share = (wanted - lower_count) / max(count - lower_count, 1e-12)
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound


def histogram_quantile(exposition: str, name: str, quantile: float, previous: Buckets) -> float:
    """Quantile of histogram `name`'s increase since `previous` (an earlier current_buckets)."""
    return quantile_of_buckets(bucket_increase(current_buckets(exposition, name), previous), quantile)
