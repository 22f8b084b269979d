"""``stackctl upgrade``: host order, drain -> playbook -> health -> enable per hypervisor, the
first unhealthy host stops the run, ``--resume`` continues from it, and an upgrade whose
process died is marked failed (resumable) by recovery. Runner, drain and health are doubles."""

import socket
import types

import pytest
from sqlalchemy import select
from stackcore.errors import BackendError, InvalidInput, NotFound

from stackctl.models import Host, Operation
from stackctl.progress import StepProgress
from stackctl.workflows import upgrade as flow
from stackctl.workflows.upgrade import upgrade_order

from .conftest import add_host

GROUPS = {"hypervisors": ["hv1", "hv2", "hv3"], "storage_nodes": ["hv1", "st1"],
          "proxies": ["px1", "st1"], "controllers": ["ctl"]}


class FakeRunner:
    """Answers the inventory from GROUPS and records each upgrade.yml run; ``broken`` hosts
    fail their playbook run."""

    def __init__(self, calls, broken=()):
        self.calls = calls
        self.broken = set(broken)

    def inventory_hosts(self, group):
        return {h: "127.0.0.1" for h in GROUPS.get(group, [])}

    def run_playbook(self, playbook, on_event, *, limit=None, extravars=None, **_):
        self.calls.append(("playbook", limit, playbook.name, dict(extravars or {})))
        if limit in self.broken:
            on_event({"event": "runner_on_failed", "event_data": {
                "host": limit, "task": "Check that libvirtd answers after the upgrade",
                "res": {"msg": "libvirtd does not answer"}}})
            return "failed", {"failures": {limit: 1}, "ok": {limit: 3}}
        return "successful", {"ok": {limit: 12}, "changed": {limit: 2}}


@pytest.fixture
def calls():
    return []


@pytest.fixture
def make_app(home, calls):
    from stackctl import config
    from stackctl.app import App

    def make(broken=()):
        return App(config.load(), runner=FakeRunner(calls, broken))

    return make


@pytest.fixture
def doubles(calls):
    def drain(app, host, ui):
        calls.append(("drain", host))
        with app.db.write() as session:
            row = session.scalar(select(Host).where(Host.name == host))
            if row is not None:
                row.enabled, row.disabled_reason = False, "draining"

    def health(app, host):
        calls.append(("health", host))

    return types.SimpleNamespace(drain=drain, health=health)


def ui():
    return StepProgress("upgrade", enabled=False)


def run(app, doubles, **kwargs):
    return flow.upgrade(app, ui(), drain=doubles.drain, health=doubles.health, **kwargs)


def last_op(app):
    with app.db.read() as session:
        op = session.scalar(select(Operation).where(Operation.kind == "upgrade")
                            .order_by(Operation.id.desc()))
        return op.status, dict(op.params), op.error


def enabled(app):
    with app.db.read() as session:
        return {h.name: h.enabled for h in session.scalars(select(Host))}


@pytest.mark.parametrize("limit,expected", [
    (None, ["hv1", "hv2", "hv3", "st1", "px1"]),
    ("hv2", ["hv2"]),
    ("px1,hv1", ["hv1", "px1"]),
    ("hypervisors:!hv2", ["hv1", "hv3"]),
    ("proxies", ["st1", "px1"]),
    ("hv*", ["hv1", "hv2", "hv3"]),
    ("!hv*", ["st1", "px1"]),
    ("ctl", []),  # not a host upgrade.yml visits
    ("nope", []),
])
def test_upgrade_order(limit, expected):
    assert upgrade_order(GROUPS, limit) == expected


@pytest.mark.parametrize("limit", ["", " , ", "-e x", "hv1,--check"])
def test_a_bad_limit_is_refused(limit):
    with pytest.raises(InvalidInput):
        upgrade_order(GROUPS, limit)


def test_hosts_go_one_by_one_drained_upgraded_checked_and_enabled(make_app, doubles, calls, db):
    app = make_app()
    for name in ("hv1", "hv2", "hv3"):
        add_host(db, name)
    result = run(app, doubles)
    hooks_off = {"upgrade_drain_cmd": "", "upgrade_enable_cmd": ""}
    assert calls == [
        ("drain", "hv1"), ("playbook", "hv1", "upgrade.yml", hooks_off), ("health", "hv1"),
        ("drain", "hv2"), ("playbook", "hv2", "upgrade.yml", hooks_off), ("health", "hv2"),
        ("drain", "hv3"), ("playbook", "hv3", "upgrade.yml", hooks_off), ("health", "hv3"),
        ("playbook", "st1", "upgrade.yml", hooks_off),  # no VMs there: no drain, no health
        ("playbook", "px1", "upgrade.yml", hooks_off)]
    assert result.upgraded == result.done == ["hv1", "hv2", "hv3", "st1", "px1"]
    assert enabled(app) == {"hv1": True, "hv2": True, "hv3": True}
    status, params, _ = last_op(app)
    assert status == "done"
    assert params["done"] == params["hosts"] == result.hosts


