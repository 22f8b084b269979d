"""Server groups through the CLI: per-tenant CRUD, members shown with their hosts, delete
refused while members remain, ``vm create --group`` placing by the group's policy, and
membership ending with the VM."""

import pytest
from sqlalchemy import func, select

from stackctl.models import VM, Operation, ServerGroup, ServerGroupMember

from .conftest import add_host, insert_vm


def _no_runner_was_called(home):
    run = home / "run"
    return not run.exists() or not list(run.iterdir())


def join(db, vm_uuid, group, tenant="a"):
    """Make a VM a member of ``group`` as ``claim`` would."""
    from stackctl.models import Tenant

    with db.write() as session:
        owner = session.scalar(select(Tenant).where(Tenant.name == tenant))
        group_id = session.scalar(select(ServerGroup.id).where(
            ServerGroup.tenant_id == owner.id, ServerGroup.name == group))
        session.add(ServerGroupMember(vm_uuid=vm_uuid, group_id=group_id))


@pytest.fixture
def web_group(tenant_with_vm, cli, db):
    """Tenant a's anti-affinity group 'web' holding web-1 (on aio)."""
    assert cli("server-group", "create", "web", "--policy", "anti-affinity",
               tenant="a").exit_code == 0
    join(db, tenant_with_vm, "web")
    return tenant_with_vm


def test_create_list_show_delete(cli, home):
    cli("tenant", "create", "a")
    made = cli("server-group", "create", "web", "--policy", "anti-affinity", "-o", "json",
               tenant="a")
    assert made.exit_code == 0, made.stderr
    assert {k: v for k, v in made.json().items() if k != "created_at"} == {
        "name": "web", "policy": "anti-affinity", "tenant": "a", "members": [], "hosts": []}
    cli("server-group", "create", "db", "--policy", "affinity", tenant="a")
    listed = cli("server-group", "list", "-o", "json", tenant="a").json()
    assert [(g["name"], g["policy"]) for g in listed] == [("db", "affinity"),
                                                          ("web", "anti-affinity")]
    assert cli("server-group", "show", "db", "-o", "json", tenant="a").json()["members"] == []
    deleted = cli("server-group", "delete", "db", "-o", "json", tenant="a")
    assert deleted.json() == {"name": "db", "deleted": True}
    assert [g["name"] for g in cli("server-group", "list", "-o", "json", tenant="a").json()] == [
        "web"]
    assert _no_runner_was_called(home)


@pytest.mark.parametrize("args,code,message", [
    (["create", "Web", "--policy", "affinity"], 2, "invalid server group name 'Web'"),
    (["create", "a_b", "--policy", "affinity"], 2, "invalid server group name 'a_b'"),
    (["show", "../x"], 2, "invalid server group name '../x'"),
    (["create", "web", "--policy", "anti-affinity"], 4, "server group 'web' already exists"),
    (["show", "nope"], 3, "server group 'nope' does not exist"),
    (["delete", "nope"], 3, "server group 'nope' does not exist"),
])
def test_mistakes_are_one_line(cli, args, code, message):
    cli("tenant", "create", "a")
    cli("server-group", "create", "web", "--policy", "anti-affinity", tenant="a")
    result = cli("server-group", *args, tenant="a")
    assert result.exit_code == code
    assert result.stderr.startswith(f"stackctl: error: {message}")
    assert result.stderr.count("\n") == 1


def test_policy_is_a_choice(cli):
    result = cli("server-group", "create", "web", "--policy", "soft-affinity", tenant="a")
    assert result.exit_code == 2 and "'soft-affinity' is not one of" in result.stderr


def test_command_policies_match_the_model():
    from stackctl.commands.server_group import POLICIES
    from stackctl.models import SERVER_GROUP_POLICIES

    assert POLICIES == SERVER_GROUP_POLICIES


@pytest.mark.parametrize("args", [["show", "web"], ["delete", "web"]])
def test_another_tenants_group_does_not_exist(web_group, cli, args):
    result = cli("server-group", *args, tenant="b")
    assert result.exit_code == 3
    assert result.stderr == "stackctl: error: server group 'web' does not exist\n"
    assert cli("server-group", "list", "-o", "json", tenant="b").json() == []
    assert cli("server-group", "create", "web", "--policy", "affinity", tenant="b").exit_code == 0


