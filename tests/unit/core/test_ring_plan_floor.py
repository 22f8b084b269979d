"""stackcore.ring_plan's ``purge`` and ``keep_weights``: a device list as a floor (listed devices
are added when missing, the rest of the ring stays as it is) rather than the whole truth.
Pure planning only: no Swift, so no `swift` marker."""

from dataclasses import replace

import pytest
from stackcore.errors import InvalidInput
from stackcore.ring_plan import (
    ADD_DEVICE,
    REBALANCE,
    REMOVE_DEVICE,
    SAVE_BUILDER,
    SET_META,
    SET_WEIGHT,
    WRITE_RING,
    DesiredRing,
    Device,
    RingState,
    plan_ring,
    resolve_desired,
)

D1 = Device(ip="127.0.0.1", port=6200, device="sdb", zone=1, weight=100.0, meta="", id=0)
D2 = Device(ip="127.0.0.2", port=6200, device="sdb", zone=2, weight=100.0, meta="", id=1)
D3 = Device(ip="127.0.0.3", port=6200, device="sdb", zone=3, weight=100.0, meta="", id=2)
D4 = Device(ip="127.0.0.4", port=6200, device="sdb", zone=4, weight=100.0, meta="", id=3)
D5 = Device(ip="127.0.0.5", port=6200, device="sdb", zone=5, weight=42.0)
CURRENT = RingState(name="object", part_power=8, replicas=3.0, min_part_hours=1,
                    devices=(D1, D2, D3, D4))
TAIL = [REBALANCE, SAVE_BUILDER, WRITE_RING]


def want(*devices, **kw):
    return DesiredRing(name="object", devices=tuple(devices), **kw)


def kinds(actions):
    return [a.kind for a in actions]


@pytest.mark.parametrize("current, desired, expected", [
    # purge=False: unlisted devices stay
    pytest.param(CURRENT, want(D1, D2, D3, purge=False), [], id="floor-keeps-unlisted"),
    pytest.param(CURRENT, want(D1, purge=False), [], id="floor-of-one-keeps-the-rest"),
    pytest.param(CURRENT, want(purge=False), [], id="empty-floor-keeps-everything"),
    pytest.param(CURRENT, want(D1, D5, purge=False), [ADD_DEVICE, *TAIL],
                 id="floor-adds-missing-only"),
    pytest.param(CURRENT, want(D1, D2, replace(D3, weight=10.0), purge=False),
                 [SET_WEIGHT, *TAIL], id="floor-still-sets-listed-weights"),
    pytest.param(CURRENT, want(D1, replace(D2, zone=9), purge=False),
                 [REMOVE_DEVICE, ADD_DEVICE, *TAIL], id="floor-still-moves-a-listed-device"),
    # keep_weights=True: listed existing devices keep their ring weight
    pytest.param(CURRENT, want(D1, D2, replace(D3, weight=10.0), D4, keep_weights=True), [],
                 id="keep-weights-no-set-weight"),
    pytest.param(CURRENT, want(D1, D2, D3, replace(D4, weight=0.0), keep_weights=True), [],
                 id="keep-weights-even-to-zero"),
    pytest.param(CURRENT, want(D1, D2, D3, D4, D5, keep_weights=True), [ADD_DEVICE, *TAIL],
                 id="keep-weights-adds-new"),
    pytest.param(CURRENT, want(D1, D2, D3, replace(D4, weight=1.0, meta="rack 7"),
                               keep_weights=True),
                 [SET_META, SAVE_BUILDER, WRITE_RING], id="keep-weights-still-sets-meta"),
    pytest.param(CURRENT, want(D1, D2, D3, keep_weights=True), [REMOVE_DEVICE, *TAIL],
                 id="keep-weights-alone-still-purges"),
    # both: the roles' seed of a ring `stackctl storage device` then manages
    pytest.param(CURRENT, want(replace(D1, weight=1.0), replace(D2, weight=1.0), D5,
                               purge=False, keep_weights=True),
                 [ADD_DEVICE, *TAIL], id="seed-only-adds"),
    pytest.param(CURRENT, want(replace(D1, weight=1.0), replace(D2, weight=1.0),
                               purge=False, keep_weights=True),
                 [], id="seed-rerun-is-a-no-op"),
    pytest.param(None, want(D1, D2, D3, part_power=8, purge=False, keep_weights=True),
                 ["create", ADD_DEVICE, ADD_DEVICE, ADD_DEVICE, *TAIL],
                 id="create-is-unaffected"),
    # defaults unchanged: the list is the whole truth
    pytest.param(CURRENT, want(D1, D2, D3), [REMOVE_DEVICE, *TAIL], id="default-purges"),
    pytest.param(CURRENT, want(D1, D2, D3, replace(D4, weight=10.0)), [SET_WEIGHT, *TAIL],
                 id="default-sets-weight"),
])
def test_plan_ring_floor(current, desired, expected):
    assert kinds(plan_ring(current, desired)) == expected


