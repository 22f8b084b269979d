"""stackctl reconcile: drift computed from (rows, host facts) by tables, and the command's
exit codes, fixes and journal with a runner double (the real run: tests/integration)."""

import hashlib

import pytest
from sqlalchemy import select

from stackctl.drift import (
    COPY_RINGS,
    FORGET_IMAGE,
    MARK_ERROR,
    RECORD_STATE,
    REDEFINE,
    Drift,
    HostFacts,
    RingFacts,
    VmRow,
    image_drift,
    merge,
    ring_drift,
    vm_drift,
)
from stackctl.runner import HostOutcome

from .conftest import add_host

U1, U2 = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
D1, D2 = f"stk-{U1}", f"stk-{U2}"
SHA_A, SHA_B = "a" * 64, "b" * 64


def vm(uuid=U1, state="running", host="hv1", name="web"):
    return VmRow(uuid, "t", name, host, state)


def facts(domains=None, disks=(), cached=(), error=None):
    return HostFacts(domains=domains or {}, disks=frozenset(disks), cached=frozenset(cached),
                     error=error)


def brief(items):
    return [(d.host, d.kind, d.object, d.fix, d.state) for d in items]


# --- VMs and domains -----------------------------------------------------------------------

# (case, VM rows, facts by host, busy uuids, expected (host, kind, object, fix, state))
VM_CASES = [
    ("in step: no drift", [vm()], {"hv1": facts({D1: "running"})}, [], []),
    ("stopped and shut off: no drift", [vm(state="stopped")], {"hv1": facts({D1: "shut off"})},
     [], []),
    ("paused counts as running", [vm()], {"hv1": facts({D1: "paused"})}, [], []),
    ("running recorded, domain shut off", [vm()], {"hv1": facts({D1: "shut off"})}, [],
     [("hv1", "power-state", "t/web", RECORD_STATE, "stopped")]),
    ("stopped recorded, domain running", [vm(state="stopped")],
     {"hv1": facts({D1: "running"})}, [],
     [("hv1", "power-state", "t/web", RECORD_STATE, "running")]),
    ("crashed domain: recorded as error", [vm()], {"hv1": facts({D1: "crashed"})}, [],
     [("hv1", "power-state", "t/web", RECORD_STATE, "error")]),
    ("domain gone, disk kept: redefine in the recorded state", [vm(state="stopped")],
     {"hv1": facts(disks=[D1])}, [],
     [("hv1", "missing-domain", "t/web", REDEFINE, "stopped")]),
    ("domain and disk gone: mark error", [vm()], {"hv1": facts()}, [],
     [("hv1", "missing-domain", "t/web", MARK_ERROR, "error")]),
    ("a disk of another domain does not count", [vm()], {"hv1": facts(disks=[D2])}, [],
     [("hv1", "missing-domain", "t/web", MARK_ERROR, "error")]),
    ("stray stackctl domain: report only", [], {"hv1": facts({D2: "running"})}, [],
     [("hv1", "unknown-domain", D2, None, None)]),
    ("domain defined outside stackctl: report only", [vm()],
     {"hv1": facts({D1: "running", "handmade": "shut off"})}, [],
     [("hv1", "unknown-domain", "handmade", None, None)]),
    ("a VM's domain on another host is unknown there", [vm(host="hv1")],
     {"hv1": facts({D1: "running"}), "hv2": facts({D1: "running"})}, [],
     [("hv2", "unknown-domain", D1, None, None)]),
    ("busy VM: neither checked nor unknown", [vm()], {"hv1": facts({D1: "shut off"})}, [U1],
     []),
    ("busy VM without domain: not checked", [vm()], {"hv1": facts()}, [U1], []),
    ("building, deleting and error VMs are not checked",
     [vm(U1, "building"), vm(U2, "error", name="x")], {"hv1": facts()}, [], []),
    ("their domains are still known", [vm(U1, "deleting"), vm(U2, "error", name="x")],
     {"hv1": facts({D1: "running", D2: "shut off"})}, [], []),
    ("host not asked (other host, --host): not checked", [vm(host="hv9")],
     {"hv1": facts()}, [], []),
    ("unplaced VM: not checked", [vm(host=None)], {"hv1": facts()}, [], []),
    ("unreachable host: reported, its VMs not checked", [vm()],
     {"hv1": facts(error="hv1: unreachable")}, [],
     [("hv1", "host-unreachable", "hv1", None, None)]),
    ("several at once, sorted by host and kind",
     [vm(U1, "running", "hv2", "a"), vm(U2, "stopped", "hv1", "b")],
     {"hv1": facts({"zz": "running", D2: "running"}), "hv2": facts(disks=[D1])}, [],
     [("hv1", "power-state", "t/b", RECORD_STATE, "running"),
      ("hv1", "unknown-domain", "zz", None, None),
      ("hv2", "missing-domain", "t/a", REDEFINE, "running")]),
]


