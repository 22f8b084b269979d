"""VM administration: resize, rebuild, set-state (journaled host work; snapshot is in
``vm_snapshot``).

Everything a user can get wrong is checked before the journal opens (pure ``plan_*`` and
``check_*`` functions below, tested by tables), so a refused request touches nothing.
Journaled steps (``STACKCTL_CRASH_AT`` accepts these names):

- ``vm.resize``: ``domain`` (``stack_vm`` with the new sizes: a running VM whose CPU or RAM
  changes is stopped and started again; a disk only grows, online when running), ``finish``
  (the row's flavor and sizes). Recovery re-reads the domain, starts it again if the resize
  had stopped it, and records the sizes that are really there.
- ``vm.rebuild``: ``image`` (the image into the host's cache), ``domain`` (``stack_vm`` with
  ``rebuild_token``: the root disk is recreated from the image, once per rebuild), ``finish``.
  Recovery runs the same rebuild again (the token keeps it from wiping a second time).
- ``vm.snapshot``: see ``workflows.vm_snapshot``.
- ``vm.set-state``: ``read`` (with ``--from-host``), ``finish``. Nothing on a host changes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlalchemy import select
from stackcore.errors import BackendError, Conflict, InvalidInput, NotFound, StackError

from stackctl import tasks
from stackctl.app import App
from stackctl.journal import Journal, power_state
from stackctl.models import VM, HostImage, Image, new_uuid
from stackctl.progress import StepProgress
from stackctl.scheduler import (
    HostState,
    Policy,
    Request,
    Usage,
    disk_filter,
    ram_filter,
    usage_by_host,
    vcpu_filter,
)
from stackctl.workflows import image_store, lookup

GIB = 1024**3
SETTABLE_STATES = ("running", "stopped", "error")
ADMIN_FAULT = "set to error by an administrator (vm set-state)"


# --- pure plans ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Size:
    vcpus: int
    ram_mb: int
    disk_gb: int

    def __str__(self) -> str:
        return f"{self.vcpus} vCPU, {self.ram_mb} MiB RAM, {self.disk_gb} GiB disk"


@dataclass(frozen=True)
class ResizePlan:
    old: Size
    new: Size
    flavor: str
    state: str  # running | stopped (kept)

    @property
    def restart(self) -> bool:
        """CPU and RAM apply at the next boot: a running VM is stopped and started again."""
        return self.state == "running" and (self.old.vcpus, self.old.ram_mb) != (
            self.new.vcpus, self.new.ram_mb)

    @property
    def grows_disk(self) -> bool:
        return self.new.disk_gb > self.old.disk_gb

    def powers(self) -> tuple[str, ...]:
        """The stack_vm states to ask for, in order."""
        if self.state != "running":
            return ("stopped",)
        return ("stopped", "running") if self.restart else ("running",)


def plan_resize(name: str, state: str, old: Size, old_flavor: str, new: Size,
                flavor: str) -> ResizePlan:
    """What a resize does; InvalidInput for a disk shrink, Conflict for a VM that is not
    running or stopped or already of that size."""
    if state not in ("running", "stopped"):
        raise Conflict(f"VM {name!r} is {state}: only a running or stopped VM can be resized "
                       "(see 'vm set-state')")
    if new.disk_gb < old.disk_gb:
        raise InvalidInput(f"refusing to shrink the disk of VM {name!r} from {old.disk_gb} GiB "
                           f"to {new.disk_gb} GiB (flavor {flavor!r}): data would be lost; "
                           "nothing was changed")
    if new == old and flavor == old_flavor:
        raise Conflict(f"VM {name!r} already has flavor {flavor!r}: nothing to do")
    return ResizePlan(old, new, flavor, state)


def check_fits(host: HostState, usage: Usage, plan: ResizePlan, policy: Policy) -> None:
    """Conflict when the grown VM does not fit on its host (usage includes its old size).

    Only the dimensions that grow are checked: a host that is already over its ratios in RAM
    may still take a bigger disk."""
    others = Usage(usage.vcpus - plan.old.vcpus, usage.ram_mb - plan.old.ram_mb,
                   usage.disk_gb - plan.old.disk_gb, max(usage.instances - 1, 0))
    request = Request(plan.new.vcpus, plan.new.ram_mb, plan.new.disk_gb)
    checks = ((ram_filter, plan.new.ram_mb > plan.old.ram_mb),
              (vcpu_filter, plan.new.vcpus > plan.old.vcpus),
              (disk_filter, plan.grows_disk))
    for check, grows in checks:
        rejection = check(host, others, request, policy) if grows else None
        if rejection is not None:
            raise Conflict(f"flavor {plan.flavor!r} ({plan.new}) does not fit on {host.name}: "
                           f"beside its other VMs it {rejection.detail}; nothing was changed")


def check_rebuild_image(image: Image, disk_gb: int) -> None:
    """A bootable, active disk image that fits the VM's disk."""
    if image.disk_format not in ("qcow2", "raw"):
        raise InvalidInput(f"image {image.name!r} is a {image.disk_format} (kernel/ramdisk) "
                           "image, not a bootable disk image")
    if image.status != "active":
        raise Conflict(f"image {image.name!r} is {image.status}, not active")
    if image.virtual_size and image.virtual_size > disk_gb * GIB:
        raise InvalidInput(f"the VM's disk is {disk_gb} GiB, too small for image "
                           f"{image.name!r} ({-(-image.virtual_size // GIB)} GiB)")


