"""``stackctl plan``: the events of a check run summarised per host (tables of events in,
plans out), and the command's output and exit codes."""

import json

import pytest

from stackctl.workflows import plan
from stackctl.workflows.plan import HostPlan, PlanResult, summarise

RSYNCD_BEFORE = "uid = swift\nport = 873\n# drift\n"
RSYNCD_AFTER = "uid = swift\nport = 873\n"


def ok(host, task, module, res, role=None, **extra):
    return {"event": "runner_on_ok", "event_data": {
        "host": host, "task": task, "role": role, "task_action": module,
        "resolved_action": f"ansible.builtin.{module}" if "_" not in module else module,
        "res": res, **extra}}


def stats(*hosts):
    return {"event": "playbook_on_stats", "event_data": {"ok": {h: 3 for h in hosts},
                                                         "changed": {}}}


TEMPLATE = ok("aio", "Write the rsync daemon configuration", "template", {
    "changed": True,
    "diff": [{"before_header": "/etc/swift/rsyncd.conf", "before": RSYNCD_BEFORE,
              "after_header": "/root/.ansible/tmp/x/rsyncd.conf.j2", "after": RSYNCD_AFTER}],
    "invocation": {"module_args": {"dest": "/etc/swift/rsyncd.conf"}}}, role="storage_node")
RSYNCD = ok("aio", "Run the rsync daemon", "stack_daemon", {
    "changed": True, "actions": ["stop", "start"],
    "diff": {"before": {"running": True}, "after": {"running": True}},
    "invocation": {"module_args": {"name": "rsyncd", "state": "restarted"}}}, role="storage_node")
LIBVIRTD_START = ok("hv1", "Run libvirtd as a plain daemon", "stack_daemon", {
    "changed": True, "actions": ["start"],
    "invocation": {"module_args": {"name": "libvirtd", "state": "started"}}}, role="hypervisor")
LIBVIRTD_RESTART = ok("hv1", "Restart libvirtd", "service", {
    "changed": True, "name": "libvirtd", "state": "started",
    "invocation": {"module_args": {"name": "libvirtd", "state": "restarted"}}})
NETWORK = ok("hv2", "Create the provider network", "stack_network", {
    "changed": True, "actions": ["redefine", "restart"], "restarted": True,
    "diff": {"before": {"name": "stack-provider", "dhcp_end": "192.168.150.250"},
             "after": {"name": "stack-provider", "dhcp_end": "192.168.150.200"}}},
    role="hypervisor")
APT = ok("hv1", "Install the missing packages", "apt", {
    "changed": True,
    "stdout": "Reading package lists...\nInst qemu-system-x86 [1:7.2+dfsg-7] (1:7.2+dfsg-8 "
              "Debian:12.9/stable [amd64])\nInst dnsmasq-base (2.89-1 Debian:12/stable)\n"
              "Conf qemu-system-x86 (1:7.2+dfsg-8)\n",
    "invocation": {"module_args": {"name": ["qemu-system-x86", "dnsmasq-base"]}}}, role="common")
LOOP_DIRS = ok("hv1", "Create the directories", "file", {"changed": True, "results": [
    {"changed": False, "item": "/var/lib/stackctl"},
    {"changed": True, "item": "/var/lib/stackctl/images", "_ansible_item_label":
     "/var/lib/stackctl/images", "diff": {"before": {"path": "/var/lib/stackctl/images",
                                                     "mode": "0700"},
                                          "after": {"path": "/var/lib/stackctl/images",
                                                    "mode": "0755"}}}]}, role="hypervisor")
UNCHANGED = ok("hv2", "Ask dpkg", "command", {"changed": False, "stdout": "x"})
NOTIFY = {"event": "playbook_on_notify",
          "event_data": {"host": "hv2", "handler": "Restart swift-proxy-server"}}
FAILED = {"event": "runner_on_failed", "event_data": {
    "host": "hv2", "task": "Write swift.conf", "res": {"msg": "swift.conf holds another hash"}}}
IGNORED = {"event": "runner_on_failed", "event_data": {
    "host": "hv2", "task": "Probe", "ignore_errors": True, "res": {"msg": "no"}}}

VMS = {"hv1": [{"name": "web-2", "tenant": "a", "uuid": "u2", "state": "running"},
               {"name": "web-1", "tenant": "a", "uuid": "u1", "state": "running"},
               {"name": "off-1", "tenant": "b", "uuid": "u3", "state": "stopped"}],
       "hv2": [{"name": "db-1", "tenant": "b", "uuid": "u4", "state": "running"}]}


