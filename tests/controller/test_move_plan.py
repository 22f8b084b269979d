"""move_plan: settling an interrupted move (forward or back) and planning a drain, as tables."""

import pytest
from stackcore.errors import Conflict

from stackctl.move_plan import Move, Mover, plan_drain, resolve, without
from stackctl.scheduler import GroupState, HostState, Policy, Usage


@pytest.mark.parametrize(("source", "target", "live", "copied", "way"), [
    # The target runs it: the switch-over happened (or a cold boot there did).
    ("absent", "running", True, False, "forward"),
    ("stopped", "running", True, False, "forward"),
    ("absent", "paused", True, False, "forward"),
    (None, "running", True, False, "forward"),  # source unreachable: the target is the VM
    ("stopped", "running", False, True, "forward"),
    # The source still runs it: whatever the target holds goes.
    ("running", "stopped", True, False, "back"),
    ("running", "absent", True, False, "back"),
    ("paused", "stopped", True, False, "back"),
    ("running", "stopped", False, False, "back"),
    # Cold: stopped on both; forward only once the disk copy completed.
    ("stopped", "stopped", False, False, "back"),
    ("stopped", "stopped", False, True, "forward"),
    ("stopped", "absent", False, True, "back"),
    # The source lost the domain (undefined after a live move) while the target has it.
    ("absent", "stopped", True, False, "forward"),
])
def test_resolve(source, target, live, copied, way):
    assert resolve(source, target, live=live, copied=copied) == way


@pytest.mark.parametrize(("source", "target", "words"), [
    ("running", "running", "running on both hosts"),
    ("absent", "absent", "on neither host"),
    (None, "stopped", "cannot be reached"),
])
def test_resolve_refuses_to_guess(source, target, words):
    with pytest.raises(Conflict, match=words):
        resolve(source, target, live=True, copied=False)


HOSTS = [HostState("lab1", 2, 2048, 20), HostState("lab2", 2, 2048, 20),
         HostState("lab3", 2, 2048, 20)]
POLICY = Policy(cpu_allocation_ratio=1.0, ram_allocation_ratio=1.0)


def mover(name, state="running", group=None, ram=512):
    return Mover(name, 1, ram, 1, state, group)


def test_drain_spreads_and_counts_each_planned_move():
    usage = {"lab1": Usage(0, 1024, 0, 1), "lab2": Usage(0, 0, 0, 0)}
    moves = plan_drain("lab3", [mover("a"), mover("b"), mover("c", "stopped")], HOSTS, usage,
                       {}, POLICY)
    # spread: most free RAM first, and each move counts for the next choice (lab2 has 2048
    # MiB free, then 1536, then 1024: a tie with lab1, broken by name).
    assert moves == [Move("a", "lab2", "live"), Move("b", "lab2", "live"),
                     Move("c", "lab1", "cold")]


def test_drain_cold_moves_everything_cold():
    moves = plan_drain("lab3", [mover("a")], HOSTS, {}, {}, POLICY, live=False)
    assert moves == [Move("a", "lab1", "cold")]


def test_drain_reports_vms_that_cannot_move():
    group = GroupState("g", "anti-affinity", {"lab1": ("x",), "lab2": ("y",), "lab3": ("z",)})
    moves = plan_drain("lab3", [mover("z", group="g"), mover("big", ram=4096),
                                mover("b", "building")], HOSTS, {}, {"g": group}, POLICY)
    assert [m.target for m in moves] == [None, None, None]
    assert "server group 'g' (anti-affinity)" in moves[0].reason
    assert "MiB RAM free" in moves[1].reason
    assert "is building" in moves[2].reason


def test_drain_keeps_anti_affinity_among_the_movers():
    group = GroupState("g", "anti-affinity", {"lab3": ("p", "q")})
    hosts = [*HOSTS, HostState("lab4", 2, 2048, 20)]
    moves = plan_drain("lab3", [mover("p", group="g"), mover("q", group="g")], hosts, {},
                       {"g": group}, POLICY)
    assert moves[0].target != moves[1].target and None not in (m.target for m in moves)


def test_drain_moves_an_affinity_group_together():
    group = GroupState("g", "affinity", {"lab3": ("p", "q")})
    moves = plan_drain("lab3", [mover("p", group="g"), mover("q", group="g")], HOSTS,
                       {"lab1": Usage(0, 512, 0, 1)}, {"g": group}, POLICY)
    assert moves[0].target == moves[1].target == "lab2"


def test_drain_never_targets_the_source_or_a_disabled_host():
    hosts = [HostState("lab1", 2, 2048, 20, enabled=False), HOSTS[1], HOSTS[2]]
    moves = plan_drain("lab2", [mover("a")], hosts, {}, {}, POLICY)
    assert moves == [Move("a", "lab3", "live")]


def test_without_drops_the_vm_and_the_leaving_host():
    group = GroupState("g", "anti-affinity", {"lab1": ("a", "b"), "lab2": ("c",)})
    assert without(group, "a").members == {"lab1": ("b",), "lab2": ("c",)}
    assert without(group, "c", leaving="lab1").members == {}
    assert without(None, "a") is None
