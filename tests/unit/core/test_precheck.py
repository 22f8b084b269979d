"""stackcore.precheck: /proc/net/tcp parsed, ports judged free/ours/taken (tables, and a real
socket of this test process), disk, memory, clock and KVM verdicts; the two precheck modules'
documentation matches their argument specs."""

import importlib.util
import os
import socket
from pathlib import Path

import pytest
from stackcore.errors import InvalidInput
from stackcore.precheck import (
    FREE,
    OURS,
    TAKEN,
    DiskFree,
    HostLimits,
    Listener,
    PortSpec,
    PortVerdict,
    Process,
    check_ports,
    clock_problem,
    covers,
    disk_problems,
    host_report,
    measure_disk,
    memory_problem,
    parse_meminfo,
    parse_proc_net_tcp,
    port_verdict,
    read_process,
    virt_problem,
)

PROJECT = Path(__file__).resolve().parents[3]

# Captured from /proc/net/tcp and tcp6 (the columns after the inode cut): a listener on
# 127.0.0.1:6200, one on 0.0.0.0:873, an established connection (state 01) and, in tcp6,
# listeners on ::1:8080, :: (port 11211) and the IPv4-mapped ::ffff:10.0.0.5:6201.
PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1838 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41001
   1: 00000000:0369 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41002
   2: 0100007F:1838 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000   104        0 41003
"""
PROC_NET_TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 42001
   1: 00000000000000000000000000000000:2BCB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 42002
   2: 0000000000000000FFFF00000500000A:1839 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 42003
"""  # noqa: E501 - captured lines


def test_proc_net_tcp_gives_the_listeners_only():
    assert parse_proc_net_tcp(PROC_NET_TCP) == [
        Listener("127.0.0.1", 6200, 41001), Listener("0.0.0.0", 873, 41002)]


def test_proc_net_tcp6_decodes_ipv6_and_ipv4_mapped_addresses():
    assert parse_proc_net_tcp(PROC_NET_TCP6) == [
        Listener("::1", 8080, 42001), Listener("::", 11211, 42002),
        Listener("10.0.0.5", 6201, 42003)]


@pytest.mark.parametrize("listening, wanted, expected", [
    ("10.0.0.5", "10.0.0.5", True),
    ("10.0.0.5", "10.0.0.6", False),
    ("0.0.0.0", "10.0.0.6", True),
    ("10.0.0.5", "0.0.0.0", True),
    ("::", "10.0.0.6", True),  # dual-stack wildcard
    ("10.0.0.5", "::", True),
    ("::1", "127.0.0.1", False),
    ("0.0.0.0", "::1", False),  # an IPv4 wildcard leaves IPv6 alone
    ("::1", "::1", True),
])
def test_which_listeners_are_in_the_way(listening, wanted, expected):
    assert covers(listening, wanted) is expected


# --- port_verdict: tables ------------------------------------------------------------------

SPEC = PortSpec(6200, "10.0.0.5", "object-server", pidfile="/run/swift/object-server.pid",
                match="/etc/swift/object-server.conf")
SERVER = "/opt/swift/bin/python3 /opt/swift/bin/swift-object-server /etc/swift/object-server.conf"
PROCESSES = {
    1: Process(1, 0, "init", "/sbin/init"),
    100: Process(100, 1, "swift-object-se", SERVER),  # the daemon the pid file names
    101: Process(101, 100, "swift-object-se", SERVER),  # its worker
    102: Process(102, 100, "python3", "python3 -c renamed-worker"),  # a worker that renamed itself
    200: Process(200, 1, "nginx", "nginx: master process"),
    300: Process(300, 1, "swift-object-se", SERVER),  # ours, started by hand (no pid file)
}
ON_ADDR = [Listener("10.0.0.5", 6200, 7)]
ON_ANY = [Listener("0.0.0.0", 6200, 7)]


