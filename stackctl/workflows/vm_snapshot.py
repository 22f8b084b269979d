"""``vm snapshot``: a VM's disk as a standalone image in the image service (journaled).

Steps (``STACKCTL_CRASH_AT`` accepts these names): ``queue`` (image row ``queued``),
``flatten`` (row ``saving``; on the host: stop a running VM, ``qemu-img convert`` its disk to
a standalone qcow2, start it again), ``upload`` (Swift: the host PUTs to a temp URL, the
controller checks size, md5 and sha256 with a HEAD) or ``store`` (local store: the module
wrote into the store, the controller re-hashes it), ``finish`` (row ``active``). A failure or
an interrupted snapshot leaves no image row, no object and no file, and the VM in its original
power state.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import func, select
from stackcore import validate
from stackcore.errors import BackendError, Conflict, StackError

from stackctl import tasks
from stackctl.app import App
from stackctl.journal import Journal
from stackctl.models import VM, Image, new_uuid
from stackctl.progress import StepProgress
from stackctl.workflows import image_store, lookup
from stackctl.workflows.vm_admin import _app_for, _close, _need_host, _record_result

# --- snapshot --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotJob:
    """Everything a snapshot (and its recovery) needs, stored as the operation's params."""

    name: str  # the VM
    domain: str
    image_id: str
    image_name: str
    was: str  # running | stopped
    store: str  # swift | local
    host_path: str  # the flattened file on the host
    local_tmp: str | None = None  # local store: where the module writes (== host_path)


def snapshot(app: App, tenant: str | None, name: str, image_name: str,
             ui: StepProgress | None = None) -> dict:
    """Save VM ``name``'s disk as a new private, bootable image ``image_name``.

    The VM is stopped for a consistent copy (no guest agent to freeze its filesystems) and
    started again right after the disk is flattened; the upload happens while it runs.
    """
    ui = ui or StepProgress("", enabled=False)
    validate.resource_name(image_name, "image name")
    with app.db.read() as session:
        owner = lookup.tenant(session, tenant)
        vm = lookup.vm(session, owner, name)
        _need_host(vm)
        if vm.state not in ("running", "stopped"):
            raise Conflict(f"VM {name!r} is {vm.state}: only a running or stopped VM can be "
                           "snapshotted")
        if session.scalar(select(Image.id).where(Image.tenant_id == owner.id,
                                                 Image.name == image_name)):
            raise Conflict(f"image {image_name!r} already exists")
        source = vm.image
        uuid, tenant_id, host = vm.uuid, vm.tenant_id, vm.host.name
        row = Image(id=new_uuid(), name=image_name, tenant_id=owner.id, sha256="",
                    disk_format="qcow2", size=0, kernel_id=source.kernel_id,
                    ramdisk_id=source.ramdisk_id, cmdline=source.cmdline, status="queued")
        job = _snapshot_job(app, name, vm.domain, row.id, image_name, vm.state)
    row.path = job.local_tmp or f"{image_store.SWIFT_PREFIX}{image_store.CONTAINER}/.{row.id}"
    journal = Journal.open(app.db, "vm.snapshot", vm_uuid=uuid, tenant_id=tenant_id,
                           exclusive=True, params=asdict(job))
    try:
        with journal.step("queue"), app.db.write() as session:
            session.add(row)
        with journal.step("flatten"):
            flat = _flatten(app, journal, uuid, host, job, ui)
        if job.store == "swift":
            with journal.step("upload"):
                path = _upload(app, journal, host, job, flat, ui)
        else:
            with journal.step("store"):
                path = _store_local(app, job, flat, ui)
        with journal.step("finish"), app.db.write() as session:
            image = session.get(Image, job.image_id)
            image.path, image.status = path, "active"
            result = image.to_dict()
        journal.finish("done")
        return result
    except StackError as exc:
        from stackctl.models import Operation

        ui.step("the snapshot failed: removing what it made")
        try:
            with app.db.write() as session:
                _undo_snapshot(session, app.runner, session.get(Operation, journal.op_id),
                               ui.task, app)
        except StackError as undo:
            journal.finish("failed", f"{exc}; cleanup failed (recover retries): {undo}")
            raise exc from None
        journal.finish("failed", str(exc))
        raise


def _snapshot_job(app: App, name: str, domain: str, image_id: str, image_name: str,
                  state: str) -> SnapshotJob:
    store = image_store.backend(app)
    if store == "swift":
        return SnapshotJob(name, domain, image_id, image_name, state, store,
                           tasks.snapshot_path(image_id))
    from stackctl.config import ensure_private_dir

    tmp = str(ensure_private_dir(app.config.images_dir) / f".snapshot-{image_id}.qcow2")
    return SnapshotJob(name, domain, image_id, image_name, state, store, tmp, tmp)


