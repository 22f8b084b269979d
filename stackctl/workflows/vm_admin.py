"""VM administration: resize, rebuild, snapshot, set-state (journaled host work)."""

from __future__ import annotations

RECOVERY: dict = {}
