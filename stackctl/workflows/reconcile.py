"""``stackctl reconcile``: compare the controller's state with every host, report the drift
and, with ``fix``, repair what can be repaired safely.

Facts come from one multi-host run of ``stack_hypervisor_info`` over the hypervisors (domains
and their states, instance disks, cached images) and, where object storage is deployed, one
``find`` run over the Swift hosts (ring checksums, compared with the controller's builder files
read here, as ``copy`` reads them). ``stackctl.drift`` turns rows and facts into drift items;
this module gathers, then applies the fixes (see ``stackctl.drift`` for what each kind gets).

A ``--fix`` run is journaled (``reconcile``: ``facts``, ``fix``). Every fix is idempotent and
re-checks the row it changes, so recovery of an interrupted run simply marks it done; the next
``stackctl reconcile --fix`` finishes the job.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy import select
from stackcore.errors import NotFound, StackError

from stackctl import drift, tasks
from stackctl.drift import Drift, HostFacts, RingFacts, VmRow
from stackctl.journal import Journal
from stackctl.models import VM, Host, HostImage, Operation
from stackctl.progress import StepProgress
from stackctl.runner import HostVar, Task
from stackctl.workflows import storage
from stackctl.workflows.hosts import HYPERVISOR_GROUP, NOT_IN_INVENTORY

if TYPE_CHECKING:
    from stackctl.app import App

KIND = "reconcile"
DRIFT_EXIT = 6  # errors.py uses 1-5: a distinct code for "drift remains"
FIX_ORDER = (drift.FORGET_IMAGE, drift.RECORD_STATE, drift.MARK_ERROR, drift.REDEFINE,
             drift.COPY_RINGS)


class DriftRemains(StackError):
    """Drift was found and is not (all) fixed; the report says what."""

    exit_code = DRIFT_EXIT


@dataclass
class Report:
    items: list[Drift] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)  # hosts asked

    @property
    def remaining(self) -> list[Drift]:
        return [item for item in self.items if not item.fixed]


@dataclass
class _Scope:
    """Which hosts to ask, and what the controller recorded about them."""

    hypervisors: list[str]
    absent: dict[str, str]  # host rows with VMs the inventory no longer has -> why
    cluster: storage.Cluster | None = None
    builder_files: list[dict] = field(default_factory=list)
    vms: list[VmRow] = field(default_factory=list)
    busy: set[str] = field(default_factory=set)
    images: dict[str, set[str]] = field(default_factory=dict)


def reconcile(app: App, *, fix: bool = False, host: str | None = None,
              ui: StepProgress | None = None) -> Report:
    """The drift between the controller and its hosts (only ``host`` when given); with ``fix``
    each fixable item is repaired and says what was done."""
    ui = ui or StepProgress("", enabled=False)
    report = Report()
    journal = Journal.open(app.db, KIND, params={"host": host}) if fix else None
    try:
        with _step(journal, "facts"):
            scope = _scope(app, host, report.notes)
            facts, rings = _gather(app, scope, ui, journal.label if journal else KIND)
            report.hosts = sorted({*facts, *rings})
            report.items = find_drift(scope, facts, rings)
        if scope.busy:
            report.notes.append(f"{len(scope.busy)} VM(s) not checked: an operation on them is "
                                "still running")
        if journal is not None:
            with journal.step("fix"):
                report.items = _fix_all(app, report.items, facts, scope, ui, journal.label)
            journal.finish("done")
    except StackError as exc:
        if journal is not None:
            journal.finish("failed", str(exc))
        raise
    return report


def find_drift(scope: _Scope, facts: Mapping[str, HostFacts],
               rings: Mapping[str, RingFacts]) -> list[Drift]:
    """Every drift item, sorted (pure: rows and facts in)."""
    items = drift.vm_drift(scope.vms, facts, scope.busy)
    items += drift.image_drift(scope.images, facts)
    if scope.cluster is not None:
        items += drift.ring_drift(rings, scope.builder_files, scope.cluster.rings)
    return drift.merge(items)


# --- facts -----------------------------------------------------------------------------------


def _step(journal: Journal | None, name: str):
    return journal.step(name) if journal is not None else contextlib.nullcontext()


def _scope(app: App, host: str | None, notes: list[str]) -> _Scope:
    inventory = app.runner.inventory_hosts(HYPERVISOR_GROUP)
    scope = _read_rows(app)
    with app.db.read() as session:
        known = set(session.scalars(select(Host.name)))
    placed = {vm.host for vm in scope.vms if vm.host}
    scope.hypervisors = sorted(inventory)
    scope.absent = {name: f"{NOT_IN_INVENTORY}: its VMs were not checked"
                    for name in sorted(placed - set(inventory))}
    scope.cluster, scope.builder_files = _ring_scope(app, notes)
    if host is not None:
        ring_hosts = scope.cluster.ring_hosts if scope.cluster else []
        if host not in inventory and host not in known and host not in ring_hosts:
            raise NotFound(f"host {host!r} is neither in the inventory nor known to the "
                           "controller")
        scope.hypervisors = [h for h in scope.hypervisors if h == host]
        scope.absent = {h: why for h, why in scope.absent.items() if h == host}
        scope.images = {h: s for h, s in scope.images.items() if h == host}
        if scope.cluster is not None:
            scope.cluster = _only(scope.cluster, host)
    return scope


def _read_rows(app: App) -> _Scope:
    """VMs (every host's: their domain names are known everywhere), the VMs an operation is
    running on, and the images each host is recorded to hold."""
    scope = _Scope(hypervisors=[], absent={})
    with app.db.read() as session:
        for vm in session.scalars(select(VM)):
            scope.vms.append(VmRow(vm.uuid, vm.tenant.name, vm.name,
                                   vm.host.name if vm.host else None, vm.state))
        scope.busy = set(session.scalars(select(Operation.vm_uuid).where(
            Operation.status == "running", Operation.vm_uuid.is_not(None))))
        rows = session.execute(select(Host.name, HostImage.sha256).join(
            HostImage, HostImage.host_id == Host.id))
        for name, sha in rows:
            scope.images.setdefault(name, set()).add(sha)
    return scope


def _ring_scope(app: App, notes: list[str]) -> tuple[storage.Cluster | None, list[dict]]:
    """The Swift cluster and the builder's ring files with their sha256 (None: no object
    storage in the inventory, or its rings cannot be read here, which a note says)."""
    if not app.runner.inventory_hostvars(storage.NODE_GROUP):
        return None, []
    try:
        cluster = storage.load_cluster(app)
    except StackError as exc:
        notes.append(f"rings not checked: {exc}")
        return None, []
    files, why = builder_files(cluster.builder_dir, cluster.rings)
    if why:
        notes.append(f"rings not checked: {why}")
        return None, []
    return cluster, files


def builder_files(builder_dir: str, rings) -> tuple[list[dict], str | None]:
    """``find``-style ``[{path, checksum}]`` (sha256) of the builder's ring files."""
    files = []
    for ring in rings:
        path = os.path.join(builder_dir, f"{ring}.ring.gz")
        try:
            with open(path, "rb") as handle:
                files.append({"path": path,
                              "checksum": hashlib.sha256(handle.read()).hexdigest()})
        except FileNotFoundError:
            continue
        except OSError as exc:
            return [], f"cannot read {path}: {exc.strerror}"
    if not files:
        return [], f"no ring files in {builder_dir}"
    return files, None


