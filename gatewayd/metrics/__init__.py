"""Prometheus metrics: one collector per source (nft counters, tc, NFQUEUE, the classifier, the policy).

Naming follows Prometheus conventions: gatewayd_ prefix, _total for counters,
base units (bytes, seconds). Labels come from bounded sets only: apps of the
catalog, groups and classes of the policy, rule names, fixed enums. No
per-address labels.
"""
