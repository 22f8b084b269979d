"""``stackctl vm resize|rebuild|snapshot|set-state`` (attached to the ``vm`` group)."""

from stackctl.commands.vm import vm  # noqa: F401