@pytest.mark.parametrize("case,vms,by_host,busy,expected", VM_CASES, ids=[c[0] for c in VM_CASES])
def test_vm_drift(case, vms, by_host, busy, expected):
    assert brief(merge(vm_drift(vms, by_host, busy))) == expected


def test_vm_drift_remembers_the_recorded_state_and_explains():
    (item,) = vm_drift([vm()], {"hv1": facts({D1: "shut off"})})
    assert item.recorded == "running" and item.vm_uuid == U1
    assert item.detail == "recorded running, the domain is shut off"
    (item,) = vm_drift([vm()], {"hv1": facts(disks=[D1])})
    assert "its disk is still there" in item.detail


# --- images and rings ------------------------------------------------------------------------

IMAGE_CASES = [
    ("recorded and present", {"hv1": {SHA_A}}, {"hv1": facts(cached=[SHA_A])}, []),
    ("present, not recorded: fine", {}, {"hv1": facts(cached=[SHA_A])}, []),
    ("recorded, gone", {"hv1": {SHA_A, SHA_B}}, {"hv1": facts(cached=[SHA_B])},
     [("hv1", "image-cache", SHA_A, FORGET_IMAGE, None)]),
    ("unreachable host: not checked", {"hv1": {SHA_A}}, {"hv1": facts(error="down")}, []),
    ("host not asked: not checked", {"hv2": {SHA_A}}, {"hv1": facts()}, []),
]


@pytest.mark.parametrize("case,recorded,by_host,expected", IMAGE_CASES,
                         ids=[c[0] for c in IMAGE_CASES])
def test_image_drift(case, recorded, by_host, expected):
    assert brief(image_drift(recorded, by_host)) == expected


def ring_file(directory, ring, checksum):
    return {"path": f"{directory}/{ring}.ring.gz", "checksum": checksum}


BUILDER = [ring_file("/etc/stackctl/swift/aio", r, c)
           for r, c in (("account", "1"), ("container", "2"), ("object", "3"))]
RINGS = ("account", "container", "object")
RING_CASES = [
    ("same rings", {"s1": RingFacts([ring_file("/etc/swift", r, c) for r, c in
                                     (("account", "1"), ("container", "2"), ("object", "3"))])},
     []),
    ("one differs, one missing",
     {"s1": RingFacts([ring_file("/etc/swift", "account", "1"),
                       ring_file("/etc/swift", "container", "X")])},
     [("s1", "ring-mismatch", "container ring", COPY_RINGS, None),
      ("s1", "ring-mismatch", "object ring", COPY_RINGS, None)]),
    ("unreachable", {"s1": RingFacts(error="s1: unreachable")},
     [("s1", "host-unreachable", "s1", None, None)]),
]


@pytest.mark.parametrize("case,hosts,expected", RING_CASES, ids=[c[0] for c in RING_CASES])
def test_ring_drift(case, hosts, expected):
    assert brief(ring_drift(hosts, BUILDER, RINGS)) == expected


def test_ring_detail_says_missing_or_different():
    items = ring_drift({"s1": RingFacts([ring_file("/etc/swift", "account", "X")])}, BUILDER,
                       ("account", "object"))
    assert [d.detail for d in items] == ["differs from the controller's builder",
                                         "missing (the controller's builder has it)"]


def test_merge_keeps_one_unreachable_item_per_host():
    items = [Drift("h", "host-unreachable", "h", "a"), Drift("h", "host-unreachable", "h", "b"),
             Drift("a", "unknown-domain", "x", "y")]
    assert [(d.host, d.detail) for d in merge(items)] == [("a", "y"), ("h", "a")]


