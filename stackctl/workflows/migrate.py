"""Moving VMs between hosts: cold and live migration, host drain and evacuate."""

from __future__ import annotations

RECOVERY: dict = {}