def plan_set_state(current_fault: str | None, wanted: str) -> tuple[str, str | None]:
    """(state, fault) to record: running/stopped clear the fault; error keeps it (or says an
    administrator set it)."""
    if wanted not in SETTABLE_STATES:
        raise InvalidInput(f"invalid state {wanted!r}: use one of {', '.join(SETTABLE_STATES)}")
    if wanted == "error":
        return wanted, current_fault or ADMIN_FAULT
    return wanted, None


def state_from_host(domains: list[dict], domain: str, host: str) -> tuple[str, str | None]:
    """(state, fault) from ``stack_hypervisor_info``'s domain list."""
    found = next((d for d in domains if d.get("name") == domain), None)
    if found is None:
        return "error", f"domain {domain} is missing on {host}"
    return power_state(str(found.get("state", ""))), None


def recorded_size(actual: dict, plan_old: Size, plan_new: Size) -> tuple[Size, str]:
    """What an interrupted resize left (``stack_vm``'s ``diff.after``): the sizes really
    there and whether they are the ``new`` flavor's, the ``old`` one's or ``mixed``."""
    size = Size(int(actual["vcpus"]), int(actual["memory_mb"]), int(actual["disk_gb"]))
    for label, want in (("new", plan_new), ("old", plan_old)):
        if (size.vcpus, size.ram_mb) == (want.vcpus, want.ram_mb) and size.disk_gb == want.disk_gb:
            return size, label
    return size, "mixed"


# --- resize ----------------------------------------------------------------------------------