@pytest.mark.parametrize("listeners, holders, pidfile_pid, expected", [
    pytest.param([], {}, None, (FREE, None, ""), id="nobody-listens"),
    pytest.param([Listener("10.0.0.6", 6200, 7)], {7: {200}}, None, (FREE, None, ""),
                 id="another-address"),
    pytest.param([Listener("10.0.0.5", 6201, 7)], {7: {200}}, None, (FREE, None, ""),
                 id="another-port"),
    pytest.param(ON_ADDR, {7: {100, 101}}, 100, (OURS, 100, "swift-object-se"),
                 id="our-daemon-and-its-worker"),
    pytest.param(ON_ADDR, {7: {102}}, 100, (OURS, 102, "python3"), id="child-of-the-pid-file"),
    pytest.param(ON_ADDR, {7: {300}}, None, (OURS, 300, "swift-object-se"),
                 id="command-line-match-without-pid-file"),
    pytest.param(ON_ADDR, {7: {200}}, 100, (TAKEN, 200, "nginx"), id="foreign-process"),
    pytest.param(ON_ANY, {7: {200}}, None, (TAKEN, 200, "nginx"), id="foreign-on-wildcard"),
    pytest.param(ON_ADDR, {7: {101, 200}}, 100, (TAKEN, 200, "nginx"), id="shared-with-foreign"),
    pytest.param(ON_ADDR, {7: {102}}, 200, (TAKEN, 102, "python3"),
                 id="stale-pid-file-names-a-foreign-process"),
    pytest.param(ON_ADDR, {}, None, (TAKEN, None, ""), id="holder-not-visible"),
    pytest.param(ON_ADDR, {7: {999}}, None, (FREE, None, ""), id="holder-exited-meanwhile"),
])
def test_port_verdict_table(listeners, holders, pidfile_pid, expected):
    verdict = port_verdict(SPEC, listeners, holders, PROCESSES, pidfile_pid)
    assert (verdict.state, verdict.pid, verdict.process) == expected
    assert (verdict.problem is None) == (verdict.state != TAKEN)


@pytest.mark.parametrize("verdict, line", [
    (PortVerdict(SPEC, TAKEN, 123, "nginx", "10.0.0.5"),
     "port 6200 on 10.0.0.5 is taken by pid 123 (nginx); object-server needs it"),
    (PortVerdict(SPEC, TAKEN, 123, "nginx", "0.0.0.0"),
     "port 6200 on 10.0.0.5 is taken by pid 123 (nginx) listening on 0.0.0.0; object-server "
     "needs it"),
    (PortVerdict(SPEC, TAKEN, None, "", "10.0.0.5"),
     "port 6200 on 10.0.0.5 is taken by a process this user cannot see (run the prechecks as "
     "root); object-server needs it"),
])
def test_a_taken_port_is_one_line(verdict, line):
    assert verdict.problem == line


@pytest.mark.parametrize("kwargs", [
    {"port": 0}, {"port": 70000}, {"address": "lab2"}, {"pidfile": "run/x.pid"},
])
def test_bad_port_specs_are_refused(kwargs):
    with pytest.raises(InvalidInput):
        PortSpec(**{"port": 6200, "address": "10.0.0.5", "owner": "object-server", **kwargs})


def test_addresses_are_canonical():
    assert PortSpec(1, "::ffff:10.0.0.5", "x").address == "10.0.0.5"
    assert PortSpec(1, "fe80:0::1", "x").address == "fe80::1"


# --- check_ports: a real listening socket of this test process ------------------------------


