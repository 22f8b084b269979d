"""One small error hierarchy, raised in the core and turned into a message at one boundary
(``fail_json`` in a module, one line on stderr in the CLI)."""


class StackError(Exception):
    """Base of every error stackctl raises on purpose. ``str(err)`` is the user-facing line."""

    exit_code = 1


class InvalidInput(StackError):
    """The caller asked for something malformed or out of bounds. Nothing was touched."""

    exit_code = 2


class NotFound(StackError):
    """A named thing does not exist (or is not visible to the caller's tenant)."""

    exit_code = 3


class Conflict(StackError):
    """The request clashes with existing state (name taken, resource busy, no capacity)."""

    exit_code = 4


class BackendError(StackError):
    """A host, libvirt, QEMU, Ansible or the database failed underneath us."""

    exit_code = 5


class HostUnreachable(BackendError):
    """Ansible could not reach the host at all (SSH failed): nothing ran there."""