def test_host_facts_from_a_module_result():
    result = {"hypervisor": {"domains": [{"name": D1, "uuid": U1, "state": "running"}]},
              "instances": [{"name": D1, "disk": True}, {"name": D2, "disk": False}],
              "cached_images": [SHA_A]}
    f = HostFacts.from_result(result)
    assert (dict(f.domains), f.disks, f.cached) == ({D1: "running"}, {D1}, {SHA_A})
    assert HostFacts.from_result({}).domains == {}


def test_builder_files_hash_the_ring_files(tmp_path):
    from stackctl.workflows.reconcile import builder_files

    (tmp_path / "object.ring.gz").write_bytes(b"ring")
    files, why = builder_files(str(tmp_path), RINGS)
    assert why is None
    assert files == [{"path": str(tmp_path / "object.ring.gz"),
                      "checksum": hashlib.sha256(b"ring").hexdigest()}]
    assert builder_files(str(tmp_path / "none"), RINGS)[1].startswith("no ring files")


# --- the command, with a runner double -------------------------------------------------------


class FakeHosts:
    """Runner double: hypervisors answer stack_hypervisor_info with ``results``, Swift hosts
    ``find`` with ``rings``; run_tasks records the fixes and succeeds (or fails)."""

    def __init__(self, results, failing=(), groups=None, rings=None, fail_tasks=False):
        self.results, self.failing = results, set(failing)
        self.groups, self.rings = groups or {}, rings or {}
        self.fail_tasks = fail_tasks
        self.each, self.tasks = [], []

    def inventory_hosts(self, group):
        return {h: "127.0.0.1" for h in self.results} if group == "hypervisors" else {}

    def inventory_hostvars(self, group):
        return self.groups.get(group, {})

    def run_each(self, names, tasks, progress=None, label="adhoc"):
        self.each.append((list(names), [t.module for t in tasks]))
        source = self.rings if tasks[0].module == "ansible.builtin.find" else self.results
        return {n: HostOutcome(error=f"{n}: unreachable") if n in self.failing
                else HostOutcome([source[n]]) for n in names}

    def run_tasks(self, host, tasks, progress=None, label="adhoc"):
        from stackcore.errors import BackendError

        self.tasks.append((host, list(tasks)))
        if self.fail_tasks:
            raise BackendError(f"{tasks[-1].title} on {host}: it broke")
        return [{"vm": {"address": "192.168.150.99"}} if t.module == "stack_vm" else {}
                for t in tasks]


def hv_result(domains=(), disks=(), cached=()):
    return {"hypervisor": {"domains": [{"name": n, "uuid": "", "state": s} for n, s in domains]},
            "instances": [{"name": n, "disk": True} for n in disks],
            "cached_images": list(cached)}


@pytest.fixture
def fake(monkeypatch):
    """Install a FakeHosts as the runner every App of the test builds."""
    holder = {}

    def install(runner):
        holder["runner"] = runner
        monkeypatch.setattr("stackctl.runner.AnsibleRunner", lambda _config: runner)
        return runner

    return install


def vm_row(db, name="web-1"):
    from stackctl.models import VM

    with db.read() as session:
        row = session.scalar(select(VM).where(VM.name == name))
        return row.uuid, row.state, row.fault, row.address


def host_images(db):
    from stackctl.models import HostImage

    with db.read() as session:
        return set(session.scalars(select(HostImage.sha256)))


def remember(db, sha, host="aio"):
    from stackctl.models import Host, HostImage

    with db.write() as session:
        host_id = session.scalar(select(Host.id).where(Host.name == host))
        session.add(HostImage(host_id=host_id, sha256=sha))


def operations(db):
    from stackctl.models import Operation

    with db.read() as session:
        return [(op.kind, op.status) for op in session.scalars(select(Operation))]


def test_no_drift_exits_0_and_changes_nothing(cli, db, tenant_with_vm, fake):
    runner = fake(FakeHosts({"aio": hv_result([(f"stk-{tenant_with_vm}", "running")])}))
    result = cli("reconcile")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "no drift on aio"
    assert runner.each == [(["aio"], ["stack_hypervisor_info"])] and runner.tasks == []
    assert cli("reconcile", "-o", "json").json() == []
    assert operations(db) == []  # a report is not journaled


