"""Day-two storage operations that move data: ``stackctl storage decommission HOST`` and
``stackctl storage device replace HOST DEVICE`` (journaled, resumable).

Both change the rings step by step (``stack_ring`` on the controller), copy the rings to every
node and proxy after each change, and wait for Swift's replication to converge before the next
one, so every object keeps readable replicas throughout. Converged means, on every storage
node and for the account, container and object replicators (recon): the node has the
controller's rings, its last replication pass started after Swift reloaded them (ring files
are re-read within 15 s) and that pass neither failed nor handed a partition off (Swift deletes
a handoff only once every primary has it, so the pass after the last hand-off finds none).
Before devices leave the rings their node must also hold no Swift file any more.

Journaled steps (``STACKCTL_CRASH_AT`` accepts them):

- ``storage.decommission``: ``weight-1``..``weight-N`` (the leaving node's devices lowered to
  the plan's weights, rebalance, rings copied), each followed by ``converge-K``; ``empty`` (no
  partition and no file left on the node); ``remove`` (its devices out of every ring).
- ``storage.device-replace``: ``remove`` (the failed device out of every ring), ``converge-1``,
  ``prepare`` (a new loop file or the given disk: XFS, mounted), ``add`` (back with its
  original weight, zone and region), ``converge-2``.

A step that ``min_part_hours`` would block is not started: the operation is paused and says
when to continue (``--resume``; running the same command again does the same). A failure
pauses it too. Recovery (``RECOVERY``) never rolls weights back: a half-drained node is safe,
and the operation stays resumable from its last step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stackcore.drain_plan import (
    CLOCK_SLACK_SECONDS,
    DEFAULT_FRACTIONS,
    RING_RELOAD_SECONDS,
    check_can_lose,
    check_fractions,
    convergence_lag,
    drain_plan_names,
    drain_steps,
    next_step,
    resume_after,
)
from stackcore.errors import BackendError, Conflict, NotFound, StackError

from stackctl.runner import HostVar, Task
from stackctl.workflows import storage_status
from stackctl.workflows.storage import (
    DATA_PATTERNS,
    DEFAULT_LOOP_GB,
    _Run,
    check_device_name,
    device_source,
    load_cluster,
    ring_summary,
    same_ip,
)

if TYPE_CHECKING:
    from stackctl.app import App
    from stackctl.journal import Journal
    from stackctl.progress import StepProgress

DECOMMISSION = "storage.decommission"
REPLACE = "storage.device-replace"
PAUSED = "paused"
DEFAULT_TIMEOUT = 3600  # seconds one convergence may take before the operation pauses
POLL_SECONDS = 2.0
MAX_EMPTY_ROUNDS = 3
RING_FIELDS = ("region", "zone", "ip", "port", "device", "weight")


class _Pause(Exception):
    """min_part_hours: the next ring change may only happen at ``when`` (epoch seconds)."""

    def __init__(self, when: float) -> None:
        super().__init__(when)
        self.when = when


# ---------------------------------------------------------------------------------------------
# The journal: one storage operation at a time, resumable


def _target(kind: str, params: dict | None) -> str:
    params = params or {}
    return params.get("host", "?") if kind == DECOMMISSION else \
        f"{params.get('host', '?')} {params.get('device', '?')}"


def _busy_line(op: Any, alive: bool | None = True) -> str:
    where = f"at step {op.step}" if op.step else "before its first step"
    state = PAUSED if op.status == PAUSED else "still running" if alive is not False \
        else "interrupted"
    return f"{op.kind} {_target(op.kind, op.params)} (operation {op.id}) is {state} {where}"


def _claim(app: App, kind: str, target: str, resume: bool) -> tuple[Journal | None, dict, list]:
    """The paused or interrupted operation ``kind`` of ``target`` taken over by this process
    (its params and done steps), or (None, {}, []) when there is none to continue. Conflict
    when another storage operation runs or waits to be resumed."""
    from sqlalchemy import select

    from stackctl.journal import Journal, current_owner, owner_alive
    from stackctl.models import Operation

    with app.db.write() as session:
        ops = session.scalars(select(Operation).where(
            Operation.kind.like("storage.%"), Operation.status.in_(("running", PAUSED)))
            .order_by(Operation.id)).all()
        mine = None
        for op in ops:
            alive = owner_alive(op.owner) if op.status == "running" else False
            if alive is not False:
                raise Conflict(f"another storage operation is running: {_busy_line(op)}")
            if op.kind == kind and _target(kind, op.params) == target and mine is None:
                mine = op
                continue
            resume_cmd = (op.params or {}).get("command", "")
            raise Conflict(f"{_busy_line(op, alive)}: finish it first (`{resume_cmd} --resume`)"
                           f" or drop it (`{resume_cmd} --cancel`)")
        if mine is None:
            if resume:
                raise NotFound(f"no paused or interrupted {kind} of {target} to resume")
            return None, {}, []
        mine.status, mine.owner, mine.error = "running", current_owner(), None
        done = [s.name for s in mine.steps if s.done_at is not None]
        return Journal(app.db, mine.id), dict(mine.params or {}), done


def cancel(app: App, kind: str, target: str) -> dict:
    """Drop a paused or interrupted operation; the rings stay as they are."""
    from sqlalchemy import select

    from stackctl.journal import owner_alive
    from stackctl.models import Operation

    with app.db.write() as session:
        for op in session.scalars(select(Operation).where(
                Operation.kind == kind, Operation.status.in_(("running", PAUSED)))):
            if _target(kind, op.params) != target:
                continue
            if op.status == "running" and owner_alive(op.owner) is not False:
                raise Conflict(f"{_busy_line(op)}: it cannot be cancelled while it runs")
            op.status, op.error = "cancelled", f"cancelled at step {op.step}"
            return {"operation": op.id, "status": "cancelled", "step": op.step,
                    "notes": ["the rings stay as they are: `stackctl storage device list` shows "
                              "the weights, `stackctl storage device set-weight` changes them"]}
    raise NotFound(f"no paused or interrupted {kind} of {target}")


def _leave_resumable(session, runner, op, progress):
    """Recovery: a dead process's storage operation becomes paused at its step, nothing rolled
    back (a lower weight loses nothing; replication goes on). The next run copies the rings
    to every node again before it continues."""
    command = (op.params or {}).get("command", "stackctl storage ...")
    op.status = PAUSED
    op.error = f"interrupted at step {op.step!r}; `{command} --resume` continues from there"
    session.commit()
    return f"left resumable: `{command} --resume` continues", PAUSED, _target(op.kind, op.params)


RECOVERY = {DECOMMISSION: _leave_resumable, REPLACE: _leave_resumable}


# ---------------------------------------------------------------------------------------------
# Rings, copies and convergence, shared by both operations


def ring_fields(dev: dict) -> dict:
    return {k: dev[k] for k in RING_FIELDS}


def node_devices(run: _Run, host: str, facts: dict[str, dict]) -> dict[str, list[dict]]:
    """The ring entries of ``host``'s devices in each ring (by its address and ring port)."""
    node = run.cluster.node(host)
    return {ring: [d for d in f.get("devices") or [] if same_ip(d.get("ip"), node.ip)
                   and int(d.get("port") or 0) == node.ring_port(ring)]
            for ring, f in facts.items()}


