"""``stackctl plan``: what a rollout of playbooks/site.yml would change, host by host.

The pure part turns the events of a ``--check --diff`` run into one ``HostPlan`` per host:
the tasks that would change (task, role and a short summary: files with +/- line counts,
modes, packages to install or upgrade, daemons to start or restart), the services that would
restart (daemon tasks and notified handlers) and, on hypervisors, the running VMs a libvirtd
restart or a provider network change touches. ``run`` at the end is the thin edge: the check
run through the same runner path ``deploy`` uses, and the VM rows from the database.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stackctl.app import App

CHANGES_PENDING = 10  # exit code of ``stackctl plan`` when a rollout would change something

LIBVIRTD_RESTART = ("libvirtd restarts: its guests keep running (QEMU processes outlive "
                    "libvirtd, which reconnects to them)")
QEMU_UPGRADE = ("QEMU is upgraded: running guests keep their QEMU process (the new version "
                "applies when a guest is next started)")
_DAEMON_MODULES = {"stack_daemon", "service", "systemd_service", "systemd", "sysvinit"}
_QEMU_PACKAGE = re.compile(r"^qemu-(system|utils|block)")
_APT_LINE = re.compile(r"^Inst (\S+)(?: \[([^\]]+)\])? \((\S+)")
_HANDLER = re.compile(r"^\s*(restart|reload|start)\s+(?:the\s+)?(.+?)(?:\s+(?:service|daemon))?"
                      r"\s*$", re.I)


@dataclass
class Change:
    """One task (or loop item) that would change something on a host."""

    task: str
    role: str | None
    module: str
    summary: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"task": self.task, "role": self.role, "module": self.module,
                "summary": list(self.summary)}


@dataclass
class HostPlan:
    """What a rollout would do to one host."""

    host: str
    changes: list[Change] = field(default_factory=list)
    restarts: list[str] = field(default_factory=list)  # "restart rsyncd", "start libvirtd"
    vm_effects: list[str] = field(default_factory=list)  # why (and how) its VMs are touched
    vms_touched: list[dict] = field(default_factory=list)  # {name, tenant, uuid, state}
    failed: list[str] = field(default_factory=list)
    network_changed: bool = False
    libvirtd_restarts: bool = False
    qemu_upgraded: bool = False

    @property
    def pending(self) -> bool:
        return bool(self.changes or self.restarts)

    def row(self) -> dict:
        """The summary table's row: HOST, CHANGES, RESTARTS, VMS TOUCHED."""
        touched = "-"
        if self.vms_touched:
            names = ", ".join(v["name"] for v in self.vms_touched)
            touched = f"{len(self.vms_touched)}: {names}"
        return {"host": self.host, "changes": len(self.changes),
                "restarts": ", ".join(self.restarts) or "-", "vms_touched": touched,
                "failed": len(self.failed)}

    def to_dict(self) -> dict:
        return {"host": self.host, "changes": [c.to_dict() for c in self.changes],
                "restarts": list(self.restarts), "vms_touched": list(self.vms_touched),
                "vm_effects": list(self.vm_effects), "failed": list(self.failed)}


# --- events -> plans (pure) ----------------------------------------------------------------


def summarise(events: Iterable[Mapping], vms: Mapping[str, list[dict]] | None = None,
              hypervisors: Iterable[str] = ()) -> dict[str, HostPlan]:
    """One plan per host seen in ``events`` (ansible-runner events of a check run).

    ``vms``: host -> the controller's VM rows there (``{name, tenant, uuid, state}``);
    ``hypervisors``: the hosts whose VMs a libvirtd restart or network change touches.
    """
    plans: dict[str, HostPlan] = {}
    for event in events:
        _take(plans, event)
    hypervisor_set = set(hypervisors)
    for host, plan in plans.items():
        plan.restarts = _unique(plan.restarts)
        if host in hypervisor_set or plan.libvirtd_restarts or plan.network_changed:
            _touch_vms(plan, (vms or {}).get(host, []))
    return dict(sorted(plans.items()))


def _take(plans: dict[str, HostPlan], event: Mapping) -> None:
    kind = event.get("event", "")
    data = event.get("event_data") or {}
    if kind == "playbook_on_stats":
        for key in ("ok", "changed", "failures", "dark", "skipped"):
            for host in data.get(key) or {}:
                plans.setdefault(host, HostPlan(host))
        return
    host = data.get("host")
    if not host:
        return
    plan = plans.setdefault(host, HostPlan(host))
    res = data.get("res") or {}
    if kind == "playbook_on_notify":
        plan.restarts.append(handler_restart(str(data.get("handler", ""))))
    elif kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
        plan.failed.append(f"{data.get('task', '')}: {_failure(res)}")
    elif kind == "runner_on_ok":
        for item in res.get("results") or [res]:
            if isinstance(item, Mapping) and item.get("changed"):
                _add_change(plan, data, item)


