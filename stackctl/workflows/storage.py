"""Object storage operations: changes to devices and rings (``storage_status`` reads each
node's health).

Rings are edited on the controller by ``stack_ring`` (its builder files are the truth) and
devices prepared on their node by ``stack_storage_device``, both through ``app.runner``: this
process never imports Swift (eventlet). Every command that may change a ring ends by copying
the controller's ring files to every storage node and proxy, as the roles do, so
``stackctl storage rebalance`` is also how a failed copy is repaired.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stackcore.errors import BackendError, Conflict, InvalidInput, NotFound
from stackcore.swift_layout import PORT_VARS, ring_devices

from stackctl.runner import HostVar, Task
from stackctl.workflows import storage_env

if TYPE_CHECKING:
    from stackctl.app import App
    from stackctl.progress import StepProgress

NODE_GROUP = "storage_nodes"
PROXY_GROUP = storage_env.PROXY_GROUP
CONTROLLER_GROUP = "controllers"
RINGS = ("account", "container", "object")
# Server kind -> (inventory variable, the roles' default port).
PORTS = PORT_VARS
BUILDER_ROOT = "/etc/stackctl/swift"
DEFAULT_WEIGHT = 100.0
DEFAULT_LOOP_GB = 4
MAX_WEIGHT = 1e9
RECON_TIMEOUT = 3.0
BALANCE_SLACK = 1.0  # stack_ring's (Swift's) "worth a rebalance" threshold, in percent
# Files that are Swift data: objects, tombstones, metadata, account and container databases.
DATA_PATTERNS = ["*.data", "*.ts", "*.meta", "*.db"]
# What both stack_storage_device ([A-Za-z0-9_-]) and the rings ([A-Za-z0-9] first) accept.
_DEVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_DISK = re.compile(r"^/dev/[A-Za-z0-9_./:+@-]+$")

# ---------------------------------------------------------------------------------------------
# Input (pure; checked before any host is touched)


def check_device_name(name: str) -> None:
    if not isinstance(name, str) or not _DEVICE_NAME.match(name):
        raise InvalidInput(f"invalid device name {name!r}: use 1-64 letters, digits, '_' or '-', "
                           "starting with a letter or digit")


def check_weight(weight: float) -> float:
    if not math.isfinite(weight) or not 0 <= weight <= MAX_WEIGHT:
        raise InvalidInput(f"invalid weight {weight:g}: must be between 0 (takes no partitions) "
                           f"and {MAX_WEIGHT:g}")
    return float(weight)


def device_source(size_gb: int | None, disk: str | None) -> dict:
    """``stack_storage_device`` arguments for a loop file of ``size_gb`` GiB or a real ``disk``."""
    if size_gb is not None and disk is not None:
        raise InvalidInput("give --size-gb (a loop file) or --disk (a block device), not both")
    if disk is not None:
        if not _DISK.match(disk) or ".." in disk.split("/"):
            raise InvalidInput(f"invalid --disk {disk!r}: expected a block device path such as "
                               "/dev/sdb or /dev/disk/by-id/...")
        return {"device": os.path.normpath(disk)}
    size = DEFAULT_LOOP_GB if size_gb is None else size_gb
    if size < 1:
        raise InvalidInput(f"invalid --size-gb {size}: must be 1 or more")
    return {"size_gb": size}


# ---------------------------------------------------------------------------------------------
# Where things are, from the inventory (pure once the host variables are read)


@dataclass(frozen=True)
class Node:
    """A storage node as the roles see it (their defaults where the inventory says nothing)."""

    host: str
    ip: str
    zone: int = 1
    region: int = 1
    ports: Mapping[str, int] = field(default_factory=lambda: {k: p for k, (_, p) in
                                                               PORTS.items()})
    inventory_devices: tuple[str, ...] = ()

    def ring_port(self, ring: str) -> int:
        return self.ports["object" if ring.startswith("object") else ring]

    def ring_device(self, ring: str, name: str, weight: float) -> dict:
        """The ``stack_ring`` device ``name`` of this node in ``ring``."""
        node = {"name": self.host, "ip": self.ip, "zone": self.zone, "region": self.region,
                "ports": dict(self.ports), "devices": [{"name": name, "weight": weight}]}
        return ring_devices([node], ring)[0]

    def find(self, ring: str, facts: Mapping, name: str) -> dict | None:
        """This node's device ``name`` in a ring's ``stack_ring`` facts, if it is there."""
        for dev in facts.get("devices") or []:
            if (dev.get("device") == name and int(dev.get("port", 0)) == self.ring_port(ring)
                    and same_ip(dev.get("ip"), self.ip)):
                return dev
        return None


@dataclass(frozen=True)
class Cluster:
    """The storage nodes, the hosts that get ring files, and where the builders are."""

    nodes: Mapping[str, Node]
    builder_dir: str
    rings: tuple[str, ...] = RINGS
    controller: str = ""
    proxies: tuple[str, ...] = ()

    @property
    def ring_hosts(self) -> list[str]:
        return sorted(set(self.nodes) | set(self.proxies))

    def node(self, host: str) -> Node:
        if host not in self.nodes:
            raise NotFound(f"host {host!r} is not a storage node (the inventory's "
                           f"{NODE_GROUP} group has {', '.join(sorted(self.nodes))})")
        return self.nodes[host]


def same_ip(a: Any, b: Any) -> bool:
    return _norm_ip(a) == _norm_ip(b)


def _norm_ip(value: Any) -> str:
    text = str(value or "")
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        return text.lower()


def _plain(host: str, hostvars: Mapping, key: str, default: Any) -> Any:
    """A host variable stackctl uses itself, so it must not be a template."""
    value = hostvars.get(key, default)
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        raise Conflict(f"host {host}: {key} is a template ({value}); stackctl storage needs a "
                       "literal value in the inventory")
    return value


def _number(host: str, hostvars: Mapping, key: str, default: int) -> int:
    value = _plain(host, hostvars, key, default)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise Conflict(f"host {host}: {key} must be a whole number, not {value!r}") from None


def node_from_hostvars(host: str, hostvars: Mapping) -> Node:
    devices = _plain(host, hostvars, "swift_devices", []) or []
    return Node(
        host=host, ip=str(_plain(host, hostvars, "swift_ip", "127.0.0.1")),
        zone=_number(host, hostvars, "swift_zone", 1),
        region=_number(host, hostvars, "swift_region", 1),
        ports={kind: _number(host, hostvars, var, port) for kind, (var, port) in PORTS.items()},
        inventory_devices=tuple(str(d.get("name")) for d in devices if isinstance(d, Mapping)),
    )


def builder_dir_of(host: str, hostvars: Mapping) -> str:
    """The role's ``swift_builder_dir``: as set, or /etc/stackctl/swift/<swift_cluster_name>."""
    explicit = _plain(host, hostvars, "swift_builder_dir", None)
    if explicit:
        if not os.path.isabs(str(explicit)):
            raise Conflict(f"host {host}: swift_builder_dir must be an absolute path")
        return os.path.normpath(str(explicit))
    name = str(_plain(host, hostvars, "swift_cluster_name", "default"))
    if not _CLUSTER_NAME.match(name) or ".." in name:
        raise Conflict(f"host {host}: invalid swift_cluster_name {name!r}")
    return f"{BUILDER_ROOT}/{name}"


