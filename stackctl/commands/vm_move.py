"""``stackctl vm migrate`` (attached to the ``vm`` group)."""

from stackctl.commands.vm import vm  # noqa: F401
