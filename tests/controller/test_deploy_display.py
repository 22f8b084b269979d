"""What `stackctl deploy` prints: the recap table's rows and unified diffs."""

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
