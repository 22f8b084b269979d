"""Opening libvirt connections: one place, lazily importing the binding, quiet on stderr."""

from .errors import BackendError

DEFAULT_URI = "qemu:///system"


def import_libvirt():
    """Return the ``libvirt`` module, with its default stderr error printer silenced."""
    try:
        import libvirt
    except ImportError as exc:  # reported by modules through missing_required_lib
        raise BackendError("the libvirt Python binding (libvirt-python) is not installed") from exc
    libvirt.registerErrorHandler(lambda *_args: None, None)
    return libvirt


def connect(uri=DEFAULT_URI):
    """Open a read-write connection or raise BackendError with libvirt's own message."""
    libvirt = import_libvirt()
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise BackendError(
            f"cannot connect to libvirt at {uri}: {exc.get_error_message()}"
        ) from exc


def is_no_such(exc, kind="domain"):
    """True when a libvirtError means the named domain/network/volume does not exist."""
    libvirt = import_libvirt()
    codes = {
        "domain": libvirt.VIR_ERR_NO_DOMAIN,
        "network": libvirt.VIR_ERR_NO_NETWORK,
        "pool": libvirt.VIR_ERR_NO_STORAGE_POOL,
        "volume": libvirt.VIR_ERR_NO_STORAGE_VOL,
    }
    return exc.get_error_code() == codes[kind]
