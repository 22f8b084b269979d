"""The runner, for real: ansible-runner and ansible-playbook on a local-connection inventory,
with builtin modules (the project's own modules are exercised by the integration tests)."""

import stat
import time

import pytest
import yaml
from stackcore.errors import BackendError, InvalidInput

from stackctl import config
from stackctl.runner import AnsibleRunner, Task, failure_message, render_playbook

pytestmark = pytest.mark.slow


@pytest.fixture
def runner(home, inventory, monkeypatch):
    monkeypatch.delenv("STACKCTL_KEEP_RUNS")
    return AnsibleRunner(config.load())


def test_tasks_run_in_order_and_return_their_results(runner):
    events = []
    results = runner.run_tasks("hv1", [Task("ansible.builtin.ping", {"data": "one"}),
                                       Task("ansible.builtin.ping", {"data": "two"}, "second")],
                               progress=events.append)
    assert [r["ping"] for r in results] == ["one", "two"]
    assert [(e.kind, e.host, e.task) for e in events] == [
        ("start", "hv1", "ansible.builtin.ping"), ("ok", "hv1", "ansible.builtin.ping"),
        ("start", "hv1", "second"), ("ok", "hv1", "second")]


def test_arguments_are_never_templated(runner):
    payload = "{{ lookup('env', 'HOME') }} {% raw %} {# c #}"
    [result] = runner.run_tasks("hv1", [Task("ansible.builtin.ping", {"data": payload})])
    assert result["ping"] == payload


@pytest.mark.parametrize("value", ["52:54:00:12:34:56", "0755", "yes", "1e3", "null", "~",
                                   "multi\nline\n  indented", "quote ' and \" both", "",
                                   "{{ 0755 }}"])
def test_strings_stay_strings(runner, value):
    [result] = runner.run_tasks("hv1", [Task("ansible.builtin.ping", {"data": value})])
    assert result["ping"] == value


def test_a_failed_task_is_one_line_with_the_modules_message(runner):
    with pytest.raises(BackendError) as err:
        runner.run_tasks("hv1", [Task("ansible.builtin.fail", {"msg": "disk full\nmore"},
                                      "make disk")])
    assert str(err.value) == "make disk on hv1: disk full"


def test_a_host_outside_the_inventory_is_an_error_not_a_silent_no_op(runner):
    with pytest.raises(BackendError, match="not in the inventory"):
        runner.run_tasks("nosuchhost", [Task("ansible.builtin.ping")])


def test_an_unknown_module_is_reported(runner):
    with pytest.raises(BackendError, match="stack_nonexistent"):
        runner.run_tasks("hv1", [Task("stack_nonexistent")])


def test_host_patterns_are_refused(runner):
    with pytest.raises(InvalidInput):
        runner.run_tasks("all:!hv1", [Task("ansible.builtin.ping")])


def test_private_dirs_are_removed_afterwards(runner, home):
    runner.run_tasks("hv1", [Task("ansible.builtin.ping")], label="42")
    run_dir = home / "run"
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    assert list(run_dir.iterdir()) == []


def test_keep_runs_keeps_a_private_playbook(home, inventory, monkeypatch):
    monkeypatch.setenv("STACKCTL_KEEP_RUNS", "1")
    runner = AnsibleRunner(config.load())
    runner.run_tasks("hv1", [Task("ansible.builtin.ping", {"data": "secret-value"})],
                     label="42")
    [kept] = list((home / "run").iterdir())
    assert kept.name.startswith("42-1-")
    assert stat.S_IMODE(kept.stat().st_mode) == 0o700
    playbook = kept / "project" / "play.yml"
    assert stat.S_IMODE(playbook.stat().st_mode) == 0o600
    assert "secret-value" in playbook.read_text()
    # Arguments live in the playbook only, never on the ansible-playbook command line.
    command = (next(kept.glob("artifacts/*/command"))).read_text()
    assert "secret-value" not in command
    # Events are not written to disk (results may hold secrets).
    assert not list(kept.glob("artifacts/*/job_events/*.json"))


def test_run_each_reports_every_host(runner):
    outcomes = runner.run_each(["hv1", "hv2"], [Task("ansible.builtin.ping")])
    assert {h: (o.error, o.results[0]["ping"]) for h, o in outcomes.items()} == {
        "hv1": (None, "pong"), "hv2": (None, "pong")}


def test_inventory_hosts_lists_a_group_with_addresses(runner):
    assert runner.inventory_hosts("hypervisors") == {"hv1": "hv1", "hv2": "127.0.0.1"}
    assert runner.inventory_hosts("nosuchgroup") == {}


