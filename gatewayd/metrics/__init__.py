"""Prometheus metrics: one collector per source (nft counters, tc, NFQUEUE, the classifier, the policy).

Naming follows Prometheus conventions: gatewayd_ prefix, _total for counters,
base units (bytes, seconds). Labels come from bounded sets only: apps of the
catalog, groups and classes of the policy, rule names, fixed enums. The one
per-address label is the host of the metrics.top_talkers busiest hosts
(top_talkers.py), bounded by the policy.
"""
