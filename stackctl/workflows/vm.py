"""VM lifecycle for a tenant: create, start, stop, reboot, delete (journaled host work through
the runner), show, list and console-log.

Everything a user can get wrong is checked before the journal opens, so a bad request never
touches a host. Journaled steps (``STACKCTL_CRASH_AT`` accepts these names):

- ``vm.create``: ``claim`` (scheduler picks a host, VM row inserted), ``image`` (image, kernel
  and ramdisk into the host's cache), ``domain`` (``stack_vm state=running``), ``finish``
  (address and state recorded). A failure rolls back at once; a crash is rolled back by
  ``stackctl recover`` (or the next state-changing command).
- ``vm.start``/``vm.stop``/``vm.reboot``: ``domain``, ``finish``.
- ``vm.delete``: ``mark`` (state deleting), ``domain`` (``stack_vm state=absent``), ``finish``
  (row removed).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import select
from stackcore import validate
from stackcore.errors import BackendError, Conflict, InvalidInput, StackError

from stackctl import tasks
from stackctl.app import App
from stackctl.journal import Journal
from stackctl.models import VM, HostImage, Image, new_uuid
from stackctl.progress import StepProgress
from stackctl.runner import Task
from stackctl.scheduler import ClaimRequest, claim
from stackctl.workflows import image_store, lookup

MAX_USER_DATA = 64 * 1024
GIB = 1024**3


@dataclass(frozen=True)
class CreateRequest:
    tenant: str | None
    name: str
    image: str
    flavor: str
    key: str
    user_data: str | None = None
    group: str | None = None  # a server group of the tenant
    wait: bool = True  # wait for the guest's DHCP address


def create(app: App, req: CreateRequest, ui: StepProgress | None = None) -> dict:
    """Create and boot a VM; returns it. Rolled back (nothing left) if any step fails."""
    ui = ui or StepProgress("", enabled=False)
    plan = _plan_create(app, req)
    journal = Journal.open(app.db, "vm.create", vm_uuid=plan.uuid, tenant_id=plan.tenant_id,
                           params={"name": plan.name})
    touched_domain = False

    def on_task(event):
        # One host run does both steps (each run pays Ansible's ~1 s start-up): the journal
        # enters "domain" when the run reaches the stack_vm task, before the module runs.
        nonlocal touched_domain
        ui.task(event)
        if event.kind == "start" and event.task == boot.title and not touched_domain:
            touched_domain = True
            ui.step(f"booting on {host}" + (" and waiting for its address" if req.wait else ""))
            journal.advance("domain")

    try:
        with journal.step("claim"):
            ui.step("choosing a host")
            with app.db.write() as session:
                vm = claim(session, plan, app.policy)
                host, host_id = vm.host.name, vm.host_id
                parts = _image_parts(vm.image)
                known = _known_cached(session, host_id)
                cache = [_cache_task(app, p) for p in parts if p.sha256 not in known]
                boot = tasks.vm_state(vm, "running",
                                      wait_timeout=tasks.DEFAULT_WAIT_TIMEOUT if req.wait else 0)
        with journal.step("image"):
            ui.step(f"caching the image on {host}")
            try:
                results = app.runner.run_tasks(host, [*cache, boot], on_task,
                                               label=journal.label)
            except BackendError as exc:
                if len(cache) == len(parts) or not _lost_from_cache(exc):
                    raise
                ui.step(f"{host} lost a cached image; caching it again")
                _remember_cached(app, host_id, [], forget=True)
                full_cache = [_cache_task(app, p) for p in parts]
                results = app.runner.run_tasks(host, [*full_cache, boot], on_task,
                                               label=journal.label)
            _remember_cached(app, host_id, [p.sha256 for p in parts])
        with journal.step("finish"):
            result = _record(app, plan.uuid, "running", results[-1])
        journal.finish("done")
        return result
    except StackError as exc:
        _undo_create(app, journal, plan.uuid, exc, touched_domain, ui)
        raise


def start(app: App, tenant: str | None, name: str, ui: StepProgress | None = None) -> dict:
    """Power a VM on (and wait for its address); also repairs a domain gone missing."""
    return _power(app, tenant, name, "vm.start", ("running",), ui)


def stop(app: App, tenant: str | None, name: str, ui: StepProgress | None = None) -> dict:
    """ACPI shutdown, forced off after the module's stop_timeout."""
    return _power(app, tenant, name, "vm.stop", ("stopped",), ui)


def reboot(app: App, tenant: str | None, name: str, ui: StepProgress | None = None) -> dict:
    """Stop (graceful, then forced) and start again, in one host run."""
    return _power(app, tenant, name, "vm.reboot", ("stopped", "running"), ui)


