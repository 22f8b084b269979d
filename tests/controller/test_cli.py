"""The CLI: names refused before anything touches a host, clear errors with exit codes,
tenant isolation, output formats, and start-up that imports nothing heavy."""

import json
import subprocess
import sys

import pytest
import yaml

from .conftest import add_host, insert_vm

BAD_VM_NAMES = ["<a>", "a;rm -rf", "../x", "a/b", "x" * 64, "Web1", "-a", "a b", "$(id)", ""]


def _no_runner_was_called(home):
    """STACKCTL_KEEP_RUNS=1 in these tests: every runner call would leave a directory."""
    run = home / "run"
    return not run.exists() or not list(run.iterdir())


@pytest.mark.parametrize("name", BAD_VM_NAMES)
def test_bad_vm_names_are_refused_before_any_host_work(run_stackctl, home, name):
    proc = run_stackctl("vm", "create", "--image", "img", "--flavor", "m1.nano", "--key", "k1",
                        "--", name, tenant="a")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stackctl: error: invalid VM name")
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert _no_runner_was_called(home)


@pytest.mark.parametrize("args", [
    ["tenant", "create", "<a>"],
    ["tenant", "create", "../x"],
    ["keypair", "delete", "a;b"],
    ["flavor", "create", "a/b", "--vcpus", "1", "--ram", "128", "--disk", "1"],
    ["image", "show", "x" * 64],
    ["image", "import", "..", "/dev/null"],
])
def test_bad_resource_names_are_one_line(cli, args):
    result = cli(*args, tenant="a")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "stackctl: error: invalid" in result.stderr


def test_tenant_keypair_flavor_round_trip(cli, keyfile):
    assert cli("tenant", "create", "a").exit_code == 0
    key = cli("keypair", "add", "k1", "--public-key", str(keyfile), "-o", "json", tenant="a")
    assert key.exit_code == 0 and key.json()["fingerprint"].startswith("SHA256:")
    assert [k["name"] for k in cli("keypair", "list", "-o", "json", tenant="a").json()] == ["k1"]
    assert cli("flavor", "create", "m2.big", "--vcpus", "2", "--ram", "2048", "--disk",
               "20").exit_code == 0
    flavors = {f["name"]: f for f in cli("-o", "json", "flavor", "list").json()}
    assert flavors["m2.big"] == {"name": "m2.big", "vcpus": 2, "ram_mb": 2048, "disk_gb": 20}
    assert cli("keypair", "delete", "k1", tenant="a").exit_code == 0
    assert cli("tenant", "delete", "a").exit_code == 0
    assert cli("tenant", "list", "-o", "json").json() == []


def test_duplicates_are_conflicts(cli, keyfile):
    cli("tenant", "create", "a")
    result = cli("tenant", "create", "a")
    assert result.exit_code == 4 and "already exists" in result.stderr
    cli("keypair", "add", "k1", "--public-key", str(keyfile), tenant="a")
    assert cli("keypair", "add", "k1", "--public-key", str(keyfile), tenant="a").exit_code == 4


def test_bad_public_key_file_is_refused(cli, tmp_path):
    cli("tenant", "create", "a")
    junk = tmp_path / "junk.pub"
    junk.write_text("ssh-ed25519 AAAA-not-a-key")
    result = cli("keypair", "add", "k1", "--public-key", str(junk), tenant="a")
    assert result.exit_code == 2 and "invalid public key" in result.stderr
    missing = cli("keypair", "add", "k1", "--public-key", str(tmp_path / "nope"), tenant="a")
    assert missing.exit_code == 3


@pytest.mark.parametrize("args,tenant,message,code", [
    (["vm", "list"], "ghost", "tenant 'ghost' does not exist", 3),
    (["vm", "list"], None, "no tenant given: pass --tenant or set STACKCTL_TENANT", 2),
    (["vm", "create", "web-1", "--image", "img", "--flavor", "m1.nano", "--key", "k1"],
     "ghost", "tenant 'ghost' does not exist", 3),
    (["vm", "create", "web-1", "--image", "nope", "--flavor", "m1.nano", "--key", "k1"],
     "a", "image 'nope' does not exist", 3),
    (["vm", "create", "web-1", "--image", "img", "--flavor", "m9.huge", "--key", "k1"],
     "a", "flavor 'm9.huge' does not exist (known: m1.micro, m1.nano, m1.small)", 3),
    (["vm", "create", "web-1", "--image", "img", "--flavor", "m1.nano", "--key", "nokey"],
     "a", "keypair 'nokey' does not exist", 3),
    (["vm", "create", "web-1", "--image", "img", "--flavor", "m1.nano", "--key", "k1"],
     "a", "a VM named 'web-1' already exists", 4),
    (["vm", "show", "nope"], "a", "VM 'nope' does not exist", 3),
])
def test_unknown_things_are_clear_errors(tenant_with_vm, cli, home, args, tenant, message,
                                         code):
    result = cli(*args, tenant=tenant)
    assert result.exit_code == code
    assert result.stderr == f"stackctl: error: {message}\n"
    assert _no_runner_was_called(home)