@dataclass
class _Op:
    """One journaled operation's run: the ring calls, the copies, the waits, its figures."""

    run: _Run
    journal: Journal
    params: dict
    timeout: float = DEFAULT_TIMEOUT
    poll: float = POLL_SECONDS
    pushed_at: float | None = None
    steps: list[dict] = field(default_factory=list)
    removed: dict = field(default_factory=dict)

    @property
    def ui(self) -> StepProgress | None:
        return self.run.ui

    def note(self, text: str) -> None:
        if self.ui is not None:
            self.ui.note(text)

    def read(self) -> tuple[dict[str, dict], int]:
        """Each ring's facts and the seconds until min_part_hours lets partitions move."""
        results = self.run.rings({ring: {} for ring in self.run.cluster.rings}, "read")
        if any(res.get("changed") for res in results.values()):
            self.push()  # a change no rebalance had placed yet was placed now
        left = max(int(res.get("min_part_seconds_left") or 0) for res in results.values())
        return {ring: res.get("ring") or {} for ring, res in results.items()}, left

    def change(self, args: dict[str, dict], verb: str) -> list[dict]:
        """stack_ring with ``args`` per ring, then the rings copied; a summary per ring (with
        its facts after the change under ``facts``)."""
        results = self.run.rings(args, verb)
        self.push()
        return [{**ring_summary(ring, res), "facts": res.get("ring") or {}}
                for ring, res in results.items()]

    def push(self) -> None:
        self.run.distribute()
        self.pushed_at = time.time()

    def converge(self, label: str, host: str) -> float:
        """Wait until replication has converged on every node for the rings copied last;
        seconds waited. BackendError after ``timeout``."""
        if self.pushed_at is None:  # resumed here: copy again, a copy may have failed
            self.push()
        since = self.pushed_at + RING_RELOAD_SECONDS + CLOCK_SLACK_SECONDS
        md5s, why = storage_status.builder_ring_md5s(self.run.cluster.builder_dir)
        if md5s is None:
            raise BackendError(why)
        nodes = list(self.run.cluster.nodes.values())
        start = time.monotonic()
        while True:
            answers = storage_status.probe(nodes)
            waiting = node_problems(answers, md5s) + convergence_lag(
                {h: recon_replication(a) for h, a in answers.items()}, since)
            if not waiting:
                return time.monotonic() - start
            waited = time.monotonic() - start
            used = held_bytes(answers.get(host, {}))
            self.run.step(f"{label}: waiting for replication ({int(waited)} s, {len(waiting)} "
                          f"left: {waiting[0]}; {host} holds {used})")
            if waited > self.timeout:
                raise BackendError(f"replication has not converged after {int(waited)} s: "
                                   + "; ".join(waiting[:3]))
            time.sleep(self.poll)

    def wait_no_data(self, host: str) -> None:
        """Wait until ``host`` holds no Swift file under its devices root."""
        start = time.monotonic()
        while True:
            found = self.run.on(host, [Task("ansible.builtin.find", {
                "paths": HostVar("swift_devices_root", "/srv/node"), "patterns": DATA_PATTERNS,
                "recurse": True, "file_type": "file", "limit": 1},
                name="look for Swift data")])[0].get("files") or []
            if not found:
                return
            if time.monotonic() - start > self.timeout:
                raise BackendError(f"{host} still holds Swift data ({found[0].get('path')}) "
                                   "although replication has converged")
            self.run.step(f"waiting for the last Swift files to leave {host} "
                          f"({found[0].get('path')})")
            time.sleep(self.poll)