def delete(app: App, tenant: str | None, name: str, ui: StepProgress | None = None) -> dict:
    """Remove the domain, its disk, seed and log, then the row."""
    ui = ui or StepProgress("", enabled=False)
    uuid, tenant_id, host, domain = _locate(app, tenant, name)
    journal = Journal.open(app.db, "vm.delete", vm_uuid=uuid, tenant_id=tenant_id,
                           exclusive=True)
    try:
        with journal.step("mark"), app.db.write() as session:
            session.get(VM, uuid).state = "deleting"
        with journal.step("domain"):
            if host is not None:
                ui.step(f"removing {domain} from {host}")
                app.runner.run_tasks(host, [tasks.vm_absent(domain, uuid)], ui.task,
                                     label=journal.label)
        with journal.step("finish"), app.db.write() as session:
            session.delete(session.get(VM, uuid))
        journal.finish("done")
    except StackError as exc:
        _set_fault(app, uuid, f"delete failed: {exc}", state="error")
        journal.finish("failed", str(exc))
        raise
    return {"name": name, "uuid": uuid, "deleted": True}


def show(app: App, tenant: str | None, name: str) -> dict:
    validate.vm_name(name)
    with app.db.read() as session:
        return lookup.vm(session, lookup.tenant(session, tenant), name).to_dict()


def list_vms(app: App, tenant: str | None) -> list[dict]:
    with app.db.read() as session:
        owner = lookup.tenant(session, tenant)
        rows = session.scalars(select(VM).where(VM.tenant_id == owner.id).order_by(VM.name))
        return [vm.to_dict() for vm in rows]


def console_log(app: App, tenant: str | None, name: str) -> str:
    """The guest's serial console log, read on its host with ``slurp``."""
    validate.vm_name(name)
    with app.db.read() as session:
        vm = lookup.vm(session, lookup.tenant(session, tenant), name)
        if vm.host is None:
            raise Conflict(f"VM {name!r} has no host yet")
        host, path = vm.host.name, tasks.console_log_path(vm)
    results = app.runner.run_tasks(host, [tasks.slurp(path)], label="console")
    try:
        data = base64.b64decode(results[0]["content"])
    except (KeyError, IndexError, ValueError) as exc:
        raise BackendError(f"unexpected answer from slurp on {host}") from exc
    return data.decode("utf-8", errors="replace")


# --- helpers -------------------------------------------------------------------------------


def _plan_create(app: App, req: CreateRequest) -> ClaimRequest:
    """Validate the whole request (names, tenant, flavor, image, key, group, user_data)."""
    validate.vm_name(req.name)
    user_data = req.user_data
    if user_data is not None and len(user_data.encode("utf-8")) > MAX_USER_DATA:
        raise InvalidInput(f"user data is larger than {MAX_USER_DATA // 1024} KiB")
    with app.db.read() as session:
        owner = lookup.tenant(session, req.tenant)
        flavor = lookup.flavor(session, req.flavor)
        image = lookup.image(session, owner, req.image)
        keypair = lookup.keypair(session, owner, req.key)
        group = lookup.server_group(session, owner, req.group) if req.group else None
        _check_bootable(image, flavor)
        if session.scalar(select(VM.uuid).where(VM.tenant_id == owner.id, VM.name == req.name)):
            raise Conflict(f"a VM named {req.name!r} already exists")
        uuid = new_uuid()
        return ClaimRequest(
            uuid=uuid, tenant_id=owner.id, name=req.name, flavor_id=flavor.id,
            image_id=image.id, keypair_id=keypair.id, vcpus=flavor.vcpus, ram_mb=flavor.ram_mb,
            disk_gb=flavor.disk_gb, mac=_mac_for(uuid), ssh_public_key=keypair.public_key,
            user_data=user_data or None, group_id=group.id if group else None,
        )


def _check_bootable(image: Image, flavor) -> None:
    if image.disk_format not in ("qcow2", "raw"):
        raise InvalidInput(f"image {image.name!r} is a {image.disk_format} (kernel/ramdisk) "
                           "image, not a bootable disk image")
    if image.status != "active":
        raise Conflict(f"image {image.name!r} is {image.status}, not active")
    if image.virtual_size and image.virtual_size > flavor.disk_gb * GIB:
        raise InvalidInput(f"flavor {flavor.name!r} has a {flavor.disk_gb} GiB disk, too small "
                           f"for image {image.name!r} ({-(-image.virtual_size // GIB)} GiB)")