def resize(app: App, tenant: str | None, name: str, flavor: str,
           ui: StepProgress | None = None) -> dict:
    """Give VM ``name`` the sizes of ``flavor``: vCPU and RAM (a running VM is restarted to
    apply them), a bigger disk (never smaller). The row changes only after the host did."""
    ui = ui or StepProgress("", enabled=False)
    with app.db.read() as session:
        vm = lookup.vm(session, lookup.tenant(session, tenant), name)
        target = lookup.flavor(session, flavor)
        _need_host(vm)
        plan = plan_resize(name, vm.state, Size(vm.vcpus, vm.ram_mb, vm.disk_gb),
                           vm.flavor.name, Size(target.vcpus, target.ram_mb, target.disk_gb),
                           target.name)
        host = vm.host
        state = HostState(host.name, host.vcpus, host.ram_mb, host.disk_gb, host.enabled)
        check_fits(state, usage_by_host(session).get(host.name, Usage()), plan, app.policy)
        uuid, tenant_id, host_name = vm.uuid, vm.tenant_id, host.name
    journal = Journal.open(app.db, "vm.resize", vm_uuid=uuid, tenant_id=tenant_id,
                           exclusive=True, params={
                               "name": name, "flavor_id": target.id, "old_flavor_id": vm.flavor_id,
                               "old": asdict(plan.old), "new": asdict(plan.new),
                               "was": plan.state})
    try:
        with journal.step("domain"):
            ui.step(_resize_words(plan, host_name))
            with app.db.read() as session:
                row = session.get(VM, uuid)
                calls = [tasks.vm_resized(row, power, vcpus=plan.new.vcpus,
                                          ram_mb=plan.new.ram_mb, disk_gb=plan.new.disk_gb,
                                          flavor=plan.flavor) for power in plan.powers()]
            results = app.runner.run_tasks(host_name, calls, ui.task, label=journal.label)
            if results[-1].get("restart_required"):
                raise BackendError(f"{host_name} kept the old definition running")
        with journal.step("finish"), app.db.write() as session:
            row = session.get(VM, uuid)
            row.flavor_id, row.vcpus = target.id, plan.new.vcpus
            row.ram_mb, row.disk_gb = plan.new.ram_mb, plan.new.disk_gb
            _record_result(row, plan.powers()[-1], results[-1])
            result = row.to_dict()
        journal.finish("done")
        return result
    except StackError as exc:
        _settle_after_failure(app, journal, uuid, "resize", exc, _recover_resize, ui)
        raise


def _resize_words(plan: ResizePlan, host: str) -> str:
    what = f"resizing to {plan.flavor} ({plan.new}) on {host}"
    if plan.restart:
        return f"{what}: stopping the VM and starting it again to apply CPU/RAM"
    if plan.state == "running":
        return f"{what} (disk grows online; the VM keeps running)"
    return what


def _recover_resize(session, runner, op, progress):
    """Re-read the domain; start it again if the resize had stopped it; record its sizes."""
    params = op.params or {}
    vm = session.get(VM, op.vm_uuid) if op.vm_uuid else None
    if vm is None or vm.host is None:
        return _close(session, op, "finished: the VM no longer exists")
    host, domain, label = vm.host.name, vm.domain, vm.name
    session.commit()  # no transaction stays open while the host works
    try:
        actual = _read_domain(runner, host, domain, progress, op)
    except NotFound as exc:
        vm = session.get(VM, op.vm_uuid)
        vm.state, vm.fault = "error", str(exc)
        return _close(session, op, f"recorded error: {exc}", label)
    started = ""
    if actual.get("state") == "stopped" and params.get("was") == "running":
        results = runner.run_tasks(host, [tasks.vm_power_only(domain, "running")], progress,
                                   label=str(op.id))
        actual = dict(actual, state="running", address=(results[-1].get("vm") or {})
                      .get("address"))
        started = ", started it again"
    size, which = recorded_size(actual, Size(**params["old"]), Size(**params["new"]))
    vm = session.get(VM, op.vm_uuid)
    vm.vcpus, vm.ram_mb, vm.disk_gb = size.vcpus, size.ram_mb, size.disk_gb
    if which == "new":
        vm.flavor_id = params["flavor_id"]
    elif which == "old":
        vm.flavor_id = params["old_flavor_id"]
    vm.state = power_state(str(actual.get("state") or ""))
    vm.fault = None if which != "mixed" else "resize interrupted: sizes differ from any flavor"
    if actual.get("address"):
        vm.address = actual["address"]
    return _close(session, op, f"re-read the domain{started}: {which} sizes ({size}), "
                  f"{vm.state}", label)


def _read_domain(runner, host, domain, progress, op) -> dict:
    """``stack_vm state=present`` with only a name changes nothing and reports the real
    spec and power state (``diff.after``)."""
    try:
        results = runner.run_tasks(host, [tasks.vm_power_only(domain, "present")], progress,
                                   label=str(op.id))
    except BackendError as exc:
        if "domain does not exist" in str(exc):  # stack_vm's NotFound for a power-only call
            raise NotFound(f"domain {domain} is missing on {host}") from None
        raise
    after = dict((results[-1].get("diff") or {}).get("after") or {})
    if after.get("state") in (None, "absent"):
        raise NotFound(f"domain {domain} is missing on {host}")
    after["address"] = (results[-1].get("vm") or {}).get("address")
    return after