def _add_change(plan: HostPlan, data: Mapping, res: Mapping) -> None:
    module = str(data.get("resolved_action") or data.get("task_action") or "").rsplit(".", 1)[-1]
    label = res.get("_ansible_item_label", res.get("item"))
    task = str(data.get("task", ""))
    if label is not None and not isinstance(label, Mapping | list):
        task = f"{task} ({label})"
    plan.changes.append(Change(task, data.get("role"), module, describe(module, res)))
    restart = daemon_restart(module, res)
    if restart is not None:
        plan.restarts.append(restart)
        plan.libvirtd_restarts |= restart in ("restart libvirtd", "stop libvirtd")
    if module == "stack_network":
        plan.network_changed = True
    if module == "apt" and any(_QEMU_PACKAGE.match(p) for p in apt_packages(res)):
        plan.qemu_upgraded = True


def describe(module: str, res: Mapping) -> list[str]:
    """A short summary of one changed result: what the diff, packages or actions say."""
    if module == "apt":
        lines = [f"{verb} {text}" for verb, _, text in _apt_lines(res)]
        return lines or [f"packages: {', '.join(_names(res)) or 'unknown'}"]
    if module == "pip":
        args = _module_args(res)
        where = f" in {args['virtualenv']}" if args.get("virtualenv") else ""
        return [f"pip {', '.join(_names(res)) or 'packages'}{where}"]
    lines = diff_summary(res.get("diff"), _path(res))
    actions = res.get("actions")
    if isinstance(actions, list) and actions and all(isinstance(a, str) for a in actions):
        lines.append("actions: " + ", ".join(actions))
    return lines or ["changed"]


def diff_summary(diff: Any, path: str | None = None) -> list[str]:
    """One line per item of an Ansible diff: ``FILE: +A -R`` for text, ``KEY OLD -> NEW``
    for settings (file modes, owners, a network's or a daemon's state)."""
    lines = []
    for item in diff if isinstance(diff, list) else [diff]:
        if not isinstance(item, Mapping):
            continue
        before, after = item.get("before"), item.get("after")
        # A template's after_header is its temporary source: the destination names the file.
        name = str(path or item.get("before_header") or item.get("after_header") or "")
        if isinstance(before, str) or isinstance(after, str):
            added, removed = line_counts(str(before or ""), str(after or ""))
            lines.append(f"{name or 'content'}: +{added} -{removed}")
        elif isinstance(before, Mapping) or isinstance(after, Mapping):
            keys = _changed_keys(before or {}, after or {})
            where = str((after or {}).get("path") or (before or {}).get("path") or path or "")
            if keys:
                lines.append(f"{where + ': ' if where else ''}{', '.join(keys)}")
        elif item.get("prepared"):
            lines.append(str(item["prepared"]).strip().splitlines()[0][:120])
    return lines


def line_counts(before: str, after: str) -> tuple[int, int]:
    """Lines added and removed between two texts (a unified diff's + and - lines)."""
    added = removed = 0
    for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0):
        if line.startswith("+") and not line.startswith("+++"):
            added += 1
        elif line.startswith("-") and not line.startswith("---"):
            removed += 1
    return added, removed


def daemon_restart(module: str, res: Mapping) -> str | None:
    """``restart NAME``, ``start NAME`` or ``stop NAME`` for a changed daemon task, else None."""
    if module not in _DAEMON_MODULES:
        return None
    args = _module_args(res)
    name = str(args.get("name") or res.get("name") or "?")
    if module == "stack_daemon":
        actions = [a for a in res.get("actions") or [] if isinstance(a, str)]
        if "stop" in actions and "start" in actions:
            return f"restart {name}"
        if actions:
            return f"{actions[0]} {name}"
    state = str(args.get("state") or res.get("state") or "")
    verb = {"restarted": "restart", "reloaded": "reload", "started": "start",
            "stopped": "stop"}.get(state)
    return f"{verb} {name}" if verb else None


def handler_restart(handler: str) -> str:
    """A notified handler as the service it (re)starts: ``Restart libvirtd`` ->
    ``restart libvirtd``; a name that does not say is kept as it is."""
    match = _HANDLER.match(handler)
    if match is None:
        return f"handler {handler.strip()}"
    return f"{match.group(1).lower()} {match.group(2)}"