def recon_replication(answers: dict) -> dict[str, Any]:
    """``{kind: recon replication JSON or None}`` from one node's probe answers."""
    return {kind: answers[f"{kind}_replication"].data
            if f"{kind}_replication" in answers else None
            for kind in ("object", "container", "account")}


def node_problems(answers: dict, md5s: dict) -> list[str]:
    """Nodes that do not answer, or whose rings differ from the controller's."""
    problems = []
    for host in sorted(answers):
        errors = [a.error for a in answers[host].values() if a.error]
        if errors:
            problems.append(f"{host}: {errors[0]}")
            continue
        state, differ = storage_status.ring_check(answers[host]["ringmd5"].data, md5s)
        if state != "ok":
            problems.append(f"{host}: rings {state} ({', '.join(differ) or 'unknown'})")
    return problems


def held_bytes(answers: dict) -> str:
    usage = answers.get("diskusage")
    if usage is None or usage.error:
        return "? MiB"
    used = storage_status.disk_usage(usage.data)["used_bytes"]
    return f"{used / 2**20:.1f} MiB"


def parts_on(devices: dict[str, list[dict]]) -> dict[str, int]:
    return {ring: sum(int(d.get("parts") or 0) for d in devs) for ring, devs in devices.items()}


def _finish_or_pause(op: _Op, work) -> dict:
    """Run ``work`` (the steps); a min_part_hours pause or a failure leaves the operation
    paused, resumable by the command in its params."""
    command = op.params["command"]
    try:
        return work()
    except _Pause as pause:
        at = time.strftime("%Y-%m-%d %H:%M", time.localtime(pause.when))
        msg = (f"min_part_hours: the next rebalance may move partitions after {at}; continue "
               f"then with `{command} --resume`")
        op.journal.finish(PAUSED, msg)
        op.note(msg)
        return {"operation": op.journal.op_id, "status": PAUSED, "resume_after": at,
                "steps": op.steps, "notes": [*op.run.notes, msg]}
    except StackError as exc:
        op.journal.finish(PAUSED, str(exc))
        raise type(exc)(f"{exc} (operation {op.journal.op_id} paused; `{command} --resume` "
                        "continues)") from None