# --- rebuild ---------------------------------------------------------------------------------


def rebuild(app: App, tenant: str | None, name: str, image: str | None = None,
            ui: StepProgress | None = None) -> dict:
    """Recreate VM ``name``'s root disk from its image (or ``image``); the old disk's data is
    gone. uuid, MAC (so the address), name, keypair and flavor stay."""
    ui = ui or StepProgress("", enabled=False)
    with app.db.read() as session:
        owner = lookup.tenant(session, tenant)
        vm = lookup.vm(session, owner, name)
        _need_host(vm)
        if vm.state not in ("running", "stopped", "error"):
            raise Conflict(f"VM {name!r} is {vm.state}: wait for it or see 'vm set-state'")
        new_image = lookup.image(session, owner, image) if image else vm.image
        check_rebuild_image(new_image, vm.disk_gb)
        power = "stopped" if vm.state == "stopped" else "running"
        uuid, tenant_id, host, image_id = vm.uuid, vm.tenant_id, vm.host.name, new_image.id
    token = new_uuid()
    journal = Journal.open(app.db, "vm.rebuild", vm_uuid=uuid, tenant_id=tenant_id,
                           exclusive=True, params={"name": name, "image_id": image_id,
                                                   "token": token, "power": power})

    touched = False

    def on_task(event):
        nonlocal touched
        ui.task(event)
        if event.kind == "start" and event.task.startswith("rebuild ") and not touched:
            touched = True
            ui.step(f"recreating the disk on {host} (its data is discarded)"
                    + (" and booting" if power == "running" else ""))
            journal.advance("domain")

    try:
        with journal.step("image"):
            ui.step(f"caching the image on {host}")
            calls = _rebuild_calls(app, uuid, image_id, power, token)
            results = app.runner.run_tasks(host, calls, on_task, label=journal.label)
        with journal.step("finish"), app.db.write() as session:
            row = session.get(VM, uuid)
            row.image_id = image_id
            _record_result(row, power, results[-1])
            _remember_cached(session, row)
            result = row.to_dict()
        journal.finish("done")
        return result
    except StackError as exc:
        _settle_after_failure(app, journal, uuid, "rebuild", exc, None, ui,
                              state="error" if touched else None)
        raise


def _rebuild_calls(app: App, uuid: str, image_id: str, power: str, token: str,
                   full: bool = False) -> list:
    """Cache tasks (for parts the host is not known to hold; all with ``full``) + stack_vm."""
    with app.db.read() as session:
        vm, image = session.get(VM, uuid), session.get(Image, image_id)
        if image is None:
            raise NotFound("the rebuild's image was deleted")
        known = set() if full else set(session.scalars(
            select(HostImage.sha256).where(HostImage.host_id == vm.host_id)))
        parts = [p for p in (image, image.kernel, image.ramdisk)
                 if p is not None and p.sha256 not in known]
        cache = [tasks.cache_image(p, **image_store.host_source(app, p.path)) for p in parts]
        return [*cache, tasks.vm_rebuilt(vm, image, power, token)]


def _recover_rebuild(session, runner, op, progress):
    """Run the same rebuild again (same token: the disk is not wiped twice) and record it."""
    params = op.params or {}
    vm = session.get(VM, op.vm_uuid) if op.vm_uuid else None
    if vm is None or vm.host is None:
        return _close(session, op, "finished: the VM no longer exists")
    host, label = vm.host.name, vm.name
    session.commit()
    app = _app_for(runner)
    calls = _rebuild_calls(app, op.vm_uuid, params["image_id"], params["power"],
                           params["token"], full=True)
    results = runner.run_tasks(host, calls, progress, label=str(op.id))
    vm = session.get(VM, op.vm_uuid)
    vm.image_id = params["image_id"]
    _record_result(vm, params["power"], results[-1])
    return _close(session, op, f"finished the rebuild: {vm.state}", label)