def cluster_from_hostvars(nodes: Mapping[str, Mapping],
                          controllers: Mapping[str, Mapping] | None = None,
                          proxies: Mapping[str, Mapping] | None = None) -> Cluster:
    """The Cluster of the inventory's groups (host -> variables). Nodes must agree on where
    the builders are: the roles build the rings once, from the first node's variables."""
    dirs = {host: builder_dir_of(host, hv) for host, hv in nodes.items()}
    if len(set(dirs.values())) > 1:
        raise Conflict("the storage nodes disagree on their ring builders ("
                       + ", ".join(f"{h}: {d}" for h, d in sorted(dirs.items()))
                       + "): set swift_cluster_name once for the storage_nodes group")
    first = sorted(nodes)[0]
    rings = _plain(first, nodes[first], "swift_rings", list(RINGS))
    return Cluster(nodes={h: node_from_hostvars(h, hv) for h, hv in sorted(nodes.items())},
                   builder_dir=dirs[first], rings=tuple(str(r) for r in rings),
                   controller=sorted(controllers)[0] if controllers else "",
                   proxies=tuple(sorted(proxies or ())))


def load_cluster(app: App, full: bool = True) -> Cluster:
    """The cluster from the inventory; Conflict when object storage is not deployed there.
    ``full`` also needs the controller and the proxies (commands that change rings)."""
    groups = {NODE_GROUP: "the storage nodes"}
    if full:
        groups |= {CONTROLLER_GROUP: "the ring builders live there",
                   PROXY_GROUP: "they read the rings too"}
    found = {name: app.runner.inventory_hostvars(name) for name in groups}  # one inventory read
    for name, why in groups.items():
        if not found[name]:
            raise Conflict(f"object storage is not deployed: the inventory "
                           f"{app.config.inventory} has no hosts in its '{name}' group ({why})")
    return cluster_from_hostvars(found[NODE_GROUP], found.get(CONTROLLER_GROUP, {}),
                                 found.get(PROXY_GROUP, {}))


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size, limit in (("s", 1, 120), ("m", 60, 7200), ("h", 3600, 172800)):
        if seconds < limit:
            return f"{seconds // size}{unit}"
    return f"{seconds // 86400}d"