@pytest.mark.parametrize("events,expected", [
    # nothing changes: the host is still listed, with nothing pending
    ([UNCHANGED, stats("hv2")],
     {"hv2": {"host": "hv2", "changes": 0, "restarts": "-", "vms_touched": "-", "failed": 0}}),
    # a drifted config file and the daemon that reads it
    ([TEMPLATE, RSYNCD, stats("aio")],
     {"aio": {"host": "aio", "changes": 2, "restarts": "restart rsyncd", "vms_touched": "-",
              "failed": 0}}),
    # libvirtd restarting on a hypervisor touches its running VMs (not the stopped one)
    ([LIBVIRTD_RESTART, stats("hv1")],
     {"hv1": {"host": "hv1", "changes": 1, "restarts": "restart libvirtd",
              "vms_touched": "2: web-1, web-2", "failed": 0}}),
    # a start of a daemon that is not running touches no VM
    ([LIBVIRTD_START, APT, LOOP_DIRS],
     {"hv1": {"host": "hv1", "changes": 3, "restarts": "start libvirtd", "vms_touched": "-",
              "failed": 0}}),
    # a provider network change touches the host's running VMs; handlers are restarts;
    # an ignored failure is not one
    ([NETWORK, NOTIFY, NOTIFY, IGNORED, FAILED],
     {"hv2": {"host": "hv2", "changes": 1, "restarts": "restart swift-proxy-server",
              "vms_touched": "1: db-1", "failed": 1}}),
])
def test_events_summarised_per_host(events, expected):
    plans = summarise(events, VMS, hypervisors=["hv1", "hv2"])
    assert {h: p.row() for h, p in plans.items()} == expected


def test_change_details_say_what_would_change():
    plans = summarise([TEMPLATE, RSYNCD, APT, LOOP_DIRS, NETWORK], VMS, hypervisors=["hv1"])
    aio = [c.to_dict() for c in plans["aio"].changes]
    assert aio == [
        {"task": "Write the rsync daemon configuration", "role": "storage_node",
         "module": "template", "summary": ["/etc/swift/rsyncd.conf: +0 -1"]},
        {"task": "Run the rsync daemon", "role": "storage_node", "module": "stack_daemon",
         "summary": ["actions: stop, start"]}]
    hv1 = {c.task: c.summary for c in plans["hv1"].changes}
    assert hv1["Install the missing packages"] == [
        "upgrade qemu-system-x86 1:7.2+dfsg-7 -> 1:7.2+dfsg-8", "install dnsmasq-base 2.89-1"]
    assert hv1["Create the directories (/var/lib/stackctl/images)"] == [
        "/var/lib/stackctl/images: mode 0700 -> 0755"]
    assert plans["hv2"].changes[0].summary == [
        "dhcp_end 192.168.150.250 -> 192.168.150.200", "actions: redefine, restart"]


def test_vm_effects_explain_why_guests_are_touched():
    plans = summarise([LIBVIRTD_RESTART, APT, NETWORK], VMS, hypervisors=["hv1", "hv2"])
    assert plans["hv1"].vm_effects == [plan.LIBVIRTD_RESTART, plan.QEMU_UPGRADE]
    assert "guests keep running" in plans["hv1"].vm_effects[0]
    assert [v["name"] for v in plans["hv1"].vms_touched] == ["web-1", "web-2"]
    assert plans["hv2"].vm_effects[0].startswith("the provider network changes")


def test_a_qemu_upgrade_alone_touches_no_vm():
    plans = summarise([APT], VMS, hypervisors=["hv1"])
    assert plans["hv1"].vms_touched == []
    assert plans["hv1"].vm_effects == [plan.QEMU_UPGRADE]


@pytest.mark.parametrize("before,after,counts", [
    ("a\nb\n", "a\nb\n", (0, 0)),
    ("a\nb\n", "a\nc\nd\n", (2, 1)),
    ("", "x\ny\n", (2, 0)),
    ("x\n", "", (0, 1)),
])
def test_line_counts(before, after, counts):
    assert plan.line_counts(before, after) == counts


