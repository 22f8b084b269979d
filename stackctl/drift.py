"""Drift between the controller's state and its hosts: a pure function of (rows, host facts).

``stackctl reconcile`` (``stackctl.workflows.reconcile``) gathers the facts and applies the
fixes; everything here is data in, drift items out, and is tested by tables. Kinds, in the
order they are reported:

- ``host-unreachable``: a host did not answer (or left the inventory); its VMs were not checked.
- ``missing-domain``: a VM recorded running or stopped has no domain on its host. Fix: with its
  disk still there, define it again (full spec, recorded power state); without, mark the VM
  ``error`` with a fault (nothing is guessed).
- ``power-state``: the domain is not in the recorded power state. Fix: record the real state
  (a tenant's VM is never started or stopped behind their back).
- ``unknown-domain``: a domain no VM row owns. Reported, never fixed (never deleted).
- ``image-cache``: a host is recorded as holding an image its cache lacks. Fix: forget the
  record, so the next create there caches it again.
- ``ring-mismatch``: a Swift host's ring differs from the controller's builder. Fix: copy the
  controller's ring files there, as the deploy does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from stackctl.journal import power_state

KINDS = ("host-unreachable", "missing-domain", "power-state", "unknown-domain", "image-cache",
         "ring-mismatch")
CHECKED_STATES = ("running", "stopped")  # building/deleting/error: someone else's business

# What --fix does per kind (``fix`` of an item); None: report only.
REDEFINE, MARK_ERROR, RECORD_STATE, FORGET_IMAGE, COPY_RINGS = (
    "redefine", "mark-error", "record-state", "forget-image", "copy-rings")


@dataclass(frozen=True)
class VmRow:
    """What the controller recorded about a VM (``host`` None: not placed)."""

    uuid: str
    tenant: str
    name: str
    host: str | None
    state: str

    @property
    def domain(self) -> str:
        return f"stk-{self.uuid}"

    @property
    def label(self) -> str:
        return f"{self.tenant}/{self.name}"


@dataclass(frozen=True)
class HostFacts:
    """What a hypervisor reported: its domains (name -> virsh state word), the instance
    directories whose disk exists, the sha256s in its image cache; or why it did not answer."""

    domains: Mapping[str, str] = field(default_factory=dict)
    disks: frozenset[str] = frozenset()
    cached: frozenset[str] = frozenset()
    error: str | None = None

    @classmethod
    def from_result(cls, result: Mapping) -> HostFacts:
        """From a ``stack_hypervisor_info`` result."""
        hv = result.get("hypervisor") or {}
        return cls(domains={str(d.get("name")): str(d.get("state", ""))
                            for d in hv.get("domains") or []},
                   disks=frozenset(str(i.get("name")) for i in result.get("instances") or []
                                   if i.get("disk")),
                   cached=frozenset(str(s) for s in result.get("cached_images") or []))


@dataclass(frozen=True)
class RingFacts:
    """A Swift host's ring files (``find`` results: path and checksum), or why none."""

    files: Sequence[Mapping] = ()
    error: str | None = None


@dataclass(frozen=True)
class Drift:
    """One difference. ``fix`` is what ``--fix`` would do (None: nothing, report only);
    ``state`` the VM state to record or to boot into; ``action`` what ``--fix`` did."""

    host: str
    kind: str
    object: str
    detail: str
    fix: str | None = None
    vm_uuid: str | None = None
    state: str | None = None
    recorded: str | None = None  # the VM's state when the drift was found
    action: str | None = None
    fixed: bool = False

    def done(self, action: str, fixed: bool = True) -> Drift:
        return replace(self, action=action, fixed=fixed)

    def to_dict(self) -> dict:
        return {"host": self.host, "kind": self.kind, "object": self.object,
                "detail": self.detail, "fix": self.fix, "action": self.action,
                "fixed": self.fixed}