# ---------------------------------------------------------------------------------------------
# Ring changes


def ring_task(cluster: Cluster, ring: str, verb: str, **args: Any) -> Task:
    return Task("stack_ring", {"name": ring, "swift_dir": cluster.builder_dir, **args},
                name=f"{verb} the {ring} ring")


def copy_ring_task(cluster: Cluster, ring: str) -> Task:
    # The controller's builder directory is read where Ansible runs, as roles/swift_common does.
    return Task("ansible.builtin.copy",
                {"src": f"{cluster.builder_dir}/{ring}.ring.gz",
                 "dest": HostVar("swift_conf_dir", "/etc/swift", suffix=f"/{ring}.ring.gz"),
                 "owner": "root", "group": HostVar("swift_user", "swift"), "mode": "0640"},
                name=f"copy the {ring} ring")


def ring_note(summary: Mapping) -> str:
    """What a user should know about one ring after a stack_ring run."""
    left = summary["min_part_seconds_left"]
    balance = summary["balance"]
    if summary["min_part_hours_blocked"]:
        return (f"min_part_hours kept recently moved partitions in place; rebalance again in "
                f"{duration(left)}")
    if "rebalance" not in summary["actions"] and balance is not None \
            and balance >= BALANCE_SLACK and left > 0:
        return f"balance {balance:g}%: partitions may move again in {duration(left)}"
    return "" if summary["actions"] else "no change"


def ring_summary(ring: str, res: Mapping) -> dict:
    """A row of the ring table from a stack_ring result."""
    facts = res.get("ring") or {}
    summary = {"ring": ring, "changed": bool(res.get("changed")),
               "parts_moved": int(res.get("parts_moved") or 0),
               "balance": facts.get("balance"),
               "min_part_hours_blocked": bool(res.get("min_part_hours_blocked")),
               "min_part_seconds_left": int(res.get("min_part_seconds_left") or 0),
               "actions": [str(a.get("action")) for a in res.get("actions") or []]}
    summary["note"] = ring_note(summary)
    return summary


def device_rows(ring: str, facts: Mapping, cluster: Cluster) -> list[dict]:
    """The devices of a ring's stack_ring facts, each with the storage node it is on."""
    rows = []
    for dev in facts.get("devices") or []:
        host = next((n.host for n in cluster.nodes.values()
                     if same_ip(n.ip, dev.get("ip")) and n.ring_port(ring) == dev.get("port")),
                    None)
        rows.append({"host": host, "device": dev.get("device"), "weight": dev.get("weight"),
                     "zone": dev.get("zone"), "region": dev.get("region"), "ip": dev.get("ip"),
                     "port": dev.get("port"), "parts": dev.get("parts"), "id": dev.get("id")})
    return rows


