"""Lightning callbacks of vseam-pl: head discovery, causal tracing, scale monitoring (imported lazily so each stays optional)."""

from __future__ import annotations

from typing import Any

__all__ = ["CausalTracing", "HeadDiscovery", "ScaleMonitor"]


def __getattr__(name: str) -> Any:
    if name == "ScaleMonitor":
        from .scale_monitor import ScaleMonitor

        return ScaleMonitor
    if name == "HeadDiscovery":
        from .head_discovery import HeadDiscovery

        return HeadDiscovery
    if name == "CausalTracing":
        from .tracing import CausalTracing

        return CausalTracing
    raise AttributeError(name)
