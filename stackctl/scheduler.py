"""Placing a VM on a host: pure filters and weighers over plain dataclasses, then ``claim``.

Like Nova's filter scheduler: every filter may reject a host with a reason; the survivors are
ordered by the weigher (``spread``: most free RAM first, ``pack``: least free RAM first; ties
by name so the choice is deterministic). Capacity is ``total * allocation_ratio - used``.
A request may name a server group: ``affinity`` keeps it on the host(s) its members are on,
``anti-affinity`` off every host that holds one. ``claim`` does the same inside the locked write
transaction and inserts the VM row (and its group membership), so usage and membership read
and slot taken are one atomic step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from stackcore.errors import Conflict, NotFound

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from stackctl.models import VM


@dataclass(frozen=True)
class HostState:
    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int
    enabled: bool = True


@dataclass(frozen=True)
class Usage:
    vcpus: int = 0
    ram_mb: int = 0
    disk_gb: int = 0
    instances: int = 0


@dataclass(frozen=True)
class GroupState:
    """A server group as the scheduler sees it: ``members`` maps a host to the names of the
    group's VMs on it (hosts without members are absent)."""

    name: str
    policy: str  # "affinity" | "anti-affinity"
    members: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    vcpus: int
    ram_mb: int
    disk_gb: int
    group: GroupState | None = None  # the server group the VM joins (as Nova's RequestSpec)

    def __str__(self) -> str:
        return f"{self.vcpus} vCPU, {self.ram_mb} MiB RAM, {self.disk_gb} GiB disk"


@dataclass(frozen=True)
class Rejection:
    """Why a filter refused a host, phrased to complete "no host ..." and "<host> ...".

    ``need``: "has 512 MiB RAM free"; ``have``: "has 100 MiB"; ``detail``: the same with its
    unit, used when hosts fail for different reasons ("has 100 MiB RAM free").
    """

    host: str
    need: str
    have: str
    detail: str


# A filter returns None when the host passes, else why not.
Filter = Callable[[HostState, Usage, Request, "Policy"], Rejection | None]


@dataclass(frozen=True)
class Policy:
    cpu_allocation_ratio: float = 16.0
    ram_allocation_ratio: float = 1.5
    disk_allocation_ratio: float = 1.0
    weigher: str = "spread"
    # Hook for site-specific filters, run after the defaults.
    extra_filters: tuple[Filter, ...] = field(default_factory=tuple)


def free_ram_mb(host: HostState, usage: Usage, policy: Policy) -> int:
    return int(host.ram_mb * policy.ram_allocation_ratio) - usage.ram_mb


def free_vcpus(host: HostState, usage: Usage, policy: Policy) -> int:
    return int(host.vcpus * policy.cpu_allocation_ratio) - usage.vcpus


def free_disk_gb(host: HostState, usage: Usage, policy: Policy) -> int:
    return int(host.disk_gb * policy.disk_allocation_ratio) - usage.disk_gb


def enabled_filter(host: HostState, usage: Usage, request: Request, policy: Policy):
    if host.enabled:
        return None
    return Rejection(host.name, "is enabled", "is disabled", "is disabled")


def ram_filter(host: HostState, usage: Usage, request: Request, policy: Policy):
    free = free_ram_mb(host, usage, policy)
    if free >= request.ram_mb:
        return None
    free = max(free, 0)
    return Rejection(host.name, f"has {request.ram_mb} MiB RAM free", f"has {free} MiB",
                     f"has {free} MiB RAM free")


def vcpu_filter(host: HostState, usage: Usage, request: Request, policy: Policy):
    free = free_vcpus(host, usage, policy)
    if free >= request.vcpus:
        return None
    free = max(free, 0)
    return Rejection(host.name, f"has {request.vcpus} vCPU free", f"has {free} vCPU",
                     f"has {free} vCPU free")


def disk_filter(host: HostState, usage: Usage, request: Request, policy: Policy):
    free = free_disk_gb(host, usage, policy)
    if free >= request.disk_gb:
        return None
    free = max(free, 0)
    return Rejection(host.name, f"has {request.disk_gb} GiB disk free", f"has {free} GiB",
                     f"has {free} GiB disk free")


def affinity_filter(host: HostState, usage: Usage, request: Request, policy: Policy):
    """An affinity group's VMs go where its members are; an empty group goes anywhere."""
    group = request.group
    if group is None or group.policy != "affinity" or not group.members:
        return None
    if host.name in group.members:
        return None
    what = f"server group {group.name!r} (affinity)"
    return Rejection(host.name, f"holds {what}", "holds none of its members",
                     f"holds no member of {what}")


def anti_affinity_filter(host: HostState, usage: Usage, request: Request, policy: Policy):
    """An anti-affinity group's VMs go to hosts that hold none of its members."""
    group = request.group
    if group is None or group.policy != "anti-affinity":
        return None
    names = group.members.get(host.name)
    if not names:
        return None
    what = f"server group {group.name!r} (anti-affinity)"
    held = _and_list(sorted(names))
    return Rejection(host.name, f"is free of {what}", f"holds {held}",
                     f"holds {held} of {what}")