@dataclass
class _Run:
    """One command's calls to the hosts, its progress and what it has to tell."""

    app: App
    cluster: Cluster
    ui: StepProgress | None = None
    notes: list[str] = field(default_factory=list)

    def step(self, text: str) -> None:
        if self.ui is not None:
            self.ui.step(text)

    def on(self, host: str, tasks: list[Task]) -> list[dict]:
        return self.app.runner.run_tasks(host, tasks, self.ui.task if self.ui else None,
                                         label="storage")

    def rings(self, args: Mapping[str, dict], verb: str) -> dict[str, dict]:
        """stack_ring on the controller for each ring in ``args``; results by ring."""
        tasks = [ring_task(self.cluster, ring, verb, **a) for ring, a in args.items()]
        try:
            return dict(zip(args, self.on(self.cluster.controller, tasks), strict=True))
        except BackendError as exc:
            raise BackendError(f"{exc} (a ring changed before this failure is not on the "
                               "nodes yet: `stackctl storage rebalance` copies it)") from None

    def read_rings(self) -> dict[str, dict]:
        """Each ring's facts. stack_ring with no changes asked (the runner has no check mode):
        a no-op on a settled ring; a change no rebalance has placed yet is placed now, so the
        command distributes the rings afterwards in any case."""
        self.step(f"reading the rings on {self.cluster.controller}")
        results = self.rings({ring: {} for ring in self.cluster.rings}, "read")
        for ring, res in results.items():
            if res.get("changed"):
                self.notes.append(f"the {ring} ring held changes no rebalance had placed yet: "
                                  "placed now")
        return {ring: res.get("ring") or {} for ring, res in results.items()}

    def distribute(self) -> list[str]:
        hosts = self.cluster.ring_hosts
        self.step(f"copying the rings to {', '.join(hosts)}")
        tasks = [copy_ring_task(self.cluster, ring) for ring in self.cluster.rings]
        outcomes = self.app.runner.run_each(hosts, tasks, self.ui.task if self.ui else None,
                                            label="storage-rings")
        failed = sorted((h, o.error) for h, o in outcomes.items() if o.error)
        if failed:
            host, error = failed[0]
            raise BackendError(f"the rings changed on {self.cluster.controller} but could not be "
                               f"copied to {host}: {error}"
                               + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else "")
                               + "; `stackctl storage rebalance` copies them again")
        return hosts


def _start(app: App, ui: StepProgress | None) -> _Run:
    return _Run(app, load_cluster(app), ui)


def _refuse_inventory_device(node: Node, name: str, what: str) -> None:
    if name in node.inventory_devices:
        raise Conflict(f"device {name} of {node.host} is listed in the inventory's "
                       f"swift_devices: {what}")


def add_device(app: App, host: str, name: str, weight: float = DEFAULT_WEIGHT,
               size_gb: int | None = None, disk: str | None = None,
               ui: StepProgress | None = None) -> dict:
    """Prepare and mount device ``name`` on ``host`` and add it to every ring."""
    check_device_name(name)
    weight = check_weight(weight)
    source = device_source(size_gb, disk)
    run = _start(app, ui)
    node = run.cluster.node(host)
    _refuse_inventory_device(node, name, "`stackctl deploy` manages it")
    run.step(f"preparing device {name} on {host}")
    args = {"name": name, "mount_root": HostVar("swift_devices_root", "/srv/node"),
            "owner": HostVar("swift_user", "swift"), **source}
    if "size_gb" in source:
        args["loop_file"] = HostVar("swift_loop_dir", "/var/lib/stackctl/swift",
                                    suffix=f"/{name}.img")
    device = run.on(host, [Task("stack_storage_device", args, name=f"prepare device {name}")])
    run.step(f"adding {name} to the rings on {run.cluster.controller}")
    results = run.rings({ring: {"devices": [node.ring_device(ring, name, weight)],
                                "purge": False, "keep_weights": True}
                         for ring in run.cluster.rings}, "add the device to")
    summaries = [ring_summary(ring, res) for ring, res in results.items()]
    for summary in summaries:
        if "add_device" not in summary["actions"]:
            run.notes.append(f"{name} was already in the {summary['ring']} ring: its weight "
                             "stays as it is (`stackctl storage device set-weight` changes it)")
    if weight == 0:
        run.notes.append(f"{name} has weight 0: it takes no partitions until "
                         "`stackctl storage device set-weight`")
    copied = run.distribute()
    facts = (device[0].get("device") if device else None) or {}
    return {"host": host, "device": name, "weight": weight,
            "mount_point": facts.get("mount_point"), "source": facts.get("source"),
            "rings": summaries, "copied_to": copied, "notes": run.notes}