def test_no_remove_action_for_unlisted_devices():
    actions = plan_ring(CURRENT, want(D1, D5, purge=False))
    assert REMOVE_DEVICE not in kinds(actions)
    assert [a.device.key for a in actions if a.device is not None] == [D5.key]


def test_new_device_is_added_with_its_listed_weight_under_keep_weights():
    actions = plan_ring(CURRENT, want(replace(D1, weight=7.0), D5, keep_weights=True,
                                      purge=False))
    (add,) = [a for a in actions if a.kind == ADD_DEVICE]
    assert add.device.key == D5.key and add.device.weight == 42.0
    assert "weight 42" in add.reason
    assert SET_WEIGHT not in kinds(actions)


def test_default_purge_removes_every_unlisted_device_by_key():
    actions = plan_ring(CURRENT, want(D1, D2, D3))
    assert [(a.kind, a.device.key) for a in actions if a.device] == [(REMOVE_DEVICE, D4.key)]


@pytest.mark.parametrize("current, desired", [
    pytest.param(replace(CURRENT, devices=(D1, D2, D3)), want(D1, purge=False),
                 id="one-listed-two-kept"),
    pytest.param(replace(CURRENT, devices=(D1, D2)), want(D5, purge=False),
                 id="one-added-two-kept"),
])
def test_unlisted_devices_count_for_the_replicas_check(current, desired):
    plan_ring(current, desired)  # does not raise


@pytest.mark.parametrize("current, desired, message", [
    pytest.param(replace(CURRENT, devices=(D1, D2, D3)), want(D1),
                 "3 replicas need at least 3 devices with a weight above 0, got 1",
                 id="default-counts-only-listed"),
    pytest.param(replace(CURRENT, devices=(D1, replace(D2, weight=0.0))), want(D5, purge=False),
                 "got 2", id="unlisted-weight-zero-does-not-count"),
    pytest.param(replace(CURRENT, devices=(D1, D2)), want(D1, purge=False),
                 "got 2", id="floor-does-not-invent-devices"),
    pytest.param(replace(CURRENT, devices=(D1, D2, D3)), want(D1, replicas=4.0, purge=False),
                 "4 replicas need at least 4", id="floor-with-more-replicas"),
])
def test_replicas_check_with_a_floor(current, desired, message):
    with pytest.raises(InvalidInput, match=message):
        plan_ring(current, desired)


def test_resolve_desired_defaults_are_unchanged():
    desired = resolve_desired("object", devices=[])
    assert desired.purge is True and desired.keep_weights is False
    assert DesiredRing(name="object").purge is True
    assert DesiredRing(name="object").keep_weights is False


def test_resolve_desired_passes_the_options_through():
    dev = {"ip": "127.0.0.5", "port": 6200, "device": "sdb", "zone": 5, "weight": 42}
    desired = resolve_desired("object", devices=[dev], purge=False, keep_weights=True)
    assert desired.purge is False and desired.keep_weights is True
    assert desired.devices == (D5,)
    assert kinds(plan_ring(CURRENT, desired)) == [ADD_DEVICE, *TAIL]


def test_replicas_check_uses_the_weight_the_ring_keeps():
    full = replace(CURRENT, devices=(D1, D2, D3))
    assert plan_ring(full, want(D1, D2, replace(D3, weight=0.0), keep_weights=True)) == []


def test_replicas_check_does_not_count_a_drained_device_listed_with_weight():
    drained = replace(CURRENT, devices=(D1, replace(D2, weight=0.0), replace(D3, weight=0.0)))
    with pytest.raises(InvalidInput, match="got 2"):
        plan_ring(drained, want(D1, D2, D3, D5, keep_weights=True, purge=False))