def test_drift_is_reported_with_exit_6_and_nothing_is_fixed(cli, db, tenant_with_vm, fake):
    remember(db, SHA_A)
    runner = fake(FakeHosts({"aio": hv_result([(f"stk-{tenant_with_vm}", "shut off"),
                                               ("handmade", "running")])}))
    result = cli("reconcile", "-o", "json")
    assert result.exit_code == 6
    rows = [(r["kind"], r["object"], r["fix"], r["action"]) for r in result.json()]
    assert rows == [("power-state", "a/web-1", RECORD_STATE, None),
                    ("unknown-domain", "handmade", None, None),
                    ("image-cache", SHA_A, FORGET_IMAGE, None)]
    assert result.stderr.splitlines()[-1] == ("stackctl: error: 3 drift item(s) remain "
                                              "(2 can be fixed with --fix)")
    assert vm_row(db)[1] == "running" and host_images(db) == {SHA_A}
    assert runner.tasks == []
    table = cli("reconcile")
    assert table.exit_code == 6 and "power-state" in table.stdout and "FIX" in table.stdout


def test_fix_records_the_real_state_and_forgets_lost_images(cli, db, tenant_with_vm, fake):
    remember(db, SHA_A)
    remember(db, SHA_B)
    runner = fake(FakeHosts({"aio": hv_result([(f"stk-{tenant_with_vm}", "shut off")],
                                              cached=[SHA_B])}))
    result = cli("reconcile", "--fix", "-o", "json")
    assert result.exit_code == 0, result.stderr
    assert [(r["kind"], r["fixed"]) for r in result.json()] == [("power-state", True),
                                                               ("image-cache", True)]
    assert vm_row(db)[1] == "stopped"
    assert host_images(db) == {SHA_B}
    assert runner.tasks == []  # recording the state never starts or stops the VM
    assert operations(db) == [("reconcile", "done")]


def test_fix_leaves_unknown_domains_and_exits_6(cli, db, tenant_with_vm, fake):
    fake(FakeHosts({"aio": hv_result([(f"stk-{tenant_with_vm}", "running"), (D2, "running")])}))
    result = cli("reconcile", "--fix", "-o", "json")
    assert result.exit_code == 6
    assert [(r["kind"], r["action"], r["fixed"]) for r in result.json()] == [
        ("unknown-domain", None, False)]
    assert result.stderr.splitlines()[-1] == "stackctl: error: 1 drift item(s) remain"


def test_fix_redefines_a_missing_domain_on_its_disk(cli, db, tenant_with_vm, fake):
    domain = f"stk-{tenant_with_vm}"
    runner = fake(FakeHosts({"aio": hv_result(disks=[domain])}))  # image not cached either
    result = cli("reconcile", "--fix", "-o", "json")
    assert result.exit_code == 0, result.stderr
    (row,) = result.json()
    assert (row["kind"], row["fix"], row["fixed"]) == ("missing-domain", REDEFINE, True)
    ((host, calls),) = runner.tasks
    assert host == "aio"
    assert [t.module for t in calls] == ["stack_image_cache", "stack_vm"]
    boot = calls[-1].args
    assert (boot["name"], boot["state"], boot["uuid"]) == (domain, "running", tenant_with_vm)
    assert boot["vcpus"] and boot["memory_mb"] and boot["image"]  # the full spec
    assert vm_row(db)[1:] == ("running", None, "192.168.150.99")
    assert len(host_images(db)) == 1  # the image it cached again is recorded


