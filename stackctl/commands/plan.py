"""``stackctl plan``: what a rollout would change across the fleet, before anything changes."""

from __future__ import annotations

import click

from stackctl.commands._common import get_app, output_format, output_option, progress

COLUMNS = [("host", "HOST"), ("changes", "CHANGES"), ("restarts", "RESTARTS"),
           ("vms_touched", "VMS TOUCHED")]


@click.command()
@click.option("--limit", metavar="PATTERN", help="Only these hosts (Ansible host pattern).")
@click.option("--tags", metavar="TAGS", help="Only these roles/tags, comma-separated.")
@output_option
def plan(limit: str | None, tags: str | None) -> int:
    """Show what `stackctl deploy` would change, per host, without changing anything.

    Runs playbooks/site.yml in check mode with diffs and summarises it: the tasks that would
    change (files with +/- lines, packages, daemons), the services that would restart and the
    running VMs on hypervisors whose libvirtd or provider network would change.
    -o json/yaml gives every detail. Exit status: 0 nothing would change, 10 changes are
    pending, 5 the check run failed.
    """
    from stackcore.errors import BackendError

    from stackctl.runner import TaskEvent
    from stackctl.workflows import plan as planning

    app = get_app()
    with progress("plan") as ui:
        def on_event(event: dict) -> None:
            if event.get("event") == "playbook_on_task_start":
                data = event.get("event_data") or {}
                ui.task(TaskEvent("start", data.get("host", ""), data.get("task", "")))

        ui.step("site.yml in check mode")
        result = planning.run(app, on_event, limit=limit, tags=tags)
    _show(result)
    failed = [f"{h}: {line}" for h, p in result.hosts.items() for line in p.failed]
    if failed or result.status != "successful":
        raise BackendError(f"plan {result.status}: " + ("; ".join(failed) or "no host failed"))
    return planning.CHANGES_PENDING if result.pending else 0


def _show(result) -> None:
    from stackctl.render import emit

    fmt = output_format()
    if fmt != "table":
        emit({"status": result.status, "pending": result.pending,
              "hosts": [dict(p.row(), **p.to_dict()) for p in result.hosts.values()]}, fmt)
        return
    emit([p.row() for p in result.hosts.values()], fmt, COLUMNS)
    for host_plan in result.hosts.values():
        if host_plan.pending or host_plan.vm_effects:
            click.echo("")
            for line in details(host_plan):
                click.echo(line)
    changes = sum(len(p.changes) for p in result.hosts.values())
    hosts = sum(1 for p in result.hosts.values() if p.pending)
    click.echo("")
    click.echo(f"{changes} change(s) pending on {hosts} host(s); nothing was changed"
               if result.pending else "no changes: the fleet matches the playbooks")


def details(host_plan) -> list[str]:
    """The table output's lines about one host: its changes, restarts and VMs."""
    lines = [f"{host_plan.host}:"]
    for change in host_plan.changes:
        where = f"[{change.role}] " if change.role else ""
        lines.append(f"  {where}{change.task}")
        lines += [f"      {text}" for text in change.summary]
    if host_plan.restarts:
        lines.append(f"  restarts: {', '.join(host_plan.restarts)}")
    lines += [f"  VMs: {effect}" for effect in host_plan.vm_effects]
    if host_plan.vms_touched:
        lines.append("  VMs touched: " + ", ".join(
            f"{v['name']} ({v['tenant']})" for v in host_plan.vms_touched))
    return lines
