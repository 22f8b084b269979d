"""playbooks/prechecks.yml: passes on the deployed all-in-one (the Swift ports are held by its
own daemons, which counts as free), and on a scratch host whose object-server port a foreign
process holds it fails with one line naming the host, the port and the process."""

import json
import os
import re
import shutil
import socket
import subprocess
import time

import pytest
import yaml

from .conftest import PROJECT

pytestmark = pytest.mark.slow

SCRATCH_IP = "127.0.0.55"  # a loopback address no inventory of the project uses


def run_playbook(inventory, *extra):
    """Run playbooks/prechecks.yml; returns (process, {host: {ok, changed, failed, ...}}).
    Results are printed as JSON so that a message is never wrapped."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    proc = subprocess.run([str(PROJECT / ".venv/bin/ansible-playbook"), "-i", str(inventory),
                           "playbooks/prechecks.yml", *extra],
                          cwd=PROJECT, env=env, capture_output=True, text=True, check=False,
                          timeout=300)
    recap = proc.stdout[proc.stdout.rindex("PLAY RECAP"):]
    stats = {m["host"]: {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m["counts"])}
             for m in re.finditer(r"^(?P<host>\S+)\s+:\s+(?P<counts>.*)$", recap, re.M)}
    return proc, stats


def failure_messages(stdout):
    """The ``msg`` of every ``fatal: [host]: FAILED! => {...}`` line."""
    return [json.loads(line.split("=> ", 1)[1])["msg"]
            for line in stdout.splitlines() if line.startswith("fatal:") and "FAILED!" in line]


def test_prechecks_pass_on_the_deployed_all_in_one():
    proc, stats = run_playbook(PROJECT / "inventories/aio/hosts.yml")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert stats["aio"]["failed"] == 0 and stats["aio"]["changed"] == 0


@pytest.fixture
def foreign_listener():
    """``python3 -m http.server`` on SCRATCH_IP, at a port the kernel says is free."""
    with socket.socket() as probe:
        probe.bind((SCRATCH_IP, 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([shutil.which("python3"), "-m", "http.server", str(port),
                               "--bind", SCRATCH_IP], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as client:
                if client.connect_ex((SCRATCH_IP, port)) == 0:
                    break
            assert server.poll() is None and time.monotonic() < deadline, "no http.server"
            time.sleep(0.05)
        yield server.pid, port
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_port_held_by_a_foreign_process_fails_with_one_line(foreign_listener, tmp_path):
    pid, port = foreign_listener
    inventory = tmp_path / "hosts.yml"
    host = {"ansible_connection": "local",
            "ansible_python_interpreter": str(PROJECT / ".venv/bin/python"),
            "swift_ip": SCRATCH_IP, "swift_object_port": port, "swift_devices": [{"name": "d1"}],
            # A cluster never deployed, with directories of its own: nothing to compare.
            "swift_cluster_name": f"precheck-{tmp_path.name}",
            "swift_conf_dir": str(tmp_path / "conf"), "swift_run_dir": str(tmp_path / "run")}
    inventory.write_text(yaml.safe_dump({"all": {"children": {
        "controllers": {"hosts": {"scratch": host}}, "storage_nodes": {"hosts": {"scratch": None}},
        "proxies": {"hosts": {"scratch": None}}}}}))

    proc, stats = run_playbook(inventory, "--tags", "storage")

    assert proc.returncode == 2, proc.stdout[-3000:]
    assert stats["scratch"]["failed"] == 1 and stats["scratch"]["changed"] == 0
    [message] = failure_messages(proc.stdout)
    assert re.fullmatch(rf"scratch: port {port} on {SCRATCH_IP} is taken by pid {pid} "
                        r"\(python3[\d.]*\); object-server needs it", message), message
