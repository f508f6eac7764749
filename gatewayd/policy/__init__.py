"""The traffic policy: its model, and the loader that validates YAML into it."""

from gatewayd.policy.errors import PolicyError, PolicyIssue
from gatewayd.policy.loader import load_policy, load_policy_text

__all__ = ["PolicyError", "PolicyIssue", "load_policy", "load_policy_text"]
