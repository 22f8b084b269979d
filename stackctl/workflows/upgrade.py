"""``stackctl upgrade``: a rolling upgrade, one host at a time, journaled so it can resume.

For each host of the plan (hypervisors, then Swift storage nodes and proxies, as
playbooks/upgrade.yml orders them): a hypervisor is drained first (its VMs moved away by
``stackctl.workflows.drain.drain``), then ``upgrade.yml --limit HOST`` upgrades, restarts
and health-checks it, the controller asks libvirtd once more, and the host is enabled again
(unless an operator had disabled it before). The first host that fails stops the run; the
operation is marked ``failed`` with the host, and ``stackctl upgrade --resume`` continues from
that host (the journal's params record ``hosts`` and ``done``). An upgrade whose process died is
marked failed the same way by ``stackctl recover`` (``RECOVERY``).

Journal: operation kind ``upgrade``, one step per host (``host:<name>``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stackcore.errors import BackendError, Conflict, InvalidInput, NotFound, StackError

from stackctl import tasks

if TYPE_CHECKING:
    from stackctl.app import App

KIND = "upgrade"
UPGRADE_PLAYBOOK = "playbooks/upgrade.yml"
GROUPS = ("hypervisors", "storage_nodes", "proxies")  # upgrade.yml's hosts, in its order
RESUME_HINT = "run 'stackctl upgrade --resume' to continue from it"

Drain = Callable[["App", str, Any], object]
Health = Callable[["App", str], None]


# --- the plan (pure) -----------------------------------------------------------------------


def upgrade_order(groups: Mapping[str, Sequence[str]], limit: str | None = None) -> list[str]:
    """Hosts upgrade.yml would visit, in order (each once), narrowed by ``limit``.

    ``limit`` is a comma- or colon-separated list of host names, group names or shell
    patterns (``hv*``), with ``!`` excluding; the subset of Ansible's patterns a host-by-host
    upgrade needs.
    """
    order = list(dict.fromkeys(h for g in GROUPS for h in groups.get(g, ())))
    if limit is None:
        return order
    include, exclude = _limit_terms(limit)
    chosen = {h for term in include for h in _matches(term, order, groups)} if include \
        else set(order)
    chosen -= {h for term in exclude for h in _matches(term, order, groups)}
    return [h for h in order if h in chosen]


def remaining(hosts: Sequence[str], done: Sequence[str]) -> list[str]:
    """Hosts still to upgrade, in order."""
    finished = set(done)
    return [h for h in hosts if h not in finished]


def _limit_terms(limit: str) -> tuple[list[str], list[str]]:
    terms = [t.strip() for t in limit.replace(":", ",").split(",") if t.strip()]
    if not terms or any(t.startswith("-") for t in terms):
        raise InvalidInput(f"invalid --limit {limit!r}")
    return ([t for t in terms if not t.startswith("!")],
            [t[1:] for t in terms if t.startswith("!")])


def _matches(term: str, order: Sequence[str], groups: Mapping[str, Sequence[str]]) -> list[str]:
    if term in groups:
        return list(groups[term])
    return [h for h in order if fnmatch.fnmatchcase(h, term)]


# --- the workflow --------------------------------------------------------------------------


@dataclass
class UpgradeResult:
    """What a run did: the operation, the hosts of the plan and those now done."""

    operation: int
    hosts: list[str]
    done: list[str] = field(default_factory=list)
    upgraded: list[str] = field(default_factory=list)  # by this run

    def to_dict(self) -> dict:
        return {"operation": self.operation, "hosts": self.hosts, "done": self.done,
                "upgraded": self.upgraded}


def upgrade(app: App, ui, *, limit: str | None = None, resume: bool = False,
            drain: Drain | None = None, health: Health | None = None,
            on_event: Callable[[dict], None] | None = None) -> UpgradeResult:
    """Upgrade the fleet host by host (see the module's docstring).

    ``drain(app, host, ui)`` empties a hypervisor (default: ``workflows.drain.drain``, imported only
    when a hypervisor is to be upgraded); ``health(app, host)`` is the controller's own check
    after the playbook (default: libvirtd answers ``stack_hypervisor_info``).
    """
    from stackctl.journal import Journal

    _refuse_concurrent(app)
    if resume:
        if limit is not None:
            raise InvalidInput("--resume continues the interrupted upgrade's hosts: "
                               "it takes no --limit")
        _resumable(app)  # before the inventory is read: the likelier mistake first
    groups = {g: sorted(app.runner.inventory_hosts(g)) for g in GROUPS}
    if resume:
        journal, hosts, done, was_disabled = _take_over(app)
    else:
        hosts = upgrade_order(groups, limit)
        if not hosts:
            raise NotFound(f"no host to upgrade{f' matches --limit {limit!r}' if limit else ''}")
        done, was_disabled = [], _disabled_hosts(app, hosts)
        journal = Journal.open(app.db, KIND, params=_params(hosts, done, was_disabled, limit))
    todo = remaining(hosts, done)
    hypervisors = set(groups["hypervisors"])
    if drain is None and hypervisors & set(todo):
        drain = default_drain()
    result = UpgradeResult(journal.op_id, hosts, list(done))
    for host in todo:
        try:
            with journal.step(f"host:{host}"):
                _upgrade_host(app, ui, host, host in hypervisors, host in was_disabled,
                              drain, health or libvirt_answers, on_event, journal.label)
        except StackError as exc:
            message = f"upgrade stopped at {host}: {exc}; {RESUME_HINT}"
            journal.finish("failed", error=message)
            raise type(exc)(message) from exc
        except BaseException:
            journal.finish("failed", error=f"upgrade interrupted at {host}; {RESUME_HINT}")
            raise
        result.done.append(host)
        result.upgraded.append(host)
        _record_done(app, journal.op_id, result.done)
    journal.finish("done")
    return result


def _upgrade_host(app: App, ui, host: str, hypervisor: bool, keep_disabled: bool,
                  drain: Drain | None, health: Health, on_event, label: str) -> None:
    if hypervisor:
        ui.step(f"{host}: draining")
        drain(app, host, ui)
    ui.step(f"{host}: upgrading")
    run_upgrade_playbook(app, host, on_event)
    if hypervisor:
        ui.step(f"{host}: health check")
        health(app, host)
        if not keep_disabled:
            _enable(app, host)


def run_upgrade_playbook(app: App, host: str, on_event=None) -> None:
    """``upgrade.yml --limit host``; BackendError unless the host came through healthy."""
    playbook = app.config.project / UPGRADE_PLAYBOOK
    errors: list[str] = []

    def collect(event: dict) -> None:
        data = event.get("event_data") or {}
        if event.get("event") in ("runner_on_failed", "runner_on_unreachable") \
                and not data.get("ignore_errors"):
            from stackctl.runner import failure_message

            errors.append(f"{data.get('task', '')}: {failure_message(data.get('res') or {})}")
        if on_event is not None:
            on_event(event)

    # The controller drains and enables hosts itself (journaled): the playbook's hooks stay off.
    status, stats = app.runner.run_playbook(
        playbook, collect, limit=host,
        extravars={"upgrade_drain_cmd": "", "upgrade_enable_cmd": ""})
    seen = any(host in (counts or {}) for counts in stats.values())
    broken = any((stats.get(key) or {}).get(host) for key in ("failures", "dark"))
    if status != "successful" or not seen or broken:
        why = errors[0] if errors else f"ansible-runner {status}"
        raise BackendError(f"upgrade.yml failed on {host}: {why}")


def libvirt_answers(app: App, host: str) -> None:
    """The controller's health check of a hypervisor: libvirtd answers stack_hypervisor_info."""
    results = app.runner.run_tasks(host, [tasks.hypervisor_info()], label="upgrade")
    info = (results[0].get("hypervisor") or {}) if results else {}
    if not info.get("libvirt_version"):
        raise BackendError(f"libvirtd on {host} did not say its version after the upgrade")


def default_drain() -> Drain:
    """The workflow that disables a hypervisor and moves its VMs away (``host drain``)."""
    from stackctl.workflows.drain import drain

    return drain


def _enable(app: App, host: str) -> None:
    import contextlib

    from stackctl.workflows import hosts as host_flow

    with contextlib.suppress(NotFound):  # never refreshed: nothing is scheduled there anyway
        host_flow.enable(app, host)


def _disabled_hosts(app: App, names: Sequence[str]) -> list[str]:
    """Hosts an operator (or refresh) had disabled: the upgrade leaves them disabled."""
    from sqlalchemy import select

    from stackctl.models import Host

    with app.db.read() as session:
        return sorted(session.scalars(select(Host.name).where(
            Host.name.in_(list(names)), Host.enabled.is_(False))))


def _params(hosts, done, was_disabled, limit) -> dict:
    return {"hosts": list(hosts), "done": list(done), "was_disabled": list(was_disabled),
            "limit": limit}


def _record_done(app: App, op_id: int, done: list[str]) -> None:
    from stackctl.models import Operation

    with app.db.write() as session:
        op = session.get(Operation, op_id)
        op.params = dict(op.params or {}, done=list(done))


def _refuse_concurrent(app: App) -> None:
    from sqlalchemy import select

    from stackctl.models import Operation

    with app.db.read() as session:
        busy = session.scalar(select(Operation.id).where(
            Operation.kind == KIND, Operation.status == "running"))
    if busy is not None:
        raise Conflict(f"another upgrade (operation {busy}) is still running")


def _last_upgrade(session):
    from sqlalchemy import select

    from stackctl.models import Operation

    op = session.scalar(select(Operation).where(Operation.kind == KIND)
                        .order_by(Operation.id.desc()).limit(1))
    if op is None or op.status != "failed":
        raise NotFound("no interrupted upgrade to resume (the last one "
                       f"{'finished' if op is not None else 'does not exist'})")
    return op


def _resumable(app: App) -> None:
    with app.db.read() as session:
        _last_upgrade(session)


def _take_over(app: App):
    """The latest failed upgrade, now owned by this process again."""
    from stackctl.journal import Journal, current_owner

    with app.db.write() as session:
        op = _last_upgrade(session)
        params = dict(op.params or {})
        op.status, op.owner, op.error = "running", current_owner(), None
        op_id = op.id
    return (Journal(app.db, op_id), list(params.get("hosts") or []),
            list(params.get("done") or []), list(params.get("was_disabled") or []))


# --- recovery: an upgrade whose process died ---------------------------------------------


def _mark_interrupted(session, runner, op, progress):
    """Nothing to roll back: the host it was on finishes on ``--resume``."""
    host = (op.step or "").removeprefix("host:") or "its first host"
    op.status = "failed"
    op.error = f"upgrade interrupted at {host}; {RESUME_HINT}"
    session.commit()
    return op.error, "failed", None


RECOVERY: dict = {KIND: _mark_interrupted}