def test_fix_marks_a_vm_whose_disk_is_gone_error(cli, db, tenant_with_vm, fake):
    runner = fake(FakeHosts({"aio": hv_result()}))
    result = cli("reconcile", "--fix", "-o", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json()[0]["action"] == "recorded error"
    _uuid, state, fault, _address = vm_row(db)
    assert state == "error" and "no domain" in fault and "no disk" in fault
    assert runner.tasks == []


def test_a_failed_fix_is_reported_and_drift_remains(cli, db, tenant_with_vm, fake):
    fake(FakeHosts({"aio": hv_result(disks=[f"stk-{tenant_with_vm}"])}, fail_tasks=True))
    result = cli("reconcile", "--fix", "-o", "json")
    assert result.exit_code == 6
    (row,) = result.json()
    assert row["fixed"] is False and row["action"].startswith("failed: ")
    assert vm_row(db)[1] == "running"
    assert operations(db) == [("reconcile", "done")]


def test_unreachable_host_is_reported_and_its_vms_untouched(cli, db, tenant_with_vm, fake):
    fake(FakeHosts({"aio": hv_result()}, failing=["aio"]))
    result = cli("reconcile", "--fix", "-o", "json")
    assert result.exit_code == 6
    assert [(r["kind"], r["fix"]) for r in result.json()] == [("host-unreachable", None)]
    assert vm_row(db)[1] == "running"


def test_vms_on_a_disabled_host_are_checked(cli, db, tenant_with_vm, fake):
    assert cli("host", "disable", "aio").exit_code == 0
    fake(FakeHosts({"aio": hv_result([(f"stk-{tenant_with_vm}", "shut off")])}))
    result = cli("reconcile", "-o", "json")
    assert result.exit_code == 6
    assert [r["kind"] for r in result.json()] == ["power-state"]


def test_a_host_that_left_the_inventory_is_reported(cli, db, tenant_with_vm, fake):
    fake(FakeHosts({"hv2": hv_result()}))
    result = cli("reconcile", "-o", "json")
    assert result.exit_code == 6
    (row,) = result.json()
    assert (row["host"], row["kind"]) == ("aio", "host-unreachable")
    assert "not in the inventory" in row["detail"]


def test_host_option_limits_the_check(cli, db, tenant_with_vm, fake):
    add_host(db, "hv2")
    runner = fake(FakeHosts({"aio": hv_result(), "hv2": hv_result([("handmade", "running")])}))
    result = cli("reconcile", "--host", "hv2", "-o", "json")
    assert result.exit_code == 6
    assert [(r["host"], r["kind"]) for r in result.json()] == [("hv2", "unknown-domain")]
    assert runner.each == [(["hv2"], ["stack_hypervisor_info"])]
    missing = cli("reconcile", "--host", "nowhere")
    assert missing.exit_code == 3
    assert "host 'nowhere' is neither in the inventory" in missing.stderr


def test_ring_mismatch_is_fixed_by_copying_the_builders_ring(cli, db, tmp_path, fake):
    add_host(db)
    builder = tmp_path / "builder"
    builder.mkdir()
    for ring in RINGS:
        (builder / f"{ring}.ring.gz").write_bytes(ring.encode())
    same = [ring_file("/etc/swift", r, hashlib.sha256(r.encode()).hexdigest())
            for r in ("account", "container")]
    node = {"swift_builder_dir": str(builder)}
    groups = {"storage_nodes": {"aio": node}, "controllers": {"aio": {}},
              "proxies": {"aio": {}}}
    runner = fake(FakeHosts({"aio": hv_result()}, groups=groups, rings={"aio": {"files": same}}))
    report = cli("reconcile", "-o", "json")
    assert report.exit_code == 6
    assert [(r["kind"], r["object"], r["fix"]) for r in report.json()] == [
        ("ring-mismatch", "object ring", COPY_RINGS)]
    fixed = cli("reconcile", "--fix", "-o", "json")
    assert fixed.exit_code == 0, fixed.stderr
    ((host, calls),) = runner.tasks
    assert host == "aio" and [t.module for t in calls] == ["ansible.builtin.copy"]
    assert calls[0].args["src"] == f"{builder}/object.ring.gz"


def test_an_interrupted_fix_is_marked_done_by_recovery(cli, db, tenant_with_vm, fake,
                                                       monkeypatch):
    from stackctl.models import Operation

    fake(FakeHosts({"aio": hv_result([(f"stk-{tenant_with_vm}", "running")])}))
    with db.write() as session:
        session.add(Operation(kind="reconcile", status="running", step="fix",
                              owner="elsewhere:1:1"))
    monkeypatch.setattr("stackctl.journal.owner_alive", lambda _owner: False)
    result = cli("recover", "-o", "json")
    assert result.exit_code == 0, result.stderr
    (row,) = result.json()
    assert (row["kind"], row["status"]) == ("reconcile", "done")
    assert "reconcile --fix" in row["action"]
