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
    args.update(boot_args(image))
    if vm.user_data:
        args["user_data"] = vm.user_data
    return Task("stack_vm", args, name=f"{state} {vm.name}")


def boot_args(image: Image) -> dict:
    """Direct kernel boot: the kernel, ramdisk and command line an AMI-style image names."""
    args = {}
    if image.kernel is not None:
        args["kernel"] = cached_path(image.kernel)
        if image.ramdisk is not None:
            args["initrd"] = cached_path(image.ramdisk)
        if image.cmdline:
            args["cmdline"] = image.cmdline
    return args


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


# --- VM administration (resize, rebuild, snapshot) --------------------------------------------

HOST_SNAPSHOTS = PurePosixPath("/var/lib/stackctl/snapshots")


def vm_resized(vm: VM, state: str, *, vcpus: int, ram_mb: int, disk_gb: int, flavor: str,
               wait_timeout: int = DEFAULT_WAIT_TIMEOUT) -> Task:
    """``stack_vm`` with the VM's spec at new sizes (the row keeps the old ones until the host
    has done it)."""
    task = vm_state(vm, state, wait_timeout=wait_timeout)
    args = dict(task.args, vcpus=vcpus, memory_mb=ram_mb, disk_gb=disk_gb, flavor=flavor)
    return Task("stack_vm", args, name=f"{state} {vm.name} as {flavor}")


def vm_rebuilt(vm: VM, image: Image, state: str, token: str,
               wait_timeout: int = DEFAULT_WAIT_TIMEOUT) -> Task:
    """``stack_vm`` recreating the VM's disk from ``image`` (kernel, ramdisk and cmdline from
    it too) once per ``token``."""
    task = vm_state(vm, state, wait_timeout=wait_timeout)
    args = {k: v for k, v in task.args.items() if k not in ("kernel", "initrd", "cmdline")}
    args.update(image=cached_path(image), image_format=image.disk_format, rebuild_token=token)
    args.update(boot_args(image))
    return Task("stack_vm", args, name=f"rebuild {vm.name} from {image.name}")


def vm_power_only(vm_domain: str, state: str, *, wait_timeout: int = DEFAULT_WAIT_TIMEOUT) -> Task:
    """``stack_vm`` with only name and state: ``present`` reads the domain without changing it
    (its ``diff.after`` has the real vcpus, memory_mb, disk_gb and power state)."""
    return Task("stack_vm", {"name": vm_domain, "state": state, "wait_timeout": wait_timeout},
                name=f"{state} {vm_domain}")


def snapshot_path(image_id: str) -> str:
    """Where a VM snapshot is flattened on its host before its upload."""
    return str(HOST_SNAPSHOTS / f"{image_id}.qcow2")


def vm_snapshot(vm_domain: str, path: str, *, upload_url: str | None = None,
                sha256: str | None = None) -> Task:
    """``stack_vm_snapshot``: flatten the (stopped) VM's disk to ``path`` on its host; with
    ``upload_url``, PUT it there (its ``sha256`` as reported by the flattening run)."""
    args: dict = {"name": vm_domain, "path": path, "state": "present"}
    if upload_url:
        args.update(upload_url=upload_url, sha256=sha256)
    return Task("stack_vm_snapshot", args,
                name=f"upload snapshot of {vm_domain}" if upload_url
                else f"flatten the disk of {vm_domain}")


def vm_snapshot_absent(vm_domain: str, path: str) -> Task:
    return Task("stack_vm_snapshot", {"name": vm_domain, "path": path, "state": "absent"},
                name=f"remove snapshot file {path}")


# --- moving VMs (stack_vm_migrate; the hypervisor role sets up the host-to-host SSH) ---------

MIGRATION_TIMEOUT = 900


def vm_migrate(vm: VM, mode: str, target_address: str,
               timeout: int = MIGRATION_TIMEOUT) -> Task:
    """Run on the VM's source host: ``live`` migration or ``copy`` of a stopped VM's disk."""
    return Task("stack_vm_migrate",
                {"name": vm.domain, "mode": mode, "target": target_address,
                 "timeout": timeout},
                name=f"{'live-migrate' if mode == 'live' else 'copy the disk of'} {vm.name}")


def vm_reserve_address(vm: VM) -> Task:
    """Run on a live move's target once the domain is defined there: keep the guest's address
    for it in that host's DHCP (refused when another guest there holds it)."""
    return Task("stack_vm_migrate", {"name": vm.domain, "mode": "reserve", "address": vm.address},
                name=f"reserve {vm.address} for {vm.name}")


def vm_settle(vm_domain: str, timeout: int = MIGRATION_TIMEOUT) -> Task:
    """Wait for any module or libvirt job still working on the domain; report its state."""
    return Task("stack_vm_migrate", {"name": vm_domain, "mode": "settle", "timeout": timeout},
                name=f"settle {vm_domain}")
