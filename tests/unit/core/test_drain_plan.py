"""stackcore.drain_plan: the weight steps of a decommission, whether a ring can lose devices,
the journal step to resume at, and replication convergence from recon answers. Pure: tables."""

import pytest
from stackcore.drain_plan import (
    check_can_lose,
    check_fractions,
    convergence_lag,
    drain_plan_names,
    drain_steps,
    next_step,
    parse_fractions,
    pass_of,
    replication_lag,
    resume_after,
)
from stackcore.errors import Conflict, InvalidInput


@pytest.mark.parametrize(("weights", "fractions", "steps"), [
    ({"object/d1": 100}, (0.5, 0.25, 0), [{"object/d1": 50}, {"object/d1": 25},
                                          {"object/d1": 0}]),
    ({"object/d1": 100, "account/d1": 10}, (0.5, 0),
     [{"object/d1": 50, "account/d1": 5}, {"object/d1": 0, "account/d1": 0}]),
    # the last step is always 0, added when the fractions do not end there
    ({"object/d1": 80}, (0.5,), [{"object/d1": 40}, {"object/d1": 0}]),
    # a device already at 0 (a second device drained before) changes nothing: no empty step
    ({"object/d1": 0}, (0.5, 0), [{"object/d1": 0}]),
    ({"object/d1": 100, "object/d2": 0}, (0.5, 0),
     [{"object/d1": 50, "object/d2": 0}, {"object/d1": 0, "object/d2": 0}]),
    # straight to 0
    ({"object/d1": 100}, (0,), [{"object/d1": 0}]),
])
def test_drain_steps_lower_every_device_to_zero(weights, fractions, steps):
    assert drain_steps(weights, fractions) == steps


def test_drain_steps_come_from_the_original_weights_so_a_resumed_plan_is_the_same():
    first = drain_steps({"object/d1": 100})
    assert drain_steps({"object/d1": 100}) == first
    assert [s["object/d1"] for s in first] == [50, 25, 0]


@pytest.mark.parametrize(("text", "fractions"), [
    ("0.5,0.25,0", (0.5, 0.25, 0.0)),
    ("0.5", (0.5, 0.0)),
    ("0", (0.0,)),
    (" 0.75, 0.5 ,0.25 ", (0.75, 0.5, 0.25, 0.0)),
])
def test_parse_fractions(text, fractions):
    assert parse_fractions(text) == fractions


@pytest.mark.parametrize("bad", ["", "half", "1,0.5", "0.5,0.5", "0.25,0.5", "-0.1", "nan"])
def test_parse_fractions_refuses(bad):
    with pytest.raises(InvalidInput):
        parse_fractions(bad)


def test_check_fractions_refuses_an_empty_list():
    with pytest.raises(InvalidInput):
        check_fractions([])


def dev(key, zone, weight=100, region=1):
    return {"key": key, "zone": zone, "region": region, "weight": weight}


FOUR_ZONES = [dev("a", 1), dev("b", 2), dev("c", 3), dev("d", 4)]


@pytest.mark.parametrize(("devices", "leaving", "replicas"), [
    (FOUR_ZONES, {"d"}, 3),                                   # 3 zones stay for 3 replicas
    ([dev("a", 1), dev("b", 1), dev("c", 1), dev("d", 1)], {"d"}, 3),  # one zone before too
    ([dev("a", 1), dev("b", 2), dev("c", 2)], {"c"}, 2),       # 2 zones stay for 2 replicas
    ([dev("a", 1), dev("b", 1)], {"b"}, 1),                    # the all-in-one's single replica
    ([*FOUR_ZONES, dev("e", 4, weight=0)], {"d"}, 3),
])
def test_check_can_lose_accepts(devices, leaving, replicas):
    check_can_lose("object", devices, leaving, replicas)


