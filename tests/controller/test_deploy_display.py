"""What `stackctl deploy` prints: the recap table's rows and unified diffs."""

import pytest

from stackctl.commands.deploy import recap_rows, render_diffs


def test_recap_rows_follow_ansibles_play_recap():
    stats = {"ok": {"aio": 20, "hv2": 3}, "changed": {"aio": 2}, "dark": {"hv2": 1},
             "failures": {}, "skipped": {"aio": 1}, "rescued": {}, "ignored": {}}
    assert recap_rows(stats) == [
        {"host": "aio", "ok": 20, "changed": 2, "unreachable": 0, "failed": 0, "skipped": 1,
         "rescued": 0, "ignored": 0},
        {"host": "hv2", "ok": 3, "changed": 0, "unreachable": 1, "failed": 0, "skipped": 0,
         "rescued": 0, "ignored": 0},
    ]


def test_diffs_of_text_dicts_and_prepared_output():
    [text] = render_diffs({"before": "a\nb\n", "after": "a\nc\n", "before_header": "/etc/x"})
    assert "--- /etc/x" in text and "-b" in text and "+c" in text
    [data] = render_diffs([{"before": {"state": "absent"}, "after": {"state": "active"}}])
    assert '-  "state": "absent"' in data and '+  "state": "active"' in data
    assert render_diffs({"prepared": "2 packages\n"}) == ["2 packages"]
    assert render_diffs([{"before": "same", "after": "same"}, "junk", {}]) == []


@pytest.mark.parametrize("action, res, expected", [
    ("ansible.builtin.debug", {"msg": "WARNING: guests run under TCG"},
     ["WARNING: guests run under TCG"]),
    ("debug", {"msg": "hello"}, ["hello"]),
    ("stack_vm", {"msg": "not shown", "warnings": ["w1"]}, ["w1"]),
    ("stack_network", {"changed": True}, []),
])
def test_task_notes_surface_warnings_and_debug_messages(action, res, expected):
    from stackctl.commands.deploy import task_notes

    assert task_notes(action, res) == expected