@pytest.fixture
def listening():
    """A socket of this process listening on 127.0.0.77 (a port the kernel picks)."""
    sock = socket.socket()
    sock.bind(("127.0.0.77", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


def test_a_port_held_by_another_process_is_taken(listening):
    spec = PortSpec(listening, "127.0.0.77", "object-server",
                    pidfile="/nonexistent/object-server.pid", match="object-server.conf")
    [verdict] = check_ports([spec])
    assert (verdict.state, verdict.pid) == (TAKEN, os.getpid())
    assert verdict.problem.startswith(f"port {listening} on 127.0.0.77 is taken by pid "
                                      f"{os.getpid()} (")


def test_a_port_held_by_the_process_of_the_pid_file_is_ours(listening, tmp_path):
    pidfile = tmp_path / "daemon.pid"
    pidfile.write_text(f"{os.getpid()}\n")
    spec = PortSpec(listening, "0.0.0.0", "daemon", pidfile=str(pidfile))
    [verdict] = check_ports([spec])
    assert (verdict.state, verdict.pid, verdict.listening_on) == (OURS, os.getpid(), "127.0.0.77")


def test_a_port_nobody_listens_on_is_free(listening):
    assert check_ports([PortSpec(listening, "127.0.0.78", "d")])[0].state == FREE


def test_read_process_handles_names_with_spaces_and_parentheses():
    me = read_process(os.getpid())
    assert me.pid == os.getpid() and me.ppid == os.getppid() and me.cmdline
    assert read_process(2**22 + 1) is None  # above pid_max: never a process


# --- disk, memory, clock, KVM ----------------------------------------------------------------


def test_disk_problems_once_per_filesystem():
    measured = [DiskFree("/var/lib/stackctl", "/", 2.04), DiskFree("/var/log", "/", 2.04),
                DiskFree("/srv/data", "/srv", 50.0)]
    assert disk_problems(measured, 5) == [
        "2.0 GiB free for /var/lib/stackctl (on /), at least 5 GiB needed"]
    assert disk_problems(measured, 0) == []


def test_a_directory_not_made_yet_is_measured_at_its_parent(tmp_path):
    [disk] = measure_disk([str(tmp_path / "not" / "yet")])
    assert disk.path == str(tmp_path / "not" / "yet") and disk.free_gb > 0
    assert os.path.ismount(disk.mount)


@pytest.mark.parametrize("text, expected", [
    ("MemTotal:       24683456 kB\nMemFree:         2000000 kB\nMemAvailable:   20480000 kB\n",
     20000),
    ("MemTotal:       1000000 kB\nMemFree:          524288 kB\n", 512),  # old kernels
])
def test_meminfo(text, expected):
    assert parse_meminfo(text) == expected


@pytest.mark.parametrize("available, minimum, expected", [
    (600, 512, None),
    (512, 512, None),
    (300, 512, "300 MiB of memory available, at least 512 MiB needed"),
])
def test_memory_problem(available, minimum, expected):
    assert memory_problem(available, minimum) == expected


@pytest.mark.parametrize("offset, reference, expected", [
    (0.4, 0.3, None),
    (5.3, 0.3, None),  # 5.0 s: at the limit
    (12.3, 0.3, "the clock is 12.0 s ahead of lab1's (at most 5 s allowed: is NTP running?)"),
    (-9.7, 0.3, "the clock is 10.0 s behind lab1's (at most 5 s allowed: is NTP running?)"),
])
def test_clock_problem(offset, reference, expected):
    assert clock_problem(offset, reference, 5, "lab1") == expected


@pytest.mark.parametrize("virt_type, record, device_ok, expected", [
    ("auto", None, False, None),
    ("qemu", {"kvm_usable": False}, False, None),
    ("kvm", {"kvm_usable": True}, True, None),
    ("kvm", None, True, None),  # QEMU not installed yet: /dev/kvm is all there is to see
    ("kvm", None, False, "hypervisor_virt_type is kvm but /dev/kvm is missing or not accessible "
                         "(set auto to fall back to TCG)"),
    ("kvm", {"kvm_usable": False, "detail": "no marker within 6.0 s"}, True,
     "hypervisor_virt_type is kvm but KVM does not run a guest here (no marker within 6.0 s); "
     "set auto to fall back to TCG"),
])
def test_virt_problem(virt_type, record, device_ok, expected):
    assert virt_problem(virt_type, record, device_ok) == expected


def test_host_report_measures_and_judges(tmp_path):
    limits = HostLimits(min_disk_gb=10**6, min_memory_mb=0, max_clock_skew=5,
                        reference_name="ctl")
    report = host_report([str(tmp_path)], limits, reference_time=1000.0, reference_offset=0.5,
                         clock=lambda: 1020.5)
    assert report["clock_offset"] == 20.5 and report["kvm"] is None
    assert report["memory_available_mb"] > 0
    assert [p.split(" GiB free")[1] for p in report["problems"][1:]] == [
        f" for {tmp_path} (on {report['disk'][0]['mount']}), at least 1e+06 GiB needed"]
    assert report["problems"][0].startswith("the clock is 20.0 s ahead of ctl's")
    assert host_report([], HostLimits())["problems"] == []  # no reference: no clock check


# --- the modules' documentation ----------------------------------------------------------------


def _documentation_mismatches():
    """tests/modules/conftest.py's check (DOCUMENTATION against the argument spec), loaded by
    path: that folder is not a package."""
    spec = importlib.util.spec_from_file_location("_module_test_helpers",
                                                  PROJECT / "tests" / "modules" / "conftest.py")
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    return helpers.documentation_mismatches


@pytest.mark.parametrize("name", ["stack_precheck_ports", "stack_precheck_host"])
def test_module_documentation_matches_argument_spec(name):
    assert _documentation_mismatches()(name) == []