# ---------------------------------------------------------------------------------------------
# stackctl storage decommission HOST


def decommission_storage(app: App, host: str, ui: StepProgress | None = None, *,
                         fractions: tuple[float, ...] = DEFAULT_FRACTIONS, resume: bool = False,
                         timeout: float = DEFAULT_TIMEOUT, poll: float = POLL_SECONDS) -> dict:
    """Drain storage node ``host`` and take its devices out of every ring, losing nothing.

    Its devices' weights go down step by step (``fractions`` of the original weights, the last
    0); after each step the rings are rebalanced and copied to every node and replication
    must converge. Then it must hold no partition and no Swift file, and its devices leave
    the rings. Returns the steps' figures, ``status`` ``done`` or ``paused`` (min_part_hours:
    ``resume_after``) and what to remove from the inventory. Refused (Conflict/NotFound)
    before anything changes when the host is in no ring, when the rings would keep fewer
    devices or zones than replicas, or when another storage operation runs."""
    fractions = check_fractions(fractions)
    run = _Run(app, load_cluster(app), ui)
    run.cluster.node(host)
    journal, params, done = _claim(app, DECOMMISSION, host, resume)
    if journal is None:
        params = _decommission_params(run, host, fractions)
        from stackctl.journal import Journal

        journal = Journal.open(app.db, DECOMMISSION, params=params)
    elif ui is not None:
        ui.note(f"continuing {DECOMMISSION} of {host} (operation {journal.op_id}) after "
                f"{done[-1] if done else 'its start'}")
    op = _Op(run, journal, params, timeout=timeout, poll=poll)
    return _finish_or_pause(op, lambda: _decommission_steps(op, done))


def _decommission_params(run: _Run, host: str, fractions: tuple[float, ...]) -> dict:
    """The operation's fixed inputs, checked: the host's devices with their original weights."""
    run.step(f"reading the rings on {run.cluster.controller}")
    results = run.rings({ring: {} for ring in run.cluster.rings}, "read")
    facts = {ring: res.get("ring") or {} for ring, res in results.items()}
    mine = node_devices(run, host, facts)
    if not any(mine.values()):
        raise NotFound(f"{host} has no device in any ring: nothing to decommission")
    for ring, devs in mine.items():
        keys = {(d["ip"], d["port"], d["device"]) for d in devs}
        check_can_lose(ring, [{"key": (d["ip"], d["port"], d["device"]), **d}
                              for d in facts[ring].get("devices") or []],
                       keys, float(facts[ring].get("replicas") or 0), what=host)
    return {"host": host, "fractions": list(fractions),
            "devices": {ring: [ring_fields(d) for d in devs] for ring, devs in mine.items()},
            "command": f"stackctl storage decommission {host}"}


