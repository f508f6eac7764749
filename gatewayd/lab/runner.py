"""What the lab helpers need from a lab: commands in its namespaces and its work directory.

Services, traffic probes, shaping checks and the daemon runner are typed
against this Protocol, not the whole `topology.Lab`, so topology can import
them without a cycle and a test can hand them a stand-in.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol


class NamespaceRunner(Protocol):
    @property
    def workdir(self) -> Path:
        """Where logs and generated files of this lab go."""
        ...

    def run(self, ns_key: str, argv: Sequence[str], timeout: float = ..., check: bool = ...,
            input: str | None = ...) -> subprocess.CompletedProcess[str]:
        """Run `argv` in the namespace `ns_key` and wait for it."""
        ...

    def popen(self, ns_key: str, argv: Sequence[str], log_name: str | None = ...,
              **popen_kwargs: Any) -> subprocess.Popen[bytes]:
        """Start a long-running process in `ns_key`; the lab stops it at cleanup."""
        ...

    def exec_python(self, ns_key: str, code: str, args: Sequence[str] = ..., timeout: float = ...,
                    check: bool = ...) -> subprocess.CompletedProcess[str]:
        """Run Python code with our interpreter in `ns_key`."""
        ...