def test_the_first_unhealthy_host_stops_the_run_and_resume_continues_there(
        make_app, doubles, calls, db):
    for name in ("hv1", "hv2", "hv3"):
        add_host(db, name)
    with pytest.raises(BackendError) as err:
        run(make_app(broken={"hv2"}), doubles)
    assert str(err.value) == (
        "upgrade stopped at hv2: upgrade.yml failed on hv2: Check that libvirtd answers after "
        "the upgrade: libvirtd does not answer; run 'stackctl upgrade --resume' to continue "
        "from it")
    assert [c[:2] for c in calls] == [("drain", "hv1"), ("playbook", "hv1"), ("health", "hv1"),
                                      ("drain", "hv2"), ("playbook", "hv2")]
    app = make_app()
    status, params, error = last_op(app)
    assert (status, params["done"]) == ("failed", ["hv1"])
    assert "--resume" in error
    assert enabled(app) == {"hv1": True, "hv2": False, "hv3": True}  # hv2 stays drained

    calls.clear()
    result = run(app, doubles, resume=True)
    assert [c[:2] for c in calls][:4] == [("drain", "hv2"), ("playbook", "hv2"),
                                          ("health", "hv2"), ("drain", "hv3")]
    assert ("drain", "hv1") not in calls
    assert result.upgraded == ["hv2", "hv3", "st1", "px1"]
    assert result.done == ["hv1", "hv2", "hv3", "st1", "px1"]
    assert last_op(app)[0] == "done"
    assert enabled(app) == {"hv1": True, "hv2": True, "hv3": True}


def test_a_failed_health_check_stops_the_run(make_app, doubles, calls):
    def sick(app, host):
        raise BackendError(f"libvirtd on {host} did not say its version after the upgrade")

    with pytest.raises(BackendError, match="upgrade stopped at hv1: libvirtd on hv1"):
        flow.upgrade(make_app(), ui(), drain=doubles.drain, health=sick)
    assert [c[0] for c in calls] == ["drain", "playbook"]


def test_a_host_disabled_before_the_upgrade_stays_disabled(make_app, doubles, db):
    add_host(db, "hv1", enabled=False)
    add_host(db, "hv2")
    app = make_app()
    run(app, doubles, limit="hv1,hv2")
    assert enabled(app) == {"hv1": False, "hv2": True}


def test_storage_hosts_need_no_drain_workflow(make_app, calls, monkeypatch):
    monkeypatch.setattr(flow, "default_drain", lambda: pytest.fail("drain looked up"))
    result = flow.upgrade(make_app(), ui(), limit="px1")
    assert result.upgraded == ["px1"]


def test_resume_mistakes(make_app, doubles):
    app = make_app()
    with pytest.raises(NotFound, match="no interrupted upgrade to resume"):
        run(app, doubles, resume=True)
    with pytest.raises(InvalidInput, match="takes no --limit"):
        run(app, doubles, resume=True, limit="hv1")
    with pytest.raises(NotFound, match="no host to upgrade matches --limit 'zz'"):
        run(app, doubles, limit="zz")
    run(app, doubles, limit="px1")
    with pytest.raises(NotFound, match="the last one finished"):
        run(app, doubles, resume=True)


def test_a_dead_upgrade_is_marked_failed_by_recovery_and_resumes(make_app, doubles, calls):
    from stackctl.journal import Journal

    app = make_app()
    journal = Journal.open(app.db, "upgrade", params={
        "hosts": ["hv1", "hv2"], "done": ["hv1"], "was_disabled": [], "limit": None})
    with app.db.write() as session:  # it died on hv2 (pid 1 never has this start time)
        op = session.get(Operation, journal.op_id)
        op.step, op.owner = "host:hv2", f"{socket.gethostname()}:1:x"
    recovered = app.recover_pending()
    assert [(r.kind, r.status) for r in recovered] == [("upgrade", "failed")]
    assert recovered[0].action == ("upgrade interrupted at hv2; run 'stackctl upgrade --resume' "
                                   "to continue from it")
    result = run(app, doubles, resume=True)
    assert result.upgraded == ["hv2"] and result.done == ["hv1", "hv2"]


def test_another_running_upgrade_is_a_conflict(make_app, doubles):
    from stackcore.errors import Conflict

    from stackctl.journal import Journal

    app = make_app()
    Journal.open(app.db, "upgrade", params={"hosts": ["hv1"], "done": []})  # alive: us
    with pytest.raises(Conflict, match="another upgrade"):
        run(app, doubles)


def test_cli_resume_without_an_interrupted_upgrade_is_one_line(cli):
    result = cli("upgrade", "--resume")
    assert result.exit_code == 3
    assert result.stderr.strip().splitlines()[-1] == (
        "stackctl: error: no interrupted upgrade to resume (the last one does not exist)")