def _and_list(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


# A host gets the first rejection that applies: being disabled or the group's placement rule
# say more about a host than whether it has room.
DEFAULT_FILTERS: tuple[Filter, ...] = (enabled_filter, affinity_filter, anti_affinity_filter,
                                       ram_filter, vcpu_filter, disk_filter)


def weigh(hosts: Iterable[HostState], usage: Mapping[str, Usage], policy: Policy):
    """Hosts best first: ``spread`` prefers the most free RAM, ``pack`` the least."""
    sign = -1 if policy.weigher == "spread" else 1

    def key(host: HostState):
        return (sign * free_ram_mb(host, usage.get(host.name, Usage()), policy), host.name)

    return sorted(hosts, key=key)


def select_host(
    hosts: Sequence[HostState],
    usage: Mapping[str, Usage],
    request: Request,
    policy: Policy = Policy(),
) -> HostState:
    """The best host for ``request``, or Conflict saying why no host fits."""
    if not hosts:
        raise Conflict("no hypervisor hosts are known: run 'stackctl host refresh'")
    survivors, rejections = [], []
    for host in hosts:
        used = usage.get(host.name, Usage())
        for check in DEFAULT_FILTERS + tuple(policy.extra_filters):
            rejection = check(host, used, request, policy)
            if rejection is not None:
                rejections.append(rejection)
                break
        else:
            survivors.append(host)
    if not survivors:
        raise Conflict(_explain(request, rejections))
    return weigh(survivors, usage, policy)[0]


def _explain(request: Request, rejections: list[Rejection]) -> str:
    needs = {r.need for r in rejections}
    if len(needs) == 1:
        details = ", ".join(f"{r.host} {r.have}" for r in rejections)
        return f"no host {needs.pop()}: {details}"
    details = ", ".join(f"{r.host} {r.detail}" for r in rejections)
    return f"no host fits {request}: {details}"


# --- the database part ------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimRequest:
    """What the VM row needs; sizes come from the flavor."""

    uuid: str
    tenant_id: int
    name: str
    flavor_id: int
    image_id: str
    keypair_id: int | None
    vcpus: int
    ram_mb: int
    disk_gb: int
    mac: str
    ssh_public_key: str | None = None
    user_data: str | None = None
    group_id: int | None = None  # a server group of the same tenant


def usage_by_host(session: Session) -> dict[str, Usage]:
    """Sum the sizes of every VM row placed on a host (any state: a stopped VM keeps its slot)."""
    from sqlalchemy import func, select

    from stackctl.models import VM, Host

    rows = session.execute(
        select(Host.name, func.sum(VM.vcpus), func.sum(VM.ram_mb), func.sum(VM.disk_gb),
               func.count(VM.uuid))
        .join(VM, VM.host_id == Host.id)
        .group_by(Host.name)
    )
    usage = {name: Usage(int(c), int(r), int(d), int(n)) for name, c, r, d, n in rows}
    # A VM on its way to a host holds its slot there as well (``VM.migration_host_id``).
    moving = session.execute(
        select(Host.name, func.sum(VM.vcpus), func.sum(VM.ram_mb), func.sum(VM.disk_gb),
               func.count(VM.uuid))
        .join(VM, VM.migration_host_id == Host.id)
        .group_by(Host.name)
    )
    for name, c, r, d, n in moving:
        old = usage.get(name, Usage())
        usage[name] = Usage(old.vcpus + int(c), old.ram_mb + int(r), old.disk_gb + int(d),
                            old.instances + int(n))
    return usage


def group_state(session: Session, group_id: int, tenant_id: int) -> GroupState:
    """The group's policy and which of its members are on which host (read under the claim's
    lock, so a concurrent claim into the same group is seen)."""
    from sqlalchemy import select

    from stackctl.models import VM, Host, ServerGroup, ServerGroupMember

    group = session.get(ServerGroup, group_id)
    if group is None or group.tenant_id != tenant_id:
        raise NotFound("the server group was deleted while the VM was being placed")
    rows = session.execute(
        select(Host.name, VM.name)
        .join(VM, VM.host_id == Host.id)
        .join(ServerGroupMember, ServerGroupMember.vm_uuid == VM.uuid)
        .where(ServerGroupMember.group_id == group_id)
        .order_by(Host.name, VM.name)
    )
    members: dict[str, tuple[str, ...]] = {}
    for host, vm in rows:
        members[host] = (*members.get(host, ()), vm)
    return GroupState(group.name, group.policy, members)


def claim(session: Session, request: ClaimRequest, policy: Policy = Policy()) -> VM:
    """Choose a host and insert the VM row on it, inside the caller's write transaction.

    The caller commits. On SQLite the write session's ``BEGIN IMMEDIATE`` serialises claims;
    on PostgreSQL the host rows are locked ``FOR UPDATE`` before usage and the server group's
    membership are read, and the membership row is inserted with the VM row.
    """
    from sqlalchemy import select

    from stackctl.db import lock_hosts
    from stackctl.models import VM, ServerGroupMember

    hosts = lock_hosts(session)
    taken = session.scalar(
        select(VM.uuid).where(VM.tenant_id == request.tenant_id, VM.name == request.name)
    )
    if taken:
        raise Conflict(f"a VM named {request.name!r} already exists")
    group = (group_state(session, request.group_id, request.tenant_id)
             if request.group_id is not None else None)
    states = [HostState(h.name, h.vcpus, h.ram_mb, h.disk_gb, h.enabled) for h in hosts]
    wanted = Request(request.vcpus, request.ram_mb, request.disk_gb, group)
    chosen = select_host(states, usage_by_host(session), wanted, policy)
    host = next(h for h in hosts if h.name == chosen.name)
    vm = VM(
        uuid=request.uuid, tenant_id=request.tenant_id, name=request.name, host_id=host.id,
        flavor_id=request.flavor_id, image_id=request.image_id, keypair_id=request.keypair_id,
        vcpus=request.vcpus, ram_mb=request.ram_mb, disk_gb=request.disk_gb, state="building",
        mac=request.mac, ssh_public_key=request.ssh_public_key, user_data=request.user_data,
    )
    session.add(vm)
    session.flush()
    if request.group_id is not None:
        session.add(ServerGroupMember(vm_uuid=vm.uuid, group_id=request.group_id))
        session.flush()
    return vm