def test_kernel_images_cannot_be_booted(tenant_with_vm, cli, tmp_path):
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"\x7fkernel" * 1000)
    cli("image", "import", "kern", str(kernel), "--disk-format", "aki", tenant="a")
    result = cli("vm", "create", "web-2", "--image", "kern", "--flavor", "m1.nano", "--key",
                 "k1", tenant="a")
    assert result.exit_code == 2 and "not a bootable disk image" in result.stderr


def test_user_data_file_limits(tenant_with_vm, cli, tmp_path, home):
    big = tmp_path / "ud"
    big.write_text("#cloud-config\n" + "x" * 70_000)
    result = cli("vm", "create", "web-2", "--image", "img", "--flavor", "m1.nano", "--key",
                 "k1", "--user-data", str(big), tenant="a")
    assert result.exit_code == 2 and "larger than 64 KiB" in result.stderr
    binary = tmp_path / "bin"
    binary.write_bytes(b"\xff\xfe\x00")
    result = cli("vm", "create", "web-2", "--image", "img", "--flavor", "m1.nano", "--key",
                 "k1", "--user-data", str(binary), tenant="a")
    assert result.exit_code == 2 and "not UTF-8" in result.stderr
    assert _no_runner_was_called(home)


def test_no_capacity_is_a_conflict_that_leaves_nothing(tenant_with_vm, cli, db, home):
    from sqlalchemy import func, select

    from stackctl.models import VM, Operation

    add_host(db, "tiny", ram_mb=64)
    with db.write() as session:
        from stackctl.models import Host

        session.scalar(select(Host).where(Host.name == "aio")).enabled = False
    result = cli("vm", "create", "web-2", "--image", "img", "--flavor", "m1.small", "--key",
                 "k1", tenant="a")
    assert result.exit_code == 4
    assert result.stderr.splitlines()[-1] == (
        "stackctl: error: no host fits 1 vCPU, 512 MiB RAM, 5 GiB disk: aio is disabled, "
        "tiny has 96 MiB RAM free")
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(VM)) == 1  # only web-1
        op = session.scalar(select(Operation).order_by(Operation.id.desc()))
        assert (op.kind, op.status) == ("vm.create", "failed")
    assert _no_runner_was_called(home)


# --- tenant isolation ----------------------------------------------------------------------


@pytest.mark.parametrize("action", ["show", "start", "stop", "reboot", "delete", "console-log"])
def test_another_tenant_cannot_see_or_touch_a_vm(tenant_with_vm, run_stackctl, home, action):
    proc = run_stackctl("vm", action, "web-1", tenant="b")
    assert proc.returncode == 3
    assert proc.stderr == "stackctl: error: VM 'web-1' does not exist\n"
    assert _no_runner_was_called(home)


def test_lists_are_tenant_scoped(tenant_with_vm, cli, db):
    insert_vm(db, "b", "web-1")  # same name in another tenant is fine
    a = cli("vm", "list", "-o", "json", tenant="a").json()
    b = cli("vm", "list", "-o", "json", tenant="b").json()
    assert [v["uuid"] for v in a] == [tenant_with_vm]
    assert [v["tenant"] for v in b] == ["b"] and b[0]["uuid"] != tenant_with_vm
    assert cli("keypair", "list", "-o", "json", tenant="b").json() == []
    assert cli("keypair", "show", "k1", tenant="b").exit_code == 3


def test_private_images_are_invisible_to_other_tenants(tenant_with_vm, cli):
    assert [i["name"] for i in cli("image", "list", "-o", "json", tenant="b").json()] == []
    result = cli("image", "show", "img", tenant="b")
    assert (result.exit_code == 3
            and result.stderr == "stackctl: error: image 'img' does not exist\n")
    assert cli("image", "delete", "img", tenant="b").exit_code == 3


def test_show_and_list_render_every_format(tenant_with_vm, cli):
    shown = cli("vm", "show", "web-1", "-o", "json", tenant="a").json()
    assert shown["uuid"] == tenant_with_vm and shown["domain"] == f"stk-{tenant_with_vm}"
    assert "user_data" not in shown
    as_yaml = yaml.safe_load(cli("vm", "show", "web-1", "-o", "yaml", tenant="a").stdout)
    assert as_yaml == shown
    assert yaml.safe_load(cli("-o", "yaml", "vm", "list", tenant="a").stdout)[0]["name"] == "web-1"
    table = cli("vm", "list", tenant="a").stdout
    assert "web-1" in table and "running" in table and tenant_with_vm in table
    assert all(line == line.rstrip() for line in table.splitlines())


def test_host_list_shows_allocations(tenant_with_vm, cli):
    [host] = cli("host", "list", "-o", "json").json()
    assert (host["name"], host["vms"], host["ram_used_mb"], host["ram_mb"]) == (
        "aio", 1, 128, 4096)
    assert cli("host", "show", "nope").exit_code == 3