def _mac_for(uuid: str) -> str:
    from stackcore.domain import mac_for  # contracts.md: the module derives the same MAC

    return mac_for(uuid)


def _image_parts(image: Image) -> list[Image]:
    """The image and, for AMI/AKI/ARI-style images, its kernel and ramdisk."""
    return [part for part in (image, image.kernel, image.ramdisk) if part is not None]


def _cache_task(app: App, image: Image) -> Task:
    """Ensure ``image`` is in the host's cache: from Swift by temp URL, or (local store, aio
    host sharing the controller's filesystem) from the store path (``image_store``)."""
    return tasks.cache_image(image, **image_store.host_source(app, image.path))


def _known_cached(session, host_id: int) -> set[str]:
    rows = session.scalars(select(HostImage.sha256).where(HostImage.host_id == host_id))
    return set(rows)


def _remember_cached(app: App, host_id: int, shas: list[str], forget: bool = False) -> None:
    """Record what the host now holds (or, with ``forget``, drop everything recorded)."""
    with app.db.write() as session:
        if forget:
            session.execute(sa.delete(HostImage).where(HostImage.host_id == host_id))
            return
        known = _known_cached(session, host_id)
        session.add_all(HostImage(host_id=host_id, sha256=sha) for sha in set(shas) - known)


def _lost_from_cache(exc: StackError) -> bool:
    """stack_vm's error when a base image, kernel or ramdisk file is not on the host."""
    text = str(exc)
    return "does not exist" in text and str(tasks.HOST_IMAGE_CACHE) in text


def _record(app: App, uuid: str, state: str, result: dict) -> dict:
    """Store what the module reported after a successful run."""
    info = result.get("vm") or {}
    with app.db.write() as session:
        vm = session.get(VM, uuid)
        vm.state, vm.fault = state, None
        vm.mac = info.get("mac") or vm.mac
        if info.get("address"):
            vm.address = info["address"]
        session.flush()
        return vm.to_dict()


def _set_fault(app: App, uuid: str, fault: str, state: str | None = None) -> None:
    with app.db.write() as session:
        vm = session.get(VM, uuid)
        if vm is not None:
            vm.fault = fault[:2000]
            if state:
                vm.state = state


def _undo_create(app: App, journal: Journal, uuid: str, exc: StackError, touched: bool,
                 ui: StepProgress) -> None:
    """Roll a failed create back now; if that fails too, leave the VM in error for delete."""
    with app.db.read() as session:
        vm = session.get(VM, uuid)
        host = vm.host.name if vm is not None and vm.host is not None else None
    if vm is None:
        journal.finish("failed", str(exc))
        return
    try:
        if touched and host is not None:
            ui.step(f"rolling back on {host}")
            app.runner.run_tasks(host, [tasks.vm_absent(f"stk-{uuid}", uuid)], ui.task,
                                 label=journal.label)
        with app.db.write() as session:
            session.delete(session.get(VM, uuid))
    except StackError as undo:
        _set_fault(app, uuid, f"create failed: {exc}; rollback failed: {undo}", state="error")
        journal.finish("failed", f"{exc}; rollback failed: {undo}")
        return
    journal.finish("failed", f"{exc} (rolled back)")


def _locate(app: App, tenant: str | None, name: str) -> tuple[str, int, str | None, str]:
    validate.vm_name(name)
    with app.db.read() as session:
        vm = lookup.vm(session, lookup.tenant(session, tenant), name)
        return vm.uuid, vm.tenant_id, vm.host.name if vm.host else None, vm.domain


def _power(app: App, tenant: str | None, name: str, kind: str, states: tuple[str, ...],
           ui: StepProgress | None) -> dict:
    ui = ui or StepProgress("", enabled=False)
    uuid, tenant_id, host, _domain = _locate(app, tenant, name)
    if host is None:
        raise Conflict(f"VM {name!r} has no host")
    journal = Journal.open(app.db, kind, vm_uuid=uuid, tenant_id=tenant_id, exclusive=True)
    try:
        with journal.step("domain"):
            ui.step(" then ".join({"running": "starting", "stopped": "stopping"}[s]
                                  for s in states) + f" on {host}")
            with app.db.read() as session:
                vm = session.get(VM, uuid)
                calls = [tasks.vm_state(vm, state) for state in states]
            results = app.runner.run_tasks(host, calls, ui.task, label=journal.label)
        with journal.step("finish"):
            result = _record(app, uuid, states[-1], results[-1])
        journal.finish("done")
        return result
    except StackError as exc:
        _set_fault(app, uuid, f"{kind.split('.')[1]} failed: {exc}")
        journal.finish("failed", str(exc))
        raise