def set_weight(app: App, host: str, name: str, weight: float,
               ui: StepProgress | None = None) -> dict:
    """Give device ``name`` of ``host`` a new weight in every ring that has it."""
    check_device_name(name)
    weight = check_weight(weight)
    run = _start(app, ui)
    node = run.cluster.node(host)
    found = _found(node, run.read_rings(), name)
    if not found:
        raise NotFound(f"device {name} of {host} is in no ring (`stackctl storage device add` "
                       "adds it)")
    run.step(f"setting the weight of {name} to {weight:g}")
    # The ring's own zone and region: the inventory's could have changed since, and a new zone
    # would move every partition of the device.
    results = run.rings({ring: {"devices": [{**_ring_fields(dev), "weight": weight}],
                                "purge": False, "keep_weights": False}
                         for ring, dev in found.items()}, "set the weight in")
    copied = run.distribute()
    return {"host": host, "device": name, "weight": weight,
            "rings": [ring_summary(ring, res) for ring, res in results.items()],
            "copied_to": copied, "notes": run.notes}


def _found(node: Node, facts: Mapping[str, Mapping], name: str) -> dict[str, dict]:
    """The rings that have device ``name`` of ``node``, with its entry in each."""
    found = {ring: node.find(ring, ring_facts, name) for ring, ring_facts in facts.items()}
    return {ring: dev for ring, dev in found.items() if dev is not None}


def _ring_fields(dev: Mapping) -> dict:
    return {k: dev[k] for k in ("region", "zone", "ip", "port", "device", "weight")}


def drain_problems(found: Mapping[str, Mapping]) -> list[str]:
    """Why a device is not drained yet: a weight, or partitions, in some of its rings."""
    weights = {ring: float(dev.get("weight") or 0) for ring, dev in found.items()}
    parts = {ring: int(dev.get("parts") or 0) for ring, dev in found.items()}
    problems = []
    if any(weights.values()):
        problems.append("weight in its rings (" + ", ".join(
            f"{ring} {w:g}" for ring, w in weights.items() if w) + ")")
    if any(parts.values()):
        problems.append("partitions in its rings (" + ", ".join(
            f"{ring} {n}" for ring, n in parts.items() if n) + ")")
    return problems


def _refuse_data(run: _Run, host: str, name: str) -> None:
    """Conflict when the device still holds Swift files (the first one found is named)."""
    run.step(f"checking that {name} on {host} holds no Swift data")
    files = run.on(host, [Task("ansible.builtin.find", {
        "paths": HostVar("swift_devices_root", "/srv/node", suffix=f"/{name}"),
        "patterns": DATA_PATTERNS, "recurse": True, "file_type": "file", "limit": 1},
        name=f"look for Swift data on {name}")])[0].get("files") or []
    if files:
        raise Conflict(f"device {name} of {host} still holds Swift data ({files[0].get('path')}): "
                       "replication has not moved it off yet; try again later, or --force to "
                       "drop it")