def _decommission_steps(op: _Op, done: list[str]) -> dict:
    host = op.params["host"]
    original = {f"{ring}/{d['device']}": float(d["weight"])
                for ring, devs in op.params["devices"].items() for d in devs}
    plan = drain_steps(original, op.params["fractions"])
    names = [*drain_plan_names(len(plan)), "empty", "remove"]
    while (name := next_step(names, done)) is not None:
        with op.journal.step(name):
            if name.startswith("weight-"):
                _lower_weights(op, int(name.split("-")[1]), plan)
            elif name.startswith("converge-"):
                seconds = op.converge(f"step {name.split('-')[1]}/{len(plan)}", host)
                _report_convergence(op, name, seconds)
            elif name == "empty":
                _empty(op, host)
            else:
                op.removed = _remove_devices(op, host)
        done.append(name)
    op.journal.finish("done")
    return {"operation": op.journal.op_id, "status": "done", "host": host,
            "steps": op.steps, "removed": op.removed,
            "inventory": inventory_advice(op.run, host), "notes": op.run.notes}


def _lower_weights(op: _Op, k: int, plan: list[dict]) -> None:
    host, target = op.params["host"], plan[k - 1]
    op.run.step(f"step {k}/{len(plan)}: reading the rings")
    facts, left = op.read()
    mine = node_devices(op.run, host, facts)
    changes: dict[str, list[dict]] = {}
    for ring, devs in mine.items():
        for dev in devs:
            weight = target.get(f"{ring}/{dev['device']}")
            if weight is not None and float(dev["weight"]) != weight:
                changes.setdefault(ring, []).append({**ring_fields(dev), "weight": weight})
    weights = sorted(set(target.values()), reverse=True)
    label = f"step {k}/{len(plan)}: weights of {host} -> {', '.join(f'{w:g}' for w in weights)}"
    if not changes:
        op.push()  # resumed after the builder changed: the copy may not have happened
        summaries = []
    else:
        if left > 0:
            raise _Pause(resume_after(time.time(), left))
        op.run.step(label)
        summaries = op.change({ring: {"devices": devs, "purge": False, "keep_weights": False}
                               for ring, devs in changes.items()}, "lower the weights in")
    facts.update({s["ring"]: s["facts"] for s in summaries})
    parts = parts_on(node_devices(op.run, host, facts))
    moved = sum(s["parts_moved"] for s in summaries)
    op.steps.append({"step": f"weight-{k}", "weights": ", ".join(f"{w:g}" for w in weights),
                     "parts_left": parts, "parts_moved": moved})
    op.note(f"{label}: {moved} partition replicas moved; {host} still has "
            + ", ".join(f"{n} {ring}" for ring, n in parts.items()) + " partition replicas")


def _report_convergence(op: _Op, name: str, seconds: float) -> None:
    op.steps.append({"step": name, "converged_s": round(seconds, 1)})
    op.note(f"{name}: replication converged on every node in {seconds:.0f} s")


def _empty(op: _Op, host: str) -> None:
    """No partition left on the host's devices (a rebalance moves at most one replica of a
    partition, so a host with several devices may need more), then no Swift file."""
    for _ in range(MAX_EMPTY_ROUNDS):
        facts, left = op.read()
        parts = parts_on(node_devices(op.run, host, facts))
        if not any(parts.values()):
            break
        if left > 0:
            raise _Pause(resume_after(time.time(), left))
        op.run.step(f"{host} still has partitions ({parts}): rebalancing again")
        op.change({ring: {} for ring, n in parts.items() if n}, "rebalance")
        op.converge("emptying", host)
    else:
        raise Conflict(f"{host}'s devices still hold partitions after {MAX_EMPTY_ROUNDS} "
                       "rebalances: see `stackctl storage device list`")
    op.run.step(f"checking that {host} holds no Swift file any more")
    op.wait_no_data(host)