def _only(cluster: storage.Cluster, host: str) -> storage.Cluster:
    return replace(cluster, nodes={h: n for h, n in cluster.nodes.items() if h == host},
                   proxies=tuple(p for p in cluster.proxies if p == host))


def ring_files_task(cluster: storage.Cluster) -> Task:
    """The host's ring files with their sha256, as roles/swift_common reads them."""
    return Task("ansible.builtin.find",
                {"paths": HostVar("swift_conf_dir", "/etc/swift"),
                 "patterns": [f"{ring}.ring.gz" for ring in cluster.rings],
                 "get_checksum": True, "checksum_algorithm": "sha256"},
                name="checksum the rings")


def _gather(app: App, scope: _Scope, ui: StepProgress,
            label: str) -> tuple[dict[str, HostFacts], dict[str, RingFacts]]:
    facts = {name: HostFacts(error=why) for name, why in scope.absent.items()}
    if scope.hypervisors:
        ui.step(f"asking {len(scope.hypervisors)} hypervisor(s)")
        outcomes = app.runner.run_each(scope.hypervisors, [tasks.hypervisor_info()], ui.task,
                                       label=label)
        for name, outcome in outcomes.items():
            facts[name] = HostFacts(error=outcome.error) if outcome.error \
                else HostFacts.from_result(outcome.results[0])
    rings: dict[str, RingFacts] = {}
    if scope.cluster is not None and scope.cluster.ring_hosts:
        hosts = scope.cluster.ring_hosts
        ui.step(f"checksumming the rings on {len(hosts)} Swift host(s)")
        outcomes = app.runner.run_each(hosts, [ring_files_task(scope.cluster)], ui.task,
                                       label=label)
        rings = {name: RingFacts(error=o.error) if o.error
                 else RingFacts(files=o.results[0].get("files") or [])
                 for name, o in outcomes.items()}
    return facts, rings


# --- fixes -----------------------------------------------------------------------------------