def test_show_lists_members_with_their_hosts(web_group, cli, db):
    add_host(db, "hv2")
    join(db, insert_vm(db, "a", "web-2", host="hv2"), "web")
    shown = cli("server-group", "show", "web", "-o", "json", tenant="a").json()
    assert shown["members"] == [{"name": "web-1", "host": "aio", "state": "running"},
                                {"name": "web-2", "host": "hv2", "state": "running"}]
    assert shown["hosts"] == ["aio", "hv2"]
    table = cli("server-group", "show", "web", tenant="a").stdout
    assert "web-1 (aio), web-2 (hv2)" in table
    listed = cli("server-group", "list", tenant="a").stdout
    assert "web-1 (aio), web-2 (hv2)" in listed and "aio, hv2" in listed


def test_vm_show_names_its_group(web_group, cli):
    assert cli("vm", "show", "web-1", "-o", "json", tenant="a").json()["server_group"] == "web"
    assert ["server", "group", "web"] in [
        line.split() for line in cli("vm", "show", "web-1", tenant="a").stdout.splitlines()]


def test_a_group_with_members_cannot_be_deleted(web_group, cli):
    result = cli("server-group", "delete", "web", tenant="a")
    assert result.exit_code == 4
    assert result.stderr == ("stackctl: error: server group 'web' still has 1 member(s) "
                             "(web-1): delete those VMs first\n")


def test_deleting_the_vm_ends_its_membership(tenant_with_vm, cli, db):
    """A VM without a host is deleted without host work: the workflow's row delete runs, and
    the foreign key's cascade removes the membership."""
    cli("server-group", "create", "web", "--policy", "affinity", tenant="a")
    join(db, insert_vm(db, "a", "web-2", host="nowhere"), "web")
    assert cli("vm", "delete", "web-2", tenant="a").exit_code == 0
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(ServerGroupMember)) == 0
    assert cli("server-group", "delete", "web", tenant="a").exit_code == 0


def test_vm_create_into_a_full_anti_affinity_group_is_refused(web_group, cli, db, home):
    result = cli("vm", "create", "web-2", "--image", "img", "--flavor", "m1.nano", "--key",
                 "k1", "--group", "web", tenant="a")
    assert result.exit_code == 4
    assert result.stderr.splitlines()[-1] == (
        "stackctl: error: no host is free of server group 'web' (anti-affinity): aio holds "
        "web-1")
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(VM)) == 1
        assert session.scalar(select(func.count()).select_from(ServerGroupMember)) == 1
        op = session.scalar(select(Operation).order_by(Operation.id.desc()))
        assert (op.kind, op.status) == ("vm.create", "failed")
    assert _no_runner_was_called(home)


def test_vm_create_with_another_tenants_group_is_not_found(tenant_with_vm, cli, home):
    cli("server-group", "create", "theirs", "--policy", "affinity", tenant="b")
    result = cli("vm", "create", "web-2", "--image", "img", "--flavor", "m1.nano", "--key",
                 "k1", "--group", "theirs", tenant="a")
    assert result.exit_code == 3
    assert result.stderr == "stackctl: error: server group 'theirs' does not exist\n"
    assert _no_runner_was_called(home)


@pytest.mark.parametrize("policy,hosts,expected", [
    # web-1 is on aio (4 GiB). Spread alone would choose aio here...
    ("anti-affinity", {"hv2": 2048}, "hv2"),
    # ...and big here.
    ("affinity", {"hv2": 2048, "big": 16384}, "aio"),
])
def test_vm_create_claims_by_the_groups_policy(tenant_with_vm, cli, db, run_stackctl, policy,
                                               hosts, expected):
    """A real stackctl process claims, commits, and is killed before any host work
    (STACKCTL_CRASH_AT=image): the VM row and its membership were committed together."""
    for name, ram_mb in hosts.items():
        add_host(db, name, ram_mb=ram_mb)
    cli("server-group", "create", "grp", "--policy", policy, tenant="a")
    join(db, tenant_with_vm, "grp")
    proc = run_stackctl("vm", "create", "web-2", "--image", "img", "--flavor", "m1.nano",
                        "--key", "k1", "--group", "grp", tenant="a", STACKCTL_CRASH_AT="image")
    assert proc.returncode == -9, proc.stderr
    with db.read() as session:
        vm = session.scalar(select(VM).where(VM.name == "web-2"))
        assert vm.host.name == expected
        assert vm.server_group.name == "grp"


def test_deleting_a_tenant_takes_its_empty_server_groups(cli, db):
    cli("tenant", "create", "a")
    assert cli("server-group", "create", "web", "--policy", "affinity", tenant="a").exit_code == 0
    deleted = cli("tenant", "delete", "a")
    assert deleted.exit_code == 0, deleted.stderr
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(ServerGroup)) == 0