def apt_packages(res: Mapping) -> list[str]:
    """Packages an apt result would install or upgrade (from apt-get's simulation)."""
    return [name for _, name, _ in _apt_lines(res)]


def _apt_lines(res: Mapping) -> list[tuple[str, str, str]]:
    """(verb, package, text) per ``Inst`` line of apt-get's output or the diff apt prepared."""
    texts = [str(res.get("stdout") or "")]
    diff = res.get("diff")
    for item in diff if isinstance(diff, list) else [diff]:
        if isinstance(item, Mapping) and item.get("prepared"):
            texts.append(str(item["prepared"]))
    out: dict[str, tuple[str, str, str]] = {}
    for line in (ln.strip() for text in texts for ln in text.splitlines()):
        match = _APT_LINE.match(line)
        if match is not None and match.group(1) not in out:
            name, old, new = match.groups()
            out[name] = (("upgrade", name, f"{name} {old} -> {new}") if old
                         else ("install", name, f"{name} {new}"))
    return list(out.values())


def _touch_vms(plan: HostPlan, vms: list[dict]) -> None:
    if plan.libvirtd_restarts:
        plan.vm_effects.append(LIBVIRTD_RESTART)
    if plan.network_changed:
        plan.vm_effects.append("the provider network changes: guests on it may lose "
                               "connectivity while it is redefined or restarted")
    if plan.qemu_upgraded:
        plan.vm_effects.append(QEMU_UPGRADE)
    if plan.libvirtd_restarts or plan.network_changed:
        plan.vms_touched = sorted((dict(v) for v in vms if v.get("state") == "running"),
                                  key=lambda v: (v.get("tenant") or "", v["name"]))


def _changed_keys(before: Mapping, after: Mapping) -> list[str]:
    out = []
    for key in sorted(set(before) | set(after)):
        if key == "path" or before.get(key) == after.get(key):
            continue
        out.append(f"{key} {_short(before.get(key))} -> {_short(after.get(key))}")
    return out


def _short(value: Any) -> str:
    if value is None:
        return "(none)"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _module_args(res: Mapping) -> Mapping:
    return ((res.get("invocation") or {}).get("module_args") or {})


def _names(res: Mapping) -> list[str]:
    names = _module_args(res).get("name") or []
    return [str(n) for n in (names if isinstance(names, list) else [names])]


def _path(res: Mapping) -> str | None:
    args = _module_args(res)
    value = res.get("dest") or res.get("path") or args.get("dest") or args.get("path")
    return str(value) if value else None


def _failure(res: Mapping) -> str:
    from stackctl.runner import failure_message

    return failure_message(res)


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


# --- the thin edge: run the check, read the VM rows ---------------------------------------


@dataclass
class PlanResult:
    status: str
    stats: dict[str, dict[str, int]]
    hosts: dict[str, HostPlan]

    @property
    def pending(self) -> bool:
        return any(p.pending for p in self.hosts.values())


def run(app: App, on_event: Callable[[dict], None] | None = None, *,
        limit: str | None = None, tags: str | None = None) -> PlanResult:
    """Run site.yml with --check --diff (``hosts.deploy``, the path ``deploy`` takes) and
    summarise it per host. Nothing changes on any host."""
    from stackctl.workflows import hosts

    events: list[dict] = []

    def sink(event: dict) -> None:
        events.append(_slim(event))
        if on_event is not None:
            on_event(event)

    status, stats = hosts.deploy(app, sink, check=True, diff=True, limit=limit, tags=tags)
    hypervisors = set(app.runner.inventory_hosts(hosts.HYPERVISOR_GROUP))
    plans = summarise(events, vms_by_host(app), hypervisors)
    return PlanResult(status, stats, plans)


def vms_by_host(app: App) -> dict[str, list[dict]]:
    """The controller's VM rows per host: ``{host: [{name, tenant, uuid, state}]}``."""
    from sqlalchemy import select

    from stackctl.models import VM

    out: dict[str, list[dict]] = {}
    with app.db.read() as session:
        for vm in session.scalars(select(VM).where(VM.host_id.is_not(None))):
            out.setdefault(vm.host.name, []).append(
                {"name": vm.name, "tenant": vm.tenant.name, "uuid": vm.uuid, "state": vm.state})
    return out


def _slim(event: dict) -> dict:
    """What summarise reads of an event (its stdout and start lines are dropped)."""
    return {"event": event.get("event"), "event_data": event.get("event_data") or {}}
