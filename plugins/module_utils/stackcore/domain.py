"""A VM's libvirt domain: the spec we control, its XML, and the projection back from libvirt.

libvirt rewrites the XML it is given (units, addresses, controllers, aliases, default
devices), so idempotence never compares XML text: ``parse_domain`` projects whatever libvirt
returns onto a ``DomainSpec`` holding only the fields ``build_domain_xml`` sets, and two specs
are compared instead. ``parse_domain(build_domain_xml(spec)) == spec`` for every valid spec.
"""

import hashlib
import uuid as uuidlib
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass

from .errors import InvalidInput

METADATA_NS = "https://stackctl.dev/xmlns/instance/1"
METADATA_PREFIX = "stackctl"
METADATA_FIELDS = ("tenant", "vm_name", "flavor")
# element names inside <stackctl:instance> (the contract's names) for each spec field
_METADATA_TAGS = {"tenant": "tenant", "vm_name": "name", "flavor": "flavor"}

VIRT_TYPES = ("qemu", "kvm")
DISK_FORMATS = ("qcow2", "raw")
# cache='none' (O_DIRECT, guest flushes honoured): a flushed write survives a destroy or a
# host crash, and guest pages are not cached twice. 'unsafe' drops flushes, so a key written
# and synced just before a forced power-off could be lost. O_DIRECT needs a file system that
# supports it (ext4, xfs: yes; tmpfs: no), which the instance dir always is.
DISK_CACHE = "none"

ET.register_namespace(METADATA_PREFIX, METADATA_NS)


@dataclass(frozen=True)
class DomainSpec:
    """Everything about a VM's domain that stackctl decides; nothing libvirt adds."""

    name: str
    uuid: str
    vcpus: int
    memory_mb: int
    virt_type: str  # "qemu" (TCG) or "kvm"
    disk: str  # vda, the qcow2 overlay (path)
    network: str  # libvirt network name
    mac: str
    disk_format: str = "qcow2"
    seed: str | None = None  # vdb, the NoCloud ISO, read-only
    console_log: str | None = None  # serial console log, appended across starts
    kernel: str | None = None  # direct kernel boot when set
    initrd: str | None = None
    cmdline: str | None = None
    tenant: str | None = None
    vm_name: str | None = None
    flavor: str | None = None

    def validate(self):
        """Raise InvalidInput unless this spec can be built (parse_domain does not validate:
        it must project any domain, even one edited by hand)."""
        if self.virt_type not in VIRT_TYPES:
            raise InvalidInput(f"invalid virt_type {self.virt_type!r}: use one of {VIRT_TYPES}")
        if self.disk_format not in DISK_FORMATS:
            raise InvalidInput(
                f"invalid disk format {self.disk_format!r}: use one of {DISK_FORMATS}"
            )
        if (self.initrd or self.cmdline) and not self.kernel:
            raise InvalidInput("initrd and cmdline need a kernel (direct kernel boot)")
        return self

    def as_dict(self):
        """Plain dict for diffs and results."""
        return asdict(self)


def normalise_uuid(value):
    """Canonical lower-case, dashed form of a UUID; InvalidInput otherwise."""
    try:
        return str(uuidlib.UUID(str(value)))
    except ValueError:
        raise InvalidInput(f"invalid uuid {value!r}") from None


def mac_for(uuid):
    """The VM's MAC: 52:54:00 (QEMU's OUI) + the first 3 bytes of sha256(uuid).

    Derived rather than generated so that re-runs never change it (a regenerated MAC is the
    classic cause of 'changed' on every run) and the controller can compute it too.
    """
    digest = hashlib.sha256(normalise_uuid(uuid).encode("ascii")).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def normalise_mac(value):
    """Lower-case, colon-separated MAC; InvalidInput otherwise."""
    parts = str(value).replace("-", ":").lower().split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdef" for c in p)
                                  for p in parts):
        raise InvalidInput(f"invalid MAC address {value!r}")
    return ":".join(parts)


def _sub(parent, tag, text=None, **attrs):
    elem = ET.SubElement(parent, tag, {k: str(v) for k, v in attrs.items()})
    if text is not None:
        elem.text = str(text)
    return elem


def _os(root, spec):
    os_el = _sub(root, "os")
    _sub(os_el, "type", "hvm")
    if spec.kernel:
        _sub(os_el, "kernel", spec.kernel)
        if spec.initrd:
            _sub(os_el, "initrd", spec.initrd)
        if spec.cmdline:
            _sub(os_el, "cmdline", spec.cmdline)
    else:
        _sub(os_el, "boot", dev="hd")


def _metadata(root, spec):
    meta = _sub(root, "metadata")
    inst = _sub(meta, f"{{{METADATA_NS}}}instance")
    for field in METADATA_FIELDS:
        value = getattr(spec, field)
        if value is not None:
            _sub(inst, f"{{{METADATA_NS}}}{_METADATA_TAGS[field]}", value)