def test_tenant_with_vms_cannot_be_deleted(tenant_with_vm, cli):
    result = cli("tenant", "delete", "a")
    assert result.exit_code == 4 and "still has 1 VM(s)" in result.stderr


def test_recover_with_nothing_pending(cli):
    result = cli("recover")
    assert result.exit_code == 0 and result.stdout == "nothing to recover\n"
    assert cli("recover", "-o", "json").json() == []


def test_create_killed_at_claim_is_rolled_back_by_recover(tenant_with_vm, run_stackctl, cli):
    """A real stackctl process SIGKILLs itself (STACKCTL_CRASH_AT) after journaling the claim
    step; `stackctl recover` then rolls the operation back. (Steps after the claim need a
    real host: tests/integration/test_create_interrupted.py.)"""
    proc = run_stackctl("vm", "create", "crash-1", "--image", "img", "--flavor", "m1.nano",
                        "--key", "k1", tenant="a", STACKCTL_CRASH_AT="claim")
    assert proc.returncode == -9
    result = cli("recover", "-o", "json")
    [done] = result.json()
    assert (done["kind"], done["step"], done["status"]) == ("vm.create", "claim", "rolled_back")
    names = [v["name"] for v in cli("vm", "list", "-o", "json", tenant="a").json()]
    assert names == ["web-1"]


def test_state_changing_commands_recover_first(tenant_with_vm, run_stackctl, cli):
    proc = run_stackctl("vm", "create", "crash-1", "--image", "img", "--flavor", "m1.nano",
                        "--key", "k1", tenant="a", STACKCTL_CRASH_AT="claim")
    assert proc.returncode == -9
    result = cli("tenant", "create", "c")
    assert result.exit_code == 0
    assert "recovered operation" in result.stderr and "rolled back" in result.stderr
    assert cli("recover").stdout == "nothing to recover\n"


# --- error boundary and start-up -----------------------------------------------------------


def test_usage_errors_are_clicks_with_exit_2(run_stackctl):
    proc = run_stackctl("vm", "create")
    assert proc.returncode == 2 and "Missing argument 'NAME'" in proc.stderr
    proc = run_stackctl("-o", "xml", "vm", "list")
    assert proc.returncode == 2


@pytest.mark.parametrize("make", ["corrupt", "unreachable"])
def test_database_failures_are_backend_errors_without_traceback(run_stackctl, tmp_path, make):
    if make == "corrupt":
        path = tmp_path / "corrupt.db"
        path.write_bytes(b"this is not a database" * 100)
        url = f"sqlite:///{path}"
    else:
        url = "sqlite:////dev/null/x.db"
    proc = run_stackctl("--db", url, "tenant", "list")
    assert proc.returncode == 5
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("stackctl: error:")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_debug_shows_the_traceback(run_stackctl):
    proc = run_stackctl("vm", "list", tenant="ghost", STACKCTL_DEBUG="1")
    assert proc.returncode == 3
    assert "Traceback" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "stackctl: error: tenant 'ghost' does not exist"


def test_db_flag_selects_the_database(cli, tmp_path):
    other = tmp_path / "other.db"
    assert cli("--db", f"sqlite:///{other}", "tenant", "create", "x").exit_code == 0
    assert other.exists()
    assert cli("tenant", "list", "-o", "json").json() == []


def test_help_imports_nothing_heavy():
    code = ("import sys; from stackctl.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = {'sqlalchemy', 'rich', 'yaml', 'ansible_runner', 'ansible', 'libvirt'}\n"
            "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert json.loads(proc.stdout.strip().splitlines()[-1].replace("'", '"')) == []


def test_group_help_lists_every_command(run_stackctl):
    proc = run_stackctl("--help")
    for name in ("tenant", "keypair", "flavor", "image", "vm", "server-group", "host", "deploy",
                 "recover"):
        assert f"  {name} " in proc.stdout
    vm_help = run_stackctl("vm", "--help").stdout
    for name in ("create", "list", "show", "start", "stop", "reboot", "delete", "console-log"):
        assert f"  {name} " in vm_help


def test_public_key_from_stdin_and_tenant_flag_beats_the_environment(cli, keyfile):
    cli("tenant", "create", "a")
    cli("tenant", "create", "b")
    result = cli("keypair", "add", "k1", "--public-key", "-", "--tenant", "b", "-o", "json",
                 tenant="a", input=keyfile.read_text())
    assert result.exit_code == 0 and result.json()["tenant"] == "b"
    assert cli("keypair", "list", "-o", "json", tenant="a").json() == []


def test_global_output_flag_applies_to_subcommands(cli):
    assert cli("-o", "json", "flavor", "list").json()[0]["name"] == "m1.nano"
    assert cli("-o", "json", "flavor", "list", "-o", "yaml").stdout.startswith("- name: m1.nano")
