"""Pure decisions for moving VMs: where an interrupted move goes (forward or back) and where
each VM of a draining host goes. Tested by tables (tests/controller/test_move_plan.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from stackcore.errors import Conflict

from stackctl.scheduler import GroupState, HostState, Policy, Request, Usage, select_host

ON = ("running", "paused")


def resolve(source: str | None, target: str, *, live: bool, copied: bool) -> str:
    """``forward`` (finish on the target) or ``back`` (keep it on the source) for a move that
    stopped half-way, from where the domain really is (``source``/``target``: its state on
    each host as ``stack_vm_migrate settle`` reports it: running, paused, stopped, other or
    absent; ``source`` None when that host cannot be reached).

    The rule keeps exactly one copy: a domain running on the target is the VM (QEMU hands over
    to the target only when a live migration completes), so the source copy goes. Otherwise the
    source still has everything (a move never changes the source's disk), so the target's copy
    goes, except after a cold move's disk copy completed with the source stopped (``copied``)
    or when the source no longer has the domain: then the target's copy is started.
    """
    if target in ON:
        if source in ON:
            raise Conflict("the VM is running on both hosts: refusing to choose; stop the copy "
                           "that is not serving and run 'stackctl recover' again")
        return "forward"
    if source is None:
        raise Conflict("the source host cannot be reached and the VM is not running on the "
                       "target: nothing can be decided safely (evacuate the host if it is down)")
    if source == "absent":
        if target == "absent":
            raise Conflict("the VM's domain is on neither host")
        return "forward"
    if source in ON:
        return "back"
    return "forward" if copied and not live and target == "stopped" else "back"


@dataclass(frozen=True)
class Mover:
    """A VM to move off a host: its sizes, its server group (if any) and its power state."""

    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int
    state: str
    group: str | None = None


@dataclass(frozen=True)
class Move:
    vm: str
    target: str | None  # None: cannot move
    mode: str  # live | cold | none
    reason: str = ""


def plan_drain(source: str, movers: Sequence[Mover], hosts: Sequence[HostState],
               usage: Mapping[str, Usage], groups: Mapping[str, GroupState],
               policy: Policy, live: bool = True) -> list[Move]:
    """Where each VM of ``source`` goes, chosen one after another as the scheduler would
    (capacity and server-group rules include the moves planned before it). A VM that cannot
    go anywhere gets ``target=None`` and the scheduler's reason."""
    usage = dict(usage)
    groups = dict(groups)
    others = [h for h in hosts if h.name != source]
    moves = []
    for vm in movers:
        if vm.state not in ("running", "stopped"):
            moves.append(Move(vm.name, None, "none", f"is {vm.state}: only running or stopped "
                              "VMs can move ('vm set-state' fixes a stuck one)"))
            continue
        group = without(groups.get(vm.group), vm.name, source) if vm.group else None
        request = Request(vm.vcpus, vm.ram_mb, vm.disk_gb, group)
        try:
            chosen = select_host(others, usage, request, policy)
        except Conflict as exc:
            moves.append(Move(vm.name, None, "none", str(exc)))
            continue
        mode = "live" if live and vm.state == "running" else "cold"
        moves.append(Move(vm.name, chosen.name, mode))
        old = usage.get(chosen.name, Usage())
        usage[chosen.name] = Usage(old.vcpus + vm.vcpus, old.ram_mb + vm.ram_mb,
                                   old.disk_gb + vm.disk_gb, old.instances + 1)
        if vm.group and group is not None:
            members = dict(groups[vm.group].members)
            members = {h: tuple(n for n in names if n != vm.name) for h, names in members.items()}
            members[chosen.name] = (*members.get(chosen.name, ()), vm.name)
            groups[vm.group] = replace(groups[vm.group],
                                       members={h: n for h, n in members.items() if n})
    return moves


def without(group: GroupState | None, vm: str, leaving: str | None = None) -> GroupState | None:
    """The group as the moving VM sees it: itself not counted as a member, nor (in a drain,
    ``leaving``) the members on the host that every VM is leaving."""
    if group is None:
        return None
    members = {h: tuple(n for n in names if n != vm) for h, names in group.members.items()
               if h != leaving}
    return replace(group, members={h: n for h, n in members.items() if n})