def _devices(root, spec):
    devices = _sub(root, "devices")
    disk = _sub(devices, "disk", type="file", device="disk")
    _sub(disk, "driver", name="qemu", type=spec.disk_format, cache=DISK_CACHE)
    _sub(disk, "source", file=spec.disk)
    _sub(disk, "target", dev="vda", bus="virtio")
    if spec.seed:
        seed = _sub(devices, "disk", type="file", device="disk")
        _sub(seed, "driver", name="qemu", type="raw")
        _sub(seed, "source", file=spec.seed)
        _sub(seed, "target", dev="vdb", bus="virtio")
        _sub(seed, "readonly")
    nic = _sub(devices, "interface", type="network")
    _sub(nic, "source", network=spec.network)
    _sub(nic, "mac", address=spec.mac)
    _sub(nic, "model", type="virtio")
    # A pty serial port with a log: `virsh console` still works, and the log file keeps
    # every boot (append='on'; without it each start truncates the file).
    serial = _sub(devices, "serial", type="pty")
    if spec.console_log:
        _sub(serial, "log", file=spec.console_log, append="on")
    _sub(serial, "target", port=0)
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port=0)
    # Without a random source a TCG guest (no RDRAND) waits 15-20 s for entropy.
    rng = _sub(devices, "rng", model="virtio")
    _sub(rng, "backend", "/dev/urandom", model="random")
    _sub(devices, "memballoon", model="none")


def build_domain_xml(spec):
    """The domain XML for ``spec`` (a string), built with ElementTree."""
    root = ET.Element("domain", type=spec.virt_type)
    _sub(root, "name", spec.name)
    _sub(root, "uuid", spec.uuid)
    _metadata(root, spec)
    _sub(root, "memory", spec.memory_mb, unit="MiB")
    _sub(root, "vcpu", spec.vcpus)
    _os(root, spec)
    features = _sub(root, "features")
    _sub(features, "acpi")  # ACPI power button: graceful shutdown
    _sub(features, "apic")
    if spec.virt_type == "kvm":
        _sub(root, "cpu", mode="host-passthrough")
    _sub(root, "clock", offset="utc")
    _sub(root, "on_poweroff", "destroy")
    _sub(root, "on_reboot", "restart")
    _sub(root, "on_crash", "destroy")
    _devices(root, spec)
    return ET.tostring(root, encoding="unicode")


_UNIT_KIB = {
    "b": 1 / 1024, "bytes": 1 / 1024, "k": 1, "kib": 1, "kb": 1000 / 1024,
    "m": 1024, "mib": 1024, "mb": 1000**2 / 1024, "g": 1024**2, "gib": 1024**2,
    "gb": 1000**3 / 1024,
}


def _memory_mb(elem):
    if elem is None or not elem.text:
        return 0
    unit = elem.get("unit", "KiB").lower()
    if unit not in _UNIT_KIB:
        raise InvalidInput(f"unknown memory unit {unit!r} in domain XML")
    return round(int(elem.text) * _UNIT_KIB[unit] / 1024)


def _text(root, path):
    elem = root.find(path)
    return elem.text if elem is not None and elem.text is not None else None


def _attr(elem, path, name):
    found = None if elem is None else elem.find(path)
    return None if found is None else found.get(name)


def _disk(devices, target):
    for disk in devices.findall("disk"):
        tgt = disk.find("target")
        if tgt is not None and tgt.get("dev") == target:
            return disk
    return None


def _console_log(devices):
    for serial in devices.findall("serial"):
        log = serial.find("log")
        if log is not None:
            return log.get("file")
        if serial.get("type") == "file":
            src = serial.find("source")
            return src.get("path") if src is not None else None
    return None


def parse_domain(xml):
    """Project libvirt's XML (string) onto a DomainSpec: only the fields we control."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise InvalidInput(f"unparsable domain XML: {exc}") from None
    devices = root.find("devices")
    if devices is None:
        devices = ET.Element("devices")
    vda = _disk(devices, "vda")
    vdb = _disk(devices, "vdb")
    nic = devices.find("interface")
    meta = root.find(f"metadata/{{{METADATA_NS}}}instance")
    extra = {
        field: None if meta is None else _text(meta, f"{{{METADATA_NS}}}{tag}")
        for field, tag in _METADATA_TAGS.items()
    }
    return DomainSpec(
        name=_text(root, "name"),
        uuid=_text(root, "uuid"),
        vcpus=int(_text(root, "vcpu") or 0),
        memory_mb=_memory_mb(root.find("memory")),
        virt_type=root.get("type"),
        disk=_attr(vda, "source", "file"),
        disk_format=_attr(vda, "driver", "type"),
        seed=_attr(vdb, "source", "file"),
        network=_attr(nic, "source", "network"),
        mac=(_attr(nic, "mac", "address") or "").lower() or None,
        console_log=_console_log(devices),
        kernel=_text(root, "os/kernel"),
        initrd=_text(root, "os/initrd"),
        cmdline=_text(root, "os/cmdline"),
        **extra,
    )