def test_missing_inventory_is_a_clear_error(home):
    runner = AnsibleRunner(config.load())  # home points at a missing inventory
    with pytest.raises(BackendError, match="does not exist"):
        runner.run_tasks("hv1", [Task("ansible.builtin.ping")])


def test_playbook_quotes_strings_and_marks_templates_unsafe():
    text = render_playbook("hv1", [Task("stack_vm", {"name": "x", "keys": ["{{ a }}"],
                                                     "n": 1})])
    assert 'name: "x"' in text and '- !unsafe "{{ a }}"' in text and "n: 1" in text
    assert text.count("!unsafe") == 1
    play = yaml.load(text, Loader=_UnsafeLoader)[0]
    assert play["hosts"] == "hv1" and play["gather_facts"] is False


class _UnsafeLoader(yaml.SafeLoader):
    pass


_UnsafeLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


@pytest.mark.parametrize("res,line", [
    ({"msg": "boom"}, "boom"),
    ({"msg": "MODULE FAILURE\nSee stdout/stderr", "module_stderr": "Traceback\nValueError: x\n"},
     "ValueError: x"),
    ({}, "failed without a message"),
])
def test_failure_message_is_one_line(res, line):
    assert failure_message(res) == line


def test_overhead_of_one_trivial_task(runner, capsys):
    """Not an assertion on speed (CI machines vary); prints the measurement for the report."""
    runner.run_tasks("hv1", [Task("ansible.builtin.ping")])  # warm caches
    timings = []
    for _ in range(3):
        started = time.monotonic()
        runner.run_tasks("hv1", [Task("ansible.builtin.ping")])
        timings.append(time.monotonic() - started)
    with capsys.disabled():
        print(f"\nrunner overhead, one ping task, local connection: "
              f"min {min(timings):.2f}s max {max(timings):.2f}s")
    assert min(timings) < 30


PLAYBOOK = """\
- hosts: hypervisors
  gather_facts: false
  tasks:
    - name: write a marker
      ansible.builtin.copy:
        dest: "{{ marker_dir }}/{{ inventory_hostname }}"
        content: "deployed\\n"
      tags: [files]
    - name: always ok
      ansible.builtin.ping:
      tags: [ping]
"""


@pytest.fixture
def playbook(tmp_path):
    path = tmp_path / "site.yml"
    path.write_text(PLAYBOOK.replace("{{ marker_dir }}", str(tmp_path)))
    return path


def test_run_playbook_streams_events_and_returns_the_recap(runner, playbook, tmp_path):
    events = []
    status, stats = runner.run_playbook(playbook, events.append)
    assert status == "successful"
    assert stats["changed"] == {"hv1": 1, "hv2": 1} and stats["ok"] == {"hv1": 2, "hv2": 2}
    assert "playbook_on_task_start" in {e["event"] for e in events}
    assert (tmp_path / "hv1").read_text() == "deployed\n"


def test_run_playbook_passes_check_limit_and_tags_through(runner, playbook, tmp_path):
    status, stats = runner.run_playbook(playbook, lambda e: None, check=True, diff=True,
                                        limit="hv2", tags="files")
    assert status == "successful"
    assert stats["changed"] == {"hv2": 1} and stats["ok"] == {"hv2": 1}
    assert not (tmp_path / "hv2").exists()  # check mode changed nothing


def test_host_var_is_templated_on_the_host_but_user_strings_never_are(tmp_path):
    """A HostVar becomes a lookup of the host's inventory variable; a user's string with the
    same Jinja text stays literal (!unsafe)."""
    import yaml

    from stackctl.runner import HostVar, Task, render_playbook

    text = render_playbook("aio", [Task("stack_vm", {
        "virt_type": HostVar("hypervisor_virt_type", "auto"),
        "user_data": "{{ hypervisor_virt_type | default('auto') }}"})])
    assert "\"{{ hypervisor_virt_type | default('auto') }}\"" in text
    assert "!unsafe \"{{ hypervisor_virt_type" in text
    yaml.load(text.replace("!unsafe", ""), Loader=yaml.SafeLoader)


@pytest.mark.parametrize("name, default", [("a b", "auto"), ("x", "auto'}}{{ y"), ("1x", "")])
def test_host_var_refuses_anything_but_a_name_and_a_plain_default(name, default):
    from stackcore.errors import InvalidInput

    from stackctl.runner import HostVar

    with pytest.raises(InvalidInput):
        HostVar(name, default)