def remove_device(app: App, host: str, name: str, wipe: bool = False, force: bool = False,
                  ui: StepProgress | None = None) -> dict:
    """Take device ``name`` of ``host`` out of every ring; with ``wipe`` also unmount it and
    delete its loop file. Refused while it is not drained (weight 0, no partitions, no Swift
    files), because Swift replicates only devices in a ring: data left on a removed device is
    no longer served or moved. ``force`` removes it anyway (a dead disk whose replicas live
    elsewhere)."""
    check_device_name(name)
    run = _start(app, ui)
    node = run.cluster.node(host)
    _refuse_inventory_device(node, name, "remove it from the inventory first")
    facts = run.read_rings()
    found = _found(node, facts, name)
    if not found and not wipe:
        raise NotFound(f"device {name} of {host} is in no ring")
    problems = drain_problems(found)
    if problems and not force:
        raise Conflict(f"device {name} of {host} still has {' and '.join(problems)}: drain it "
                       f"first (`stackctl storage device set-weight {host} {name} 0`, then "
                       "`stackctl storage rebalance` once min_part_hours allows, until it holds "
                       "no partitions), or --force to drop its replicas")
    if not force:
        _refuse_data(run, host, name)
    summaries = []
    if found:
        run.step(f"removing {name} from the rings on {run.cluster.controller}")
        # The whole list minus the device, purged: the ring's weights and zones as they are.
        keep = {ring: [_ring_fields(d) for d in facts[ring].get("devices") or []
                       if d is not found[ring]] for ring in found}
        results = run.rings({ring: {"devices": devs, "purge": True, "keep_weights": True}
                             for ring, devs in keep.items()}, "remove the device from")
        summaries = [ring_summary(ring, res) for ring, res in results.items()]
    copied = run.distribute()
    if wipe:
        run.step(f"unmounting {name} on {host} and deleting its loop file")
        mount_point = HostVar("swift_devices_root", "/srv/node", suffix=f"/{name}")
        try:
            run.on(host, [
                Task("stack_storage_device", {
                    "name": name, "state": "absent",
                    "mount_root": HostVar("swift_devices_root", "/srv/node"),
                    "loop_file": HostVar("swift_loop_dir", "/var/lib/stackctl/swift",
                                         suffix=f"/{name}.img")}, name=f"remove device {name}"),
                # The module leaves the empty mount point, which recon would go on listing as
                # an unmounted device; rmdir removes only an empty directory.
                Task("ansible.builtin.command", {"argv": ["rmdir", mount_point],
                                                 "removes": mount_point},
                     name=f"remove the mount point of {name}")])
        except BackendError as exc:
            raise BackendError(f"{name} is out of the rings, but wiping it failed: {exc} (the "
                               "same command again finishes it)") from None
    else:
        run.notes.append(f"{name} stays mounted on {host} with whatever it holds; Swift no "
                         f"longer uses it. `stackctl storage device remove {host} {name} --wipe` "
                         "unmounts it and deletes its loop file")
    return {"host": host, "device": name, "wiped": wipe, "rings": summaries,
            "copied_to": copied, "notes": run.notes}



def rebalance(app: App, ui: StepProgress | None = None) -> dict:
    """Rebalance every ring that needs it (a change not placed yet, or one min_part_hours held
    back and whose time has come), then copy the rings to every node and proxy."""
    run = _start(app, ui)
    run.step(f"rebalancing the rings on {run.cluster.controller}")
    results = run.rings({ring: {} for ring in run.cluster.rings}, "rebalance")
    copied = run.distribute()
    return {"rings": [ring_summary(ring, res) for ring, res in results.items()],
            "copied_to": copied, "notes": run.notes}


def list_devices(app: App, ui: StepProgress | None = None) -> tuple[list[dict], list[str]]:
    """The object ring's devices (weight, zone, partitions) and notes."""
    run = _start(app, ui)
    run.step(f"reading the object ring on {run.cluster.controller}")
    res = run.rings({"object": {}}, "read")["object"]
    if res.get("changed"):
        run.notes.append("the object ring held changes no rebalance had placed yet: placed now")
        run.distribute()
    return device_rows("object", res.get("ring") or {}, run.cluster), run.notes