def _remember_cached(session, vm: VM) -> None:
    """The host now holds the VM's image parts (later creates and rebuilds skip caching)."""
    known = set(session.scalars(select(HostImage.sha256)
                                .where(HostImage.host_id == vm.host_id)))
    parts = {p.sha256 for p in (vm.image, vm.image.kernel, vm.image.ramdisk) if p is not None}
    session.add_all(HostImage(host_id=vm.host_id, sha256=sha) for sha in parts - known)


# --- set-state -------------------------------------------------------------------------------


def set_state(app: App, tenant: str | None, name: str, state: str | None = None,
              from_host: bool = False, ui: StepProgress | None = None) -> dict:
    """Admin fix for a VM stuck in building/deleting/error: record ``state`` (running and
    stopped clear the fault, error keeps it), or with ``from_host`` what its host really runs.
    Nothing on the host changes. Refused while another operation works on the VM."""
    ui = ui or StepProgress("", enabled=False)
    if from_host == (state is not None):
        raise InvalidInput("give --state or --from-host (one of them)")
    if state is not None:
        plan_set_state(None, state)  # validates before anything opens
    with app.db.read() as session:
        vm = lookup.vm(session, lookup.tenant(session, tenant), name)
        if from_host:
            _need_host(vm)
        uuid, tenant_id, domain = vm.uuid, vm.tenant_id, vm.domain
        host = vm.host.name if vm.host else None
    journal = Journal.open(app.db, "vm.set-state", vm_uuid=uuid, tenant_id=tenant_id,
                           exclusive=True, params={"name": name, "state": state})
    try:
        found = None
        if from_host:
            with journal.step("read"):
                ui.step(f"reading the state of {domain} on {host}")
                results = app.runner.run_tasks(host, [tasks.hypervisor_info()], ui.task,
                                               label=journal.label)
                domains = (results[0].get("hypervisor") or {}).get("domains") or []
                found = state_from_host(domains, domain, host)
        with journal.step("finish"), app.db.write() as session:
            row = session.get(VM, uuid)
            row.state, row.fault = found or plan_set_state(row.fault, state)
            result = row.to_dict()
        journal.finish("done")
        return result
    except StackError as exc:
        journal.finish("failed", str(exc))
        raise


def _recover_set_state(session, runner, op, progress):
    return _close(session, op, "finished: set-state changes one row in one transaction; "
                  "nothing to finish")


# --- shared helpers --------------------------------------------------------------------------


def _need_host(vm: VM) -> None:
    if vm.host is None:
        raise Conflict(f"VM {vm.name!r} has no host")


def _record_result(vm: VM, state: str, result: dict) -> None:
    info = result.get("vm") or {}
    vm.state, vm.fault = state, None
    vm.mac = info.get("mac") or vm.mac
    if info.get("address"):
        vm.address = info["address"]


def _close(session, op, action: str, label: str | None = None):
    op.status = "done"
    op.error = f"interrupted at step {op.step!r}; {action}"
    session.commit()
    return action, "done", label or (op.params or {}).get("name")


def _app_for(runner) -> App:
    """An App for a recovery handler (it gets a runner, not the App)."""
    from stackctl import config

    return App(getattr(runner, "config", None) or config.load(), runner=runner)


def _settle_after_failure(app: App, journal: Journal, uuid: str, verb: str, exc: StackError,
                          settle, ui: StepProgress, state: str | None = None) -> None:
    """Record the fault; re-read what the host really has where a handler can (``settle``)."""
    from stackctl.models import Operation

    try:
        if settle is not None:
            with app.db.write() as session:
                settle(session, app.runner, session.get(Operation, journal.op_id), ui.task)
    except StackError:
        pass  # the fault below says what failed; the row keeps what it had
    with app.db.write() as session:
        row = session.get(VM, uuid)
        if row is not None:
            row.fault = f"{verb} failed: {exc}"[:2000]
            if state:
                row.state = state
    journal.finish("failed", str(exc))


RECOVERY: dict = {
    "vm.resize": _recover_resize,
    "vm.rebuild": _recover_rebuild,
    "vm.set-state": _recover_set_state,
}