def _fix_all(app: App, items: list[Drift], facts: Mapping[str, HostFacts], scope: _Scope,
             ui: StepProgress, label: str) -> list[Drift]:
    done: dict[int, Drift] = {}
    fixable = [(i, item) for i, item in enumerate(items) if item.fix is not None]
    fixable.sort(key=lambda pair: FIX_ORDER.index(pair[1].fix))
    ring_items = [(i, item) for i, item in fixable if item.fix == drift.COPY_RINGS]
    for i, item in fixable:
        if item.fix == drift.COPY_RINGS:
            continue
        ui.step(f"{item.kind} {item.object} on {item.host}")
        done[i] = _fix_one(app, item, facts, ui, label)
    done |= _copy_rings(app, scope.cluster, ring_items, ui)
    return [done.get(i, item) for i, item in enumerate(items)]


def _fix_one(app: App, item: Drift, facts: Mapping[str, HostFacts], ui: StepProgress,
             label: str) -> Drift:
    try:
        if item.fix == drift.FORGET_IMAGE:
            return item.done(_forget_image(app, item))
        if item.fix == drift.REDEFINE:
            return _redefine(app, item, facts[item.host], ui, label)
        return _record_state(app, item)
    except StackError as exc:
        return item.done(f"failed: {exc}", fixed=False)


def _forget_image(app: App, item: Drift) -> str:
    with app.db.write() as session:
        host_id = session.scalar(select(Host.id).where(Host.name == item.host))
        session.execute(sa.delete(HostImage).where(HostImage.host_id == host_id,
                                                   HostImage.sha256 == item.object))
    return "forgot the record: the next create there caches it again"


def _current(session, item: Drift) -> VM | None:
    """The VM row if it is still as found (same host and state, no operation running)."""
    vm = session.get(VM, item.vm_uuid)
    if vm is None or vm.state != item.recorded or vm.host is None or vm.host.name != item.host:
        return None
    busy = session.scalar(select(Operation.id).where(Operation.vm_uuid == vm.uuid,
                                                     Operation.status == "running"))
    return None if busy else vm


CHANGED = "skipped: the VM changed since it was checked"


def _record_state(app: App, item: Drift) -> Drift:
    with app.db.write() as session:
        vm = _current(session, item)
        if vm is None:
            return item.done(CHANGED, fixed=False)
        vm.state = item.state
        vm.fault = f"reconcile: {item.detail} on {item.host}" if item.state == "error" else None
    return item.done(f"recorded {item.state}")


def _redefine(app: App, item: Drift, facts: HostFacts, ui: StepProgress,
              label: str) -> Drift:
    """Define the domain again from the VM's full spec on its kept disk, in the recorded
    power state (stack_vm reconciles: the disk is reused, never recreated)."""
    from stackctl.workflows import vm as vm_wf

    with app.db.read() as session:
        vm = _current(session, item)
        if vm is None:
            return item.done(CHANGED, fixed=False)
        parts = vm_wf._image_parts(vm.image)
        cache = [vm_wf._cache_task(app, p) for p in parts if p.sha256 not in facts.cached]
        calls = [*cache, tasks.vm_state(vm, item.state)]
        host_id = vm.host_id
    results = app.runner.run_tasks(item.host, calls, ui.task, label=label)
    if cache:
        vm_wf._remember_cached(app, host_id, [p.sha256 for p in parts])
    address = (results[-1].get("vm") or {}).get("address") if results else None
    with app.db.write() as session:
        vm = session.get(VM, item.vm_uuid)
        if vm is not None:
            vm.fault = None
            vm.address = address or vm.address
    return item.done(f"defined stk-{item.vm_uuid} again on its disk ({item.state})")


def _copy_rings(app: App, cluster: storage.Cluster | None, ring_items: list[tuple[int, Drift]],
                ui: StepProgress) -> dict[int, Drift]:
    """Copy each host's differing rings from the builder, as the deploy does."""
    by_host: dict[str, list[tuple[int, Drift]]] = {}
    for i, item in ring_items:
        by_host.setdefault(item.host, []).append((i, item))
    done = {}
    for host, pairs in sorted(by_host.items()):
        rings = [item.object.removesuffix(" ring") for _, item in pairs]
        ui.step(f"copying the {', '.join(rings)} ring(s) to {host}")
        try:
            app.runner.run_tasks(host, [storage.copy_ring_task(cluster, r) for r in rings],
                                 ui.task, label="reconcile-rings")
        except StackError as exc:
            done |= {i: item.done(f"failed: {exc}; `stackctl storage rebalance` copies the "
                                  "rings to every Swift host", fixed=False) for i, item in pairs}
            continue
        done |= {i: item.done("copied the controller's ring") for i, item in pairs}
    return done


# --- recovery --------------------------------------------------------------------------------


def _recover(session, runner, op, progress):
    """Every fix re-checks its row and is idempotent: mark the run done; running
    ``stackctl reconcile --fix`` again finishes what it had left."""
    op.status = "done"
    op.error = (f"interrupted at step {op.step!r}; recovery marked it done "
                "(run `stackctl reconcile --fix` again)")
    session.commit()
    return "finished: run `stackctl reconcile --fix` again to finish its fixes", "done", None


RECOVERY = {KIND: _recover}