@pytest.mark.parametrize(("devices", "leaving", "replicas", "why"), [
    (FOUR_ZONES[:3], {"c"}, 3, "would keep 2 device"),              # 3 replicas, 3 nodes
    (FOUR_ZONES, {"c", "d"}, 3, "would keep 2 device"),
    ([dev("a", 1), dev("b", 2), dev("c", 3), dev("d", 3)], {"c", "d"}, 3, "would keep 2"),
    ([dev("a", 1), dev("b", 2), dev("c", 3), dev("d", 2)], {"c"}, 3, "2 zone"),
    ([dev("a", 1), dev("b", 2), dev("c", 3), dev("d", 4, weight=0)], {"c"}, 3, "would keep 2"),
])
def test_check_can_lose_refuses_fewer_devices_or_zones_than_replicas(devices, leaving, replicas,
                                                                       why):
    with pytest.raises(Conflict, match=why):
        check_can_lose("object", devices, leaving, replicas)


@pytest.mark.parametrize(("done", "step"), [
    ([], "weight-1"),
    (["weight-1"], "converge-1"),
    (["weight-1", "converge-1"], "weight-2"),
    (["weight-1", "converge-1", "weight-2", "converge-2"], "empty"),
    (["weight-1", "converge-1", "weight-2", "converge-2", "empty"], "remove"),
    (["weight-1", "converge-1", "weight-2", "converge-2", "empty", "remove"], None),
])
def test_next_step_resumes_at_the_first_step_not_done(done, step):
    planned = [*drain_plan_names(2), "empty", "remove"]
    assert next_step(planned, done) == step


def test_drain_plan_names_pair_each_change_with_its_convergence():
    assert drain_plan_names(2) == ["weight-1", "converge-1", "weight-2", "converge-2"]


# Recon answers as the servers give them (captured on the all-in-one, times changed).
OBJECT = {"replication_time": 0.5, "object_replication_time": 0.5,
          "replication_last": 1000.0, "object_replication_last": 1000.0,
          "replication_stats": {"attempted": 164, "failure": 0, "remove": 0, "rsync": 3}}
CONTAINER = {"replication_time": 1.5, "replication_last": 1000.0,
             "replication_stats": {"attempted": 71, "failure": 0, "remove": 0,
                                   "start": 998.5, "success": 71}}


@pytest.mark.parametrize(("kind", "data", "window"), [
    ("object", OBJECT, (970.0, 1000.0)),        # minutes
    ("container", CONTAINER, (998.5, 1000.0)),  # seconds, start in the stats
    ("account", {"replication_time": 2.0, "replication_last": 1000.0}, (998.0, 1000.0)),
    ("object", {}, None),
    ("object", None, None),
    ("container", {"replication_last": None}, None),
])
def test_pass_of(kind, data, window):
    found = pass_of(kind, data)
    assert (found[:2] if found else None) == window


@pytest.mark.parametrize(("kind", "data", "since", "why"), [
    ("object", OBJECT, 960.0, None),
    ("object", OBJECT, 980.0, "no object replication pass started since the new rings"),
    ("object", None, 0.0, "no object replication pass reported yet"),
    ("object", {**OBJECT, "replication_stats": {"failure": 2, "remove": 0}}, 0.0,
     "had 2 failure"),
    ("object", {**OBJECT, "replication_stats": {"failure": 0, "remove": 7}}, 0.0,
     "handed off 7 partition"),
    ("container", CONTAINER, 998.0, None),
    ("container", {**CONTAINER, "replication_stats": {"start": 998.5, "remove": 1}}, 0.0,
     "handed off 1"),
])
def test_replication_lag(kind, data, since, why):
    lag = replication_lag(kind, data, since)
    assert lag == why if why is None else why in lag


def test_convergence_lag_lists_every_node_and_kind_still_in_the_way():
    answers = {"n2": {"object": OBJECT, "container": CONTAINER, "account": None},
               "n1": {"object": OBJECT, "container": CONTAINER, "account": CONTAINER}}
    assert convergence_lag(answers, 990.0) == [
        "n1: no object replication pass started since the new rings",
        "n2: no object replication pass started since the new rings",
        "n2: no account replication pass reported yet"]
    assert convergence_lag({h: {"object": OBJECT, "container": CONTAINER,
                                "account": CONTAINER} for h in ("n1", "n2")}, 900.0) == []


@pytest.mark.parametrize(("now", "left", "when"), [(100.0, 0, None), (100.0, 3600, 3700.0)])
def test_resume_after(now, left, when):
    assert resume_after(now, left) == when