def vm_drift(vms: Iterable[VmRow], facts: Mapping[str, HostFacts],
             busy: Iterable[str] = ()) -> list[Drift]:
    """Unreachable hosts, missing domains, power-state mismatches and unknown domains.

    ``facts`` holds the hosts that were asked; a VM on any other host is not checked. A VM in
    ``busy`` (an operation on it is still running) is neither checked nor unknown."""
    vms, busy = list(vms), set(busy)
    items = [Drift(host, "host-unreachable", host, f.error)
             for host, f in facts.items() if f.error]
    owners = {vm.domain: vm for vm in vms}
    for vm in vms:
        f = facts.get(vm.host) if vm.host else None
        if f is None or f.error or vm.uuid in busy or vm.state not in CHECKED_STATES:
            continue
        item = _vm_item(vm, f)
        if item is not None:
            items.append(item)
    for host, f in facts.items():
        for domain, state in f.domains.items():
            owner = owners.get(domain)
            if owner is None or owner.host != host:
                items.append(_unknown(host, domain, state, owner))
    return items


def _vm_item(vm: VmRow, f: HostFacts) -> Drift | None:
    host = vm.host or ""
    word = f.domains.get(vm.domain)
    if word is None:
        if vm.domain in f.disks:
            return Drift(host, "missing-domain", vm.label,
                         f"recorded {vm.state}, no domain {vm.domain}; its disk is still there",
                         REDEFINE, vm.uuid, vm.state, vm.state)
        return Drift(host, "missing-domain", vm.label,
                     f"recorded {vm.state}, no domain {vm.domain} and no disk", MARK_ERROR,
                     vm.uuid, "error", vm.state)
    real = power_state(word)
    if real != vm.state:
        return Drift(host, "power-state", vm.label,
                     f"recorded {vm.state}, the domain is {word}", RECORD_STATE, vm.uuid, real,
                     vm.state)
    return None


def _unknown(host: str, domain: str, state: str, owner: VmRow | None) -> Drift:
    if owner is not None:
        where = f"on {owner.host}" if owner.host else "on no host"
        detail = f"{state}; the VM {owner.label} that owns this name is recorded {where}"
    elif domain.startswith("stk-"):
        detail = f"{state}; a stackctl domain no VM of this controller owns"
    else:
        detail = f"{state}; defined outside stackctl"
    return Drift(host, "unknown-domain", domain, detail)


def image_drift(recorded: Mapping[str, Iterable[str]],
                facts: Mapping[str, HostFacts]) -> list[Drift]:
    """Images recorded as cached on a host (``host_images``) that its cache does not hold."""
    items = []
    for host, shas in recorded.items():
        f = facts.get(host)
        if f is None or f.error:
            continue
        items += [Drift(host, "image-cache", sha, "recorded as cached, not in the host's cache",
                        FORGET_IMAGE) for sha in sorted(set(shas) - f.cached)]
    return items


def ring_drift(hosts: Mapping[str, RingFacts], builder_files: Sequence[Mapping],
               rings: Sequence[str]) -> list[Drift]:
    """Rings of each Swift host that are missing or differ from the controller's builder."""
    from stackcore.swift_layout import ring_mismatches

    items = []
    for host, f in hosts.items():
        if f.error:
            items.append(Drift(host, "host-unreachable", host, f.error))
            continue
        items += [Drift(host, "ring-mismatch", f"{ring} ring",
                        _ring_detail(ring, f.files), COPY_RINGS)
                  for ring in ring_mismatches(f.files, builder_files, rings)]
    return items


def _ring_detail(ring: str, files: Sequence[Mapping]) -> str:
    have = any(str(f.get("path", "")).endswith(f"/{ring}.ring.gz") for f in files)
    return ("differs from the controller's builder" if have
            else "missing (the controller's builder has it)")


def merge(items: Iterable[Drift]) -> list[Drift]:
    """Sorted by host, kind and object; one ``host-unreachable`` per host."""
    seen, out = set(), []
    for item in sorted(items, key=lambda d: (d.host, KINDS.index(d.kind), d.object)):
        if item.kind == "host-unreachable":
            if item.host in seen:
                continue
            seen.add(item.host)
        out.append(item)
    return out