def _remove_devices(op: _Op, host: str) -> dict[str, list[str]]:
    op.run.step(f"removing {host}'s devices from the rings")
    facts, _ = op.read()
    mine = node_devices(op.run, host, facts)
    gone = {ring: {d["device"] for d in devs} for ring, devs in mine.items() if devs}
    if gone:
        keep = {ring: [ring_fields(d) for d in facts[ring].get("devices") or []
                       if not (same_ip(d["ip"], mine[ring][0]["ip"])
                               and d["port"] == mine[ring][0]["port"]
                               and d["device"] in gone[ring])] for ring in gone}
        op.change({ring: {"devices": devs, "purge": True, "keep_weights": True}
                   for ring, devs in keep.items()}, "remove the devices from")
    else:
        op.push()
    op.note(f"{host}'s devices are out of every ring")
    return {ring: sorted(names) for ring, names in gone.items()}


def inventory_advice(run: _Run, host: str) -> dict:
    """What to change in the inventory now that ``host`` stores nothing (the run itself
    changes no inventory file)."""
    groups = ["storage_nodes"]
    note = (f"{host} stores nothing and is in no ring: remove it from the `storage_nodes` group "
            "of the inventory, or the next `stackctl deploy` adds its devices back. Its Swift "
            "daemons still run and its devices stay mounted until you stop them; do not use "
            f"destroy-storage.yml --limit {host} for that: it also deletes the cluster's ring "
            "builders on the controller")
    if host in run.cluster.proxies:
        note += (f". {host} is also a proxy: keep it in `proxies` while clients use it (it "
                 "still gets the rings), or move the proxy first")
    run.notes.append(note)
    return {"remove_from_groups": groups, "host": host}


# ---------------------------------------------------------------------------------------------
# stackctl storage device replace HOST DEVICE

REPLACE_STEPS = ["remove", "converge-1", "prepare", "add", "converge-2"]


def replace_device(app: App, host: str, name: str, ui: StepProgress | None = None, *,
                   size_gb: int | None = None, disk: str | None = None, resume: bool = False,
                   timeout: float = DEFAULT_TIMEOUT, poll: float = POLL_SECONDS) -> dict:
    """Replace failed device ``name`` of ``host``: out of every ring (its partitions get their
    replicas back elsewhere), a new device prepared and mounted under the same name (a new
    loop file, or ``disk``), back in the rings with its original weight, zone and region,
    and replication fills it. Refused when the rings cannot spare it meanwhile (fewer
    devices or zones than replicas), or while another storage operation runs."""
    check_device_name(name)
    run = _Run(app, load_cluster(app), ui)
    run.cluster.node(host)
    journal, params, done = _claim(app, REPLACE, f"{host} {name}", resume)
    if journal is None:
        params = _replace_params(app, run, host, name, size_gb, disk)
        from stackctl.journal import Journal

        journal = Journal.open(app.db, REPLACE, params=params)
    op = _Op(run, journal, params, timeout=timeout, poll=poll)
    return _finish_or_pause(op, lambda: _replace_steps(op, done))


def _replace_params(app: App, run: _Run, host: str, name: str, size_gb: int | None,
                    disk: str | None) -> dict:
    run.step(f"reading the rings on {run.cluster.controller}")
    results = run.rings({ring: {} for ring in run.cluster.rings}, "read")
    facts = {ring: res.get("ring") or {} for ring, res in results.items()}
    entries = {ring: dev for ring, devs in node_devices(run, host, facts).items()
               for dev in devs if dev["device"] == name}
    if not entries:
        raise NotFound(f"device {name} of {host} is in no ring")
    for ring, entry in entries.items():
        key = (entry["ip"], entry["port"], entry["device"])
        check_can_lose(ring, [{"key": (d["ip"], d["port"], d["device"]), **d}
                              for d in facts[ring].get("devices") or []],
                       {key}, float(facts[ring].get("replicas") or 0),
                       what=f"{name} of {host}")
    if size_gb is None and disk is None:
        size_gb = _inventory_size(app, host, name)
    return {"host": host, "device": name, "source": device_source(size_gb, disk),
            "entries": {ring: ring_fields(dev) for ring, dev in entries.items()},
            "command": f"stackctl storage device replace {host} {name}"}


