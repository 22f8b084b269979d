"""Module calls the controller makes, built from rows: one place that knows the modules'
parameters (``docs/contracts.md``). Workflows and recovery both use these."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from stackctl.runner import HostVar, Task

if TYPE_CHECKING:
    from stackctl.models import VM, Image

# Paths on a hypervisor host (contracts.md).
HOST_IMAGE_CACHE = PurePosixPath("/var/lib/stackctl/images")
HOST_INSTANCES = PurePosixPath("/var/lib/stackctl/instances")
DEFAULT_WAIT_TIMEOUT = 120


def cached_path(image: Image) -> str:
    """Where ``stack_image_cache`` keeps an image on a host: named by its sha256 only."""
    return str(HOST_IMAGE_CACHE / image.sha256)


def console_log_path(vm: VM) -> str:
    return str(HOST_INSTANCES / vm.domain / "console.log")


def cache_image(image: Image, src: str | None = None, url: str | None = None) -> Task:
    """Ensure ``image`` is in the host's cache, copied from ``src`` (a path on that host) or
    downloaded from ``url`` (a temp URL); the module checks the sha256 either way."""
    source = {"src": src} if src is not None else {"url": url}
    return Task("stack_image_cache",
                {"sha256": image.sha256, "format": image.disk_format, **source,
                 "state": "present"},
                name=f"cache {image.disk_format} image {image.name}")


def vm_state(vm: VM, state: str, *, wait_timeout: int = DEFAULT_WAIT_TIMEOUT) -> Task:
    """``stack_vm`` with the VM's complete desired spec and power ``state``.

    The whole spec is sent every time, not just the state: the module reconciles, so a start
    also repairs a domain that went missing.
    """
    image = vm.image
    args: dict = {
        "name": vm.domain,
        "state": state,
        "uuid": vm.uuid,
        "hostname": vm.name,
        "tenant": vm.tenant.name,
        "vm_name": vm.name,
        "flavor": vm.flavor.name,
        "vcpus": vm.vcpus,
        "memory_mb": vm.ram_mb,
        "disk_gb": vm.disk_gb,
        "image": cached_path(image),
        "image_format": image.disk_format,
        "mac": vm.mac,
        "ssh_authorized_keys": [vm.ssh_public_key] if vm.ssh_public_key else [],
        "wait_timeout": wait_timeout,
        "virt_type": VIRT_TYPE,
    }
    if image.kernel is not None:
        args["kernel"] = cached_path(image.kernel)
        if image.ramdisk is not None:
            args["initrd"] = cached_path(image.ramdisk)
        if image.cmdline:
            args["cmdline"] = image.cmdline
    if vm.user_data:
        args["user_data"] = vm.user_data
    return Task("stack_vm", args, name=f"{state} {vm.name}")


def vm_absent(vm_domain: str, uuid: str | None = None) -> Task:
    """Remove a domain with its disk, seed and log (idempotent; waits on the domain's lock)."""
    args = {"name": vm_domain, "state": "absent"}
    if uuid:
        args["uuid"] = uuid
    return Task("stack_vm", args, name=f"remove {vm_domain}")


# The inventory may force kvm or qemu per host (roles/hypervisor: hypervisor_virt_type).
VIRT_TYPE = HostVar("hypervisor_virt_type", "auto")


def hypervisor_info() -> Task:
    return Task("stack_hypervisor_info", {"virt_type": VIRT_TYPE}, name="hypervisor info")


def slurp(path: str) -> Task:
    return Task("ansible.builtin.slurp", {"src": path}, name=f"read {path}")