def _flatten(app: App, journal: Journal, uuid: str, host: str, job: SnapshotJob,
             ui: StepProgress) -> dict:
    """Stop (if running), flatten, start again: one host run. Returns the module's file."""
    with app.db.write() as session:
        session.get(Image, job.image_id).status = "saving"
        vm = session.get(VM, uuid)
        calls = [tasks.vm_snapshot(vm.domain, job.host_path)]
        if job.was == "running":
            ui.step(f"stopping {job.name} on {host} for a consistent copy; it is started "
                    "again once its disk is copied")
            # started again without waiting for its address: the copy does not need the guest
            calls = [tasks.vm_state(vm, "stopped"), *calls,
                     tasks.vm_state(vm, "running", wait_timeout=0)]
        else:
            ui.step(f"copying the disk of {job.name} on {host}")
    results = app.runner.run_tasks(host, calls, ui.task, label=journal.label)
    flat = (results[1] if job.was == "running" else results[0]).get("snapshot") or {}
    validate.sha256(str(flat.get("sha256", "")))
    with app.db.write() as session:
        image = session.get(Image, job.image_id)
        image.sha256, image.size = flat["sha256"], int(flat["size"])
        image.virtual_size = int(flat["virtual_size"])
        if job.was == "running":
            _record_result(session.get(VM, uuid), "running", results[-1])
    return flat


def _upload(app: App, journal: Journal, host: str, job: SnapshotJob, flat: dict,
            ui: StepProgress) -> str:
    path, url = image_store.upload_target(app, flat["sha256"])
    with app.db.write() as session:
        session.get(Image, job.image_id).path = path
    calls = [tasks.vm_snapshot_absent(job.domain, job.host_path)]
    if url is not None:
        ui.step(f"uploading {flat['size'] / 2**20:.1f} MiB from {host} to the image store")
        calls.insert(0, tasks.vm_snapshot(job.domain, job.host_path, upload_url=url,
                                          sha256=flat["sha256"]))
    app.runner.run_tasks(host, calls, ui.task, label=journal.label)
    ui.step("verifying the stored image (size, md5, sha256)")
    image_store.verify_stored(app, path, int(flat["size"]), flat["sha256"], flat.get("md5"))
    return path


def _store_local(app: App, job: SnapshotJob, flat: dict, ui: StepProgress) -> str:
    from stackcore.image_cache import file_sha256

    ui.step("verifying the copy and storing it")
    tmp = Path(job.local_tmp)
    digest = file_sha256(str(tmp))
    if digest != flat["sha256"] or tmp.stat().st_size != int(flat["size"]):
        raise BackendError(f"{tmp} does not match what the host reported")
    path, _undo = image_store.store(app, tmp, digest)
    tmp.unlink(missing_ok=True)  # the store had these bits already: it kept its own copy
    return path


def _undo_snapshot(session, runner, op, progress, app: App | None = None) -> str:
    """Remove the image row, its bits (unless another row shares them) and the host's file;
    put the VM back in its original power state."""
    job = SnapshotJob(**op.params)
    app = app or _app_for(runner)
    image = session.get(Image, job.image_id)
    path = image.path if image is not None else None
    if image is not None:
        session.delete(image)
        session.flush()
    shared = path and session.scalar(select(func.count()).select_from(Image)
                                     .where(Image.path == path))
    session.commit()
    if path and not shared and (path.startswith(image_store.SWIFT_PREFIX)
                                or Path(path).parent == app.config.images_dir):
        image_store.remove(app, path)
    if job.local_tmp:
        Path(job.local_tmp).unlink(missing_ok=True)
        Path(f"{job.local_tmp}.part").unlink(missing_ok=True)
    vm = session.get(VM, op.vm_uuid) if op.vm_uuid else None
    if vm is None or vm.host is None:
        return "removed the image; the VM no longer exists"
    host, domain = vm.host.name, vm.domain
    session.commit()
    calls = [tasks.vm_snapshot_absent(domain, job.host_path)]
    if job.was == "running":
        calls.append(tasks.vm_power_only(domain, "running", wait_timeout=0))
    results = runner.run_tasks(host, calls, progress, label=str(op.id))
    if job.was == "running":
        _record_result(session.get(VM, op.vm_uuid), "running", results[-1])
        session.commit()
    return f"removed the image and its bits; the VM is {job.was}"


def _recover_snapshot(session, runner, op, progress):
    last = op.steps[-1] if op.steps else None
    if last is not None and last.name == "finish" and last.done_at is not None:
        return _close(session, op, "finished: the image was already active")
    action = _undo_snapshot(session, runner, op, progress)
    op.status = "rolled_back"
    op.error = f"interrupted at step {op.step!r}; rolled back by recovery"
    session.commit()
    return f"rolled back: {action}", "rolled_back", (op.params or {}).get("name")


RECOVERY: dict = {"vm.snapshot": _recover_snapshot}