def _inventory_size(app: App, host: str, name: str) -> int:
    """The loop file size the inventory gives the device, else the default."""
    hostvars = app.runner.inventory_hostvars("storage_nodes").get(host) or {}
    for dev in hostvars.get("swift_devices") or []:
        if isinstance(dev, dict) and dev.get("name") == name and dev.get("size_gb"):
            return int(dev["size_gb"])
    return DEFAULT_LOOP_GB


def _replace_steps(op: _Op, done: list[str]) -> dict:
    host, name = op.params["host"], op.params["device"]
    while (step := next_step(REPLACE_STEPS, done)) is not None:
        with op.journal.step(step):
            if step == "remove":
                _take_out(op, host, name)
            elif step.startswith("converge-"):
                _report_convergence(op, step, op.converge(f"replace {name}", host))
            elif step == "prepare":
                _prepare(op, host, name)
            else:
                _put_back(op, host, name)
        done.append(step)
    op.journal.finish("done")
    return {"operation": op.journal.op_id, "status": "done", "host": host, "device": name,
            "steps": op.steps, "notes": op.run.notes}


def _take_out(op: _Op, host: str, name: str) -> None:
    op.run.step(f"removing {name} of {host} from the rings")
    facts, _ = op.read()
    entries = op.params["entries"]
    keep = {ring: [ring_fields(d) for d in facts[ring].get("devices") or []
                   if not (same_ip(d["ip"], entries[ring]["ip"])
                           and d["port"] == entries[ring]["port"] and d["device"] == name)]
            for ring in entries}
    summaries = op.change({ring: {"devices": devs, "purge": True, "keep_weights": True}
                           for ring, devs in keep.items()}, "remove the failed device from")
    moved = sum(s["parts_moved"] for s in summaries)
    op.steps.append({"step": "remove", "weights": "0 (out of the rings)", "parts_moved": moved})
    op.note(f"{name} of {host} is out of the rings: {moved} partition replicas placed elsewhere")


def _prepare(op: _Op, host: str, name: str) -> None:
    source = op.params["source"]
    root = HostVar("swift_devices_root", "/srv/node")
    loop = HostVar("swift_loop_dir", "/var/lib/stackctl/swift", suffix=f"/{name}.img")
    old = {"name": name, "state": "absent", "mount_root": root, "force": True}
    new = {"name": name, "mount_root": root, "owner": HostVar("swift_user", "swift"), **source}
    if "size_gb" in source:
        old["loop_file"] = new["loop_file"] = loop
    op.run.step(f"unmounting the failed {name} on {host} and preparing the new one")
    op.run.on(host, [Task("stack_storage_device", old, name=f"forget the failed {name}"),
                     Task("stack_storage_device", new, name=f"prepare the new {name}")])
    op.steps.append({"step": "prepare", "weights": "", "parts_moved": 0})


def _put_back(op: _Op, host: str, name: str) -> None:
    facts, left = op.read()
    entries = op.params["entries"]
    missing = {ring: entry for ring, entry in entries.items()
               if not any(d["device"] == name for d in node_devices(op.run, host,
                                                                   facts)[ring])}
    if not missing:
        op.push()
        return
    if left > 0:
        raise _Pause(resume_after(time.time(), left))
    op.run.step(f"adding the new {name} to the rings with its original weight")
    summaries = op.change({ring: {"devices": [entry], "purge": False, "keep_weights": True}
                           for ring, entry in missing.items()}, "add the new device to")
    moved = sum(s["parts_moved"] for s in summaries)
    weights = ", ".join(sorted({f"{e['weight']:g}" for e in entries.values()}))
    op.steps.append({"step": "add", "weights": weights, "parts_moved": moved})
    op.note(f"the new {name} of {host} is in the rings (weight {weights}): {moved} partition "
            "replicas move to it")