@pytest.mark.parametrize("module,res,expected", [
    ("stack_daemon", {"actions": ["stop", "start"], "invocation": {"module_args": {
        "name": "swift-object-server"}}}, "restart swift-object-server"),
    ("stack_daemon", {"actions": ["stop"], "invocation": {"module_args": {"name": "x"}}},
     "stop x"),
    ("service", {"invocation": {"module_args": {"name": "memcached", "state": "started"}}},
     "start memcached"),
    ("systemd_service", {"invocation": {"module_args": {"name": "swift-proxy-server",
                                                        "state": "reloaded"}}},
     "reload swift-proxy-server"),
    ("service", {"invocation": {"module_args": {"name": "x", "enabled": True}}}, None),
    ("template", {"invocation": {"module_args": {"name": "x", "state": "restarted"}}}, None),
])
def test_daemon_restart(module, res, expected):
    assert plan.daemon_restart(module, res) == expected


@pytest.mark.parametrize("handler,expected", [
    ("Restart libvirtd", "restart libvirtd"),
    ("restart the swift-proxy-server service", "restart swift-proxy-server"),
    ("Reload memcached daemon", "reload memcached"),
    ("Refresh the rings", "handler Refresh the rings"),
])
def test_handler_names_map_to_services(handler, expected):
    assert plan.handler_restart(handler) == expected


@pytest.mark.parametrize("module,res,expected", [
    ("pip", {"invocation": {"module_args": {"name": ["swift>=2.38,<2.39"],
                                            "virtualenv": "/opt/stackctl/swift"}}},
     ["pip swift>=2.38,<2.39 in /opt/stackctl/swift"]),
    ("apt", {"invocation": {"module_args": {"name": ["rsync"]}}}, ["packages: rsync"]),
    ("file", {"diff": {"before": {"path": "/x", "state": "absent"},
                       "after": {"path": "/x", "state": "directory"}}},
     ["/x: state absent -> directory"]),
    ("stack_swift_conf", {"diff": {"before": "", "after": "[swift-hash]\n"},
                          "path": "/etc/swift/swift.conf"}, ["/etc/swift/swift.conf: +1 -0"]),
    ("user", {}, ["changed"]),
])
def test_describe(module, res, expected):
    assert plan.describe(module, res) == expected


# --- the command ----------------------------------------------------------------------------


def _fake_run(result):
    def run(app, on_event=None, *, limit=None, tags=None):
        run.calls.append((limit, tags))
        return result

    run.calls = []
    return run


def _result(*host_plans, status="successful"):
    return PlanResult(status, {}, {p.host: p for p in host_plans})


def test_plan_exits_0_when_nothing_would_change(cli, monkeypatch):
    fake = _fake_run(_result(HostPlan("aio")))
    monkeypatch.setattr(plan, "run", fake)
    result = cli("plan", "--limit", "aio", "--tags", "storage")
    assert result.exit_code == 0, result.stderr
    assert "no changes: the fleet matches the playbooks" in result.stdout
    assert fake.calls == [("aio", "storage")]


def test_plan_exits_10_with_pending_changes_and_shows_them(cli, monkeypatch):
    plans = summarise([TEMPLATE, RSYNCD, LIBVIRTD_RESTART, stats("aio", "hv1", "hv9")], VMS,
                      hypervisors=["hv1"])
    monkeypatch.setattr(plan, "run", _fake_run(_result(*plans.values())))
    result = cli("plan")
    assert result.exit_code == plan.CHANGES_PENDING == 10
    rows = [line.split()[0] for line in result.stdout.splitlines()[2:5]]
    assert rows == ["aio", "hv1", "hv9"]
    assert "/etc/swift/rsyncd.conf: +0 -1" in result.stdout
    assert "VMs touched: web-1 (a), web-2 (a)" in result.stdout
    assert "3 change(s) pending on 2 host(s); nothing was changed" in result.stdout

    as_json = json.loads(cli("plan", "-o", "json").stdout)
    assert as_json["pending"] is True
    hv1 = next(h for h in as_json["hosts"] if h["host"] == "hv1")
    assert hv1["restarts"] == ["restart libvirtd"]
    assert [v["name"] for v in hv1["vms_touched"]] == ["web-1", "web-2"]


def test_a_failing_check_run_is_one_error_line(cli, monkeypatch):
    plans = summarise([FAILED], {}, hypervisors=[])
    monkeypatch.setattr(plan, "run", _fake_run(_result(*plans.values(), status="failed")))
    result = cli("plan")
    assert result.exit_code == 5
    assert result.stderr.strip().splitlines()[-1] == (
        "stackctl: error: plan failed: hv2: Write swift.conf: swift.conf holds another hash")
