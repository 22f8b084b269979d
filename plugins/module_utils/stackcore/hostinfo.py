"""What a hypervisor host has: capacity, versions, accelerator and domains (read-only); and
what stackctl keeps on it: instance directories and cached images (for ``stackctl reconcile``)."""

import os
import re

from .errors import BackendError
from .libvirt_conn import import_libvirt, is_no_such

DEFAULT_INSTANCES_DIR = "/var/lib/stackctl/instances"
DEFAULT_IMAGE_CACHE_DIR = "/var/lib/stackctl/images"
DISK_FILE = "disk.qcow2"  # contracts.md: <instances_dir>/<domain>/disk.qcow2
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
GIB = 1024**3

# virsh's words for virDomainState (VIR_DOMAIN_NOSTATE .. VIR_DOMAIN_PMSUSPENDED).
DOMAIN_STATES = (
    "no state",
    "running",
    "idle",
    "paused",
    "in shutdown",
    "shut off",
    "crashed",
    "pmsuspended",
)


def dotted_version(number):
    """libvirt's version integer (major * 1,000,000 + minor * 1,000 + micro) as "9.0.0"."""
    number = int(number)
    return f"{number // 1_000_000}.{number // 1_000 % 1_000}.{number % 1_000}"


def state_word(state):
    """A virDomainState as virsh prints it ("running", "shut off", ...)."""
    if 0 <= state < len(DOMAIN_STATES):
        return DOMAIN_STATES[state]
    return "unknown"


def nearest_existing(path):
    """``path`` or its closest existing ancestor (the instances dir may not exist yet)."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def disk_usage(path):
    """(total GiB, free GiB for unprivileged use), rounded down, of the filesystem holding path."""
    st = os.statvfs(nearest_existing(path))
    return st.f_blocks * st.f_frsize // GIB, st.f_bavail * st.f_frsize // GIB


def domains(conn):
    """[{name, uuid, state}] of every domain libvirt knows, sorted by name."""
    libvirt = import_libvirt()
    out = []
    for dom in conn.listAllDomains(0):
        try:
            state = dom.state()[0]
        except libvirt.libvirtError as exc:
            if is_no_such(exc, "domain"):  # undefined between the listing and now
                continue
            raise
        out.append({"name": dom.name(), "uuid": dom.UUIDString(), "state": state_word(state)})
    return sorted(out, key=lambda d: d["name"])


def memory_mb(conn, info):
    """Host RAM in MiB. nodeinfo counts only what the NUMA nodes report, which misses
    hot-plugged memory (here: 5 GiB of 24); the all-cells memory stats (/proc/meminfo) do not."""
    libvirt = import_libvirt()
    try:
        total_kib = conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS, 0)["total"]
    except (libvirt.libvirtError, KeyError):  # e.g. the test driver does not implement it
        return info[1]
    return max(info[1], total_kib // 1024)


def gather(conn, instances_dir, kvm_usable, virt_type):
    """The ``hypervisor`` dict of stack_hypervisor_info; the KVM verdict is passed in
    (from ``kvm_probe``) so this stays a plain read of libvirt and the filesystem."""
    libvirt = import_libvirt()
    try:
        info = conn.getInfo()  # [model, memory MiB, cpus, MHz, nodes, sockets, cores, threads]
        disk_gb, disk_free_gb = disk_usage(instances_dir)
        return {
            "hostname": conn.getHostname(),
            "vcpus": info[2],
            "memory_mb": memory_mb(conn, info),
            "disk_gb": disk_gb,
            "disk_free_gb": disk_free_gb,
            "kvm_usable": kvm_usable,
            "virt_type": virt_type,
            "libvirt_version": dotted_version(conn.getLibVersion()),
            "qemu_version": dotted_version(conn.getVersion()),
            "domains": domains(conn),
        }
    except libvirt.libvirtError as exc:
        raise BackendError(f"cannot read host information: {exc.get_error_message()}") from exc


def _entries(path):
    """Names in directory ``path``; none when it does not exist (nothing created yet)."""
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise BackendError(f"cannot list {path}: {exc.strerror}") from exc


def instances(instances_dir):
    """[{name, disk}] for each instance directory (named after its domain), sorted by name;
    ``disk`` says whether its disk file exists. Lock files (``.<domain>.lock``) are left out."""
    out = []
    for name in _entries(instances_dir):
        path = os.path.join(instances_dir, name)
        if name.startswith(".") or not os.path.isdir(path):
            continue
        out.append({"name": name, "disk": os.path.isfile(os.path.join(path, DISK_FILE))})
    return out


def cached_images(cache_dir):
    """The sha256 names of the complete images in the cache (temp and lock files, which start
    with a dot, and anything not named by a sha256 are left out), sorted."""
    return [name for name in _entries(cache_dir)
            if _SHA256.match(name) and os.path.isfile(os.path.join(cache_dir, name))]
