"""Typed operations behind the CLI: ``f(app, ...) -> plain data``; no click, no rendering.

``vm`` (journaled host work), ``images`` (the controller's image store), ``hosts``
(inventory, refresh, deploy), ``tenants`` (tenants and keypairs), ``flavors``; ``lookup``
resolves names as a tenant sees them.
"""
