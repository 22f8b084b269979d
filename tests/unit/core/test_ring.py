"""stackcore.ring: request validation, the plan (tables), and reconcile on a real builder in a
temporary swift_dir (Swift's own RingBuilder; no daemons)."""

import copy
import hashlib
import os
import re
from dataclasses import replace

import pytest
from stackcore.errors import Conflict, InvalidInput, NotFound
from stackcore.ring import reconcile
from stackcore.ring_plan import (
    ADD_DEVICE,
    CREATE,
    REBALANCE,
    REMOVE_DEVICE,
    SAVE_BUILDER,
    SET_META,
    SET_MIN_PART_HOURS,
    SET_REPLICAS,
    SET_WEIGHT,
    WRITE_RING,
    DesiredRing,
    Device,
    RingState,
    plan_ring,
    resolve_desired,
)

# Swift imports eventlet, which changes process-wide state: once it is loaded, a thread that
# serves HTTP to a test imported earlier silently never answers. So these tests carry the
# `swift` marker and run in a pytest process of their own (make test), and Swift is imported
# only when a test runs, never at collection.
pytestmark = pytest.mark.swift


def swift_ring():
    """``swift.common.ring``, imported when a test calls it (a module-level object would be
    inspected by pytest's collection, importing Swift there)."""
    return pytest.importorskip("swift.common.ring")

D1 = Device(ip="127.0.0.1", port=6200, device="sdb", zone=1, weight=100.0, meta="", id=0)
D2 = Device(ip="127.0.0.2", port=6200, device="sdb", zone=2, weight=100.0, meta="", id=1)
D3 = Device(ip="127.0.0.3", port=6200, device="sdb", zone=3, weight=100.0, meta="", id=2)
D4 = Device(ip="127.0.0.4", port=6200, device="sdb", zone=4, weight=100.0)
CURRENT = RingState(name="object", part_power=8, replicas=3.0, min_part_hours=1,
                    devices=(D1, D2, D3))


def desired(**kw):
    kw.setdefault("devices", (D1, D2, D3))
    return DesiredRing(name="object", **kw)


def kinds(actions):
    return [a.kind for a in actions]


TAIL = [REBALANCE, SAVE_BUILDER, WRITE_RING]


# --- plan (pure) ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "current, want, expected",
    [
        pytest.param(None, desired(part_power=8, replicas=3.0),
                     [CREATE, ADD_DEVICE, ADD_DEVICE, ADD_DEVICE, *TAIL], id="create"),
        pytest.param(CURRENT, desired(part_power=8, replicas=3.0, min_part_hours=1), [],
                     id="same-state-is-a-no-op"),
        pytest.param(CURRENT, DesiredRing(name="object"), [], id="unset-keeps-everything"),
        pytest.param(CURRENT, desired(devices=(D1, D2, D3, D4)), [ADD_DEVICE, *TAIL],
                     id="add-device"),
        pytest.param(CURRENT, desired(devices=(D1, D2, replace(D3, id=None), D4)),
                     [ADD_DEVICE, *TAIL], id="ids-do-not-matter"),
        pytest.param(replace(CURRENT, devices=(D1, D2, D3, replace(D4, id=3))),
                     desired(), [REMOVE_DEVICE, *TAIL], id="remove-device"),
        pytest.param(CURRENT, desired(devices=(D1, D2, replace(D3, weight=50.0))),
                     [SET_WEIGHT, *TAIL], id="weight"),
        pytest.param(CURRENT, desired(devices=(D1, D2, replace(D3, zone=4))),
                     [REMOVE_DEVICE, ADD_DEVICE, *TAIL], id="zone-change-is-remove-add"),
        pytest.param(CURRENT, desired(devices=(D1, D2, replace(D3, region=2))),
                     [REMOVE_DEVICE, ADD_DEVICE, *TAIL], id="region-change-is-remove-add"),
        pytest.param(CURRENT, desired(devices=(D1, D2, replace(D3, meta="rack 7"))),
                     [SET_META, SAVE_BUILDER, WRITE_RING], id="meta-needs-no-rebalance"),
        pytest.param(CURRENT, desired(devices=(D1, D2, replace(D3, meta=None))), [],
                     id="unset-meta-keeps-meta"),
        pytest.param(CURRENT, desired(min_part_hours=24), [SET_MIN_PART_HOURS, SAVE_BUILDER],
                     id="min-part-hours-only-touches-the-builder"),
        pytest.param(replace(CURRENT, devices=(D1, D2, D3, replace(D4, id=3))),
                     desired(replicas=4.0, devices=(D1, D2, D3, D4)), [SET_REPLICAS, *TAIL],
                     id="replicas"),
        pytest.param(replace(CURRENT, ring_current=False), desired(), [WRITE_RING],
                     id="stale-ring-file-is-rewritten-only"),
        pytest.param(replace(CURRENT, pending=True), desired(), TAIL,
                     id="pending-builder-changes-are-placed"),
        pytest.param(replace(CURRENT, rebalance_due=True, balance=25.0), desired(), TAIL,
                     id="rebalance-limited-by-min-part-hours-continues"),
    ],
)
def test_plan_ring(current, want, expected):
    assert kinds(plan_ring(current, want)) == expected


def test_zone_change_says_why():
    actions = plan_ring(CURRENT, desired(devices=(D1, D2, replace(D3, zone=4))))
    assert "removed and added again" in actions[0].reason
    assert actions[0].device.id == 2 and actions[1].device.zone == 4


@pytest.mark.parametrize(
    "current, want, error, message",
    [
        (CURRENT, desired(part_power=10), InvalidInput, "partition power increase procedure"),
        (None, desired(), InvalidInput, "part_power is required"),
        (None, DesiredRing(name="object", part_power=8), InvalidInput, "devices are required"),
        (None, desired(part_power=8, devices=(D1, D2)), InvalidInput, "at least 3 devices"),
        (CURRENT, desired(devices=(D1, D2, replace(D3, weight=0.0))), InvalidInput,
         "at least 3 devices"),
        (CURRENT, desired(replicas=4.0), InvalidInput, "at least 4 devices"),
        (replace(CURRENT, next_part_power=9), desired(), Conflict, "power increase"),
    ],
)
def test_plan_ring_refuses(current, want, error, message):
    with pytest.raises(error, match=message):
        plan_ring(current, want)


# --- request validation ------------------------------------------------------------------------


GOOD_DEV = {"ip": "127.0.0.1", "port": 6200, "device": "sdb", "zone": 1, "weight": 100}


@pytest.mark.parametrize(
    "params, message",
    [
        ({"name": "objects"}, "invalid ring name"),
        ({"name": "object-0"}, "invalid ring name"),
        ({"name": "object", "swift_dir": "etc/swift"}, "absolute path"),
        ({"name": "object", "part_power": 0}, "part_power 0: must be between 1 and 32"),
        ({"name": "object", "part_power": 33}, "between 1 and 32"),
        ({"name": "object", "replicas": 0.5}, "replicas 0.5"),
        ({"name": "object", "min_part_hours": -1}, "min_part_hours"),
        ({"name": "object", "devices": [dict(GOOD_DEV, port=0)]}, r"devices\[0\] port 0"),
        ({"name": "object", "devices": [dict(GOOD_DEV, port=70000)]}, "port 70000"),
        ({"name": "object", "devices": [dict(GOOD_DEV, weight=-1)]}, "weight -1"),
        ({"name": "object", "devices": [dict(GOOD_DEV, zone=-1)]}, "zone -1"),
        ({"name": "object", "devices": [dict(GOOD_DEV, region=-2)]}, "region -2"),
        ({"name": "object", "devices": [dict(GOOD_DEV, device="a/b")]}, "invalid device name"),
        ({"name": "object", "devices": [dict(GOOD_DEV, device="a..b")]}, "invalid device name"),
        ({"name": "object", "devices": [dict(GOOD_DEV, ip="not an ip")]}, "invalid ip"),
        ({"name": "object", "devices": [GOOD_DEV, GOOD_DEV]}, "listed twice"),
        ({"name": "object", "devices": [{"ip": "127.0.0.1"}]}, "missing port, device"),
    ],
)
def test_resolve_desired_rejects(params, message):
    with pytest.raises(InvalidInput, match=message):
        resolve_desired(**params)


def test_resolve_desired_normalises():
    want = resolve_desired(name="object-1", replicas=3, devices=[
        dict(GOOD_DEV, ip="[::1]", zone=0, region=0), dict(GOOD_DEV, ip="Node-1.Example")])
    assert want.replicas == 3.0 and isinstance(want.replicas, float)
    assert want.devices[0] == Device(ip="::1", port=6200, device="sdb", zone=0, region=0,
                                     weight=100.0)
    assert want.devices[1].ip == "node-1.example" and want.devices[1].meta is None


# --- reconcile on a real builder ---------------------------------------------------------------


def dev(i, **kw):
    return dict({"ip": f"127.0.0.{i}", "port": 6200, "device": "sdb", "zone": i, "weight": 100.0},
                **kw)


THREE = [dev(1), dev(2), dev(3)]


@pytest.fixture
def swift_dir(tmp_path, monkeypatch):
    # Ring() checks /etc/swift/swift.conf's hash prefix/suffix; reading placement needs neither.
    monkeypatch.setattr("swift.common.ring.ring.validate_configuration", lambda: None)
    path = tmp_path / "swift"
    path.mkdir()
    return path


def params(swift_dir, devices=THREE, **kw):
    return dict({"name": "object", "swift_dir": str(swift_dir), "part_power": 8, "replicas": 3,
                 "min_part_hours": 0, "devices": devices}, **kw)


def snapshot(swift_dir):
    """{file name: (mtime_ns, md5)} of everything in swift_dir."""
    return {p.name: (p.stat().st_mtime_ns, hashlib.md5(p.read_bytes()).hexdigest())
            for p in swift_dir.iterdir()}


def assert_fully_replicated(swift_dir, replicas=3):
    """Every partition has ``replicas`` replicas on distinct devices, in the ring file itself."""
    ring = swift_ring().Ring(str(swift_dir), ring_name="object")
    assert ring.replica_count == replicas
    for part in range(ring.partition_count):
        nodes = ring.get_part_nodes(part)
        assert len(nodes) == replicas and len({n["id"] for n in nodes}) == replicas
    return ring


def test_create_three_device_ring(swift_dir):
    result = reconcile(params(swift_dir))
    assert result["changed"] is True and result["parts_moved"] == 256 * 3
    assert [a["action"] for a in result["actions"]] == [CREATE] + [ADD_DEVICE] * 3 + TAIL
    ring = result["ring"]
    assert ring["md5"] == hashlib.md5((swift_dir / "object.ring.gz").read_bytes()).hexdigest()
    assert ring["balance"] == 0.0 and ring["part_power"] == 8 and ring["replicas"] == 3.0
    assert [d["parts"] for d in ring["devices"]] == [256, 256, 256]
    assert result["diff"]["before"] == {"name": "object", "state": "absent"}
    assert sorted(p.name for p in swift_dir.iterdir()) == ["object.builder", "object.ring.gz"]
    assert oct((swift_dir / "object.builder").stat().st_mode & 0o777) == "0o644"
    assert_fully_replicated(swift_dir)


def test_second_apply_reports_no_change_and_touches_nothing(swift_dir):
    first = reconcile(params(swift_dir))
    before = snapshot(swift_dir)
    again = reconcile(params(swift_dir))
    assert again["changed"] is False and again["actions"] == [] and again["parts_moved"] == 0
    assert again["diff"]["before"] == again["diff"]["after"]
    assert again["ring"]["md5"] == first["ring"]["md5"]
    assert snapshot(swift_dir) == before


def test_same_request_gives_the_same_ring_on_every_node(tmp_path):
    md5s = set()
    for node in ("a", "b"):
        (tmp_path / node).mkdir()
        md5s.add(reconcile(params(tmp_path / node))["ring"]["md5"])
    assert len(md5s) == 1


def test_add_a_fourth_device_moves_partitions(swift_dir):
    reconcile(params(swift_dir))
    result = reconcile(params(swift_dir, devices=[*THREE, dev(4)]))
    assert result["changed"] and result["parts_moved"] > 0
    assert [d["parts"] for d in result["ring"]["devices"]] == [192] * 4
    ring = assert_fully_replicated(swift_dir)
    assert len(ring.devs) == 4
    assert reconcile(params(swift_dir, devices=[*THREE, dev(4)]))["changed"] is False


def test_remove_a_device(swift_dir):
    reconcile(params(swift_dir, devices=[*THREE, dev(4)]))
    result = reconcile(params(swift_dir))
    assert [a["action"] for a in result["actions"]] == [REMOVE_DEVICE, *TAIL]
    assert result["actions"][0]["device"] == "r1z4-127.0.0.4:6200/sdb"
    assert result["parts_moved"] == 192
    assert len(result["ring"]["devices"]) == 3
    ring = assert_fully_replicated(swift_dir)
    assert [d["ip"] for d in ring.devs if d] == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]


def test_weight_change_rebalances(swift_dir):
    reconcile(params(swift_dir, devices=[*THREE, dev(4)]))
    result = reconcile(params(swift_dir, devices=[*THREE, dev(4, weight=50.0)]))
    assert [a["action"] for a in result["actions"]] == [SET_WEIGHT, *TAIL]
    assert result["parts_moved"] > 0
    parts = {d["ip"]: d["parts"] for d in result["ring"]["devices"]}
    assert parts["127.0.0.4"] < parts["127.0.0.1"]
    assert_fully_replicated(swift_dir)


def test_zone_change_moves_the_device(swift_dir):
    reconcile(params(swift_dir, devices=[*THREE, dev(4)]))
    result = reconcile(params(swift_dir, devices=[*THREE, dev(4, zone=9)]))
    assert [a["action"] for a in result["actions"]] == [REMOVE_DEVICE, ADD_DEVICE, *TAIL]
    moved = [d for d in result["ring"]["devices"] if d["ip"] == "127.0.0.4"]
    assert [(d["zone"], d["id"] != 3) for d in moved] == [(9, True)]
    assert_fully_replicated(swift_dir)


def test_min_part_hours_limits_the_second_rebalance(swift_dir):
    reconcile(params(swift_dir, min_part_hours=1))
    blocked = reconcile(params(swift_dir, devices=[*THREE, dev(4)], min_part_hours=1))
    assert blocked["changed"] is True and blocked["parts_moved"] == 0
    assert blocked["min_part_hours_blocked"] is True
    assert 0 < blocked["min_part_seconds_left"] <= 3600
    assert blocked["ring"]["balance"] == 100.0
    # The device is in the builder and the ring; nothing more to do until the hour has passed.
    before = snapshot(swift_dir)
    again = reconcile(params(swift_dir, devices=[*THREE, dev(4)], min_part_hours=1))
    assert again["changed"] is False and snapshot(swift_dir) == before

    # Tests only: let the hour pass, then the next run continues the rebalance.
    builder_file = str(swift_dir / "object.builder")
    builder = swift_ring().RingBuilder.load(builder_file)
    builder.pretend_min_part_hours_passed()
    builder.save(builder_file)
    later = reconcile(params(swift_dir, devices=[*THREE, dev(4)], min_part_hours=1))
    assert [a["action"] for a in later["actions"]] == TAIL
    assert "limited by min_part_hours" in later["actions"][0]["reason"]
    assert later["parts_moved"] > 0 and later["ring"]["balance"] < 1.0
    assert later["min_part_hours_blocked"] is False
    assert_fully_replicated(swift_dir)


def test_check_mode_writes_nothing_but_reports_parts_that_would_move(swift_dir):
    assert reconcile(params(swift_dir), check=True)["parts_moved"] == 768
    assert list(swift_dir.iterdir()) == []
    applied = reconcile(params(swift_dir))
    before = snapshot(swift_dir)
    checked = reconcile(params(swift_dir, devices=[*THREE, dev(4)]), check=True)
    assert checked["changed"] is True and checked["parts_moved"] == 192
    assert [d["parts"] for d in checked["diff"]["after"]["devices"]] == [192] * 4
    assert [d["parts"] for d in checked["diff"]["before"]["devices"]] == [256] * 3
    assert checked["ring"]["md5"] != applied["ring"]["md5"]
    assert snapshot(swift_dir) == before
    # and the real run produces exactly the ring check mode predicted
    assert reconcile(params(swift_dir, devices=[*THREE, dev(4)]))["ring"]["md5"] == \
        checked["ring"]["md5"]


def test_missing_ring_file_is_recreated(swift_dir):
    first = reconcile(params(swift_dir))
    (swift_dir / "object.ring.gz").unlink()
    builder_before = snapshot(swift_dir)
    result = reconcile(params(swift_dir))
    assert result["changed"] is True
    assert [a["action"] for a in result["actions"]] == [WRITE_RING]
    assert result["ring"]["md5"] == first["ring"]["md5"]
    assert snapshot(swift_dir)["object.builder"] == builder_before["object.builder"]


def test_outdated_ring_file_is_rewritten(swift_dir):
    reconcile(params(swift_dir))
    good = (swift_dir / "object.ring.gz").read_bytes()
    reconcile(params(swift_dir, devices=[*THREE, dev(4)]))
    (swift_dir / "object.ring.gz").write_bytes(good)  # an old ring beside a newer builder
    result = reconcile(params(swift_dir, devices=[*THREE, dev(4)]))
    assert [a["action"] for a in result["actions"]] == [WRITE_RING]
    assert_fully_replicated(swift_dir)


def test_min_part_hours_change_keeps_the_ring_file(swift_dir):
    reconcile(params(swift_dir))
    ring_before = snapshot(swift_dir)["object.ring.gz"]
    result = reconcile(params(swift_dir, min_part_hours=24))
    assert [a["action"] for a in result["actions"]] == [SET_MIN_PART_HOURS, SAVE_BUILDER]
    assert snapshot(swift_dir)["object.ring.gz"] == ring_before
    assert swift_ring().RingBuilder.load(str(swift_dir / "object.builder")).min_part_hours == 24


def test_part_power_change_is_refused_before_touching_anything(swift_dir):
    reconcile(params(swift_dir))
    before = snapshot(swift_dir)
    with pytest.raises(InvalidInput, match="partition power"):
        reconcile(params(swift_dir, part_power=9))
    assert snapshot(swift_dir) == before


def test_missing_swift_dir_is_not_found(tmp_path):
    with pytest.raises(NotFound, match="does not exist"):
        reconcile(params(tmp_path / "nope"))


def test_builder_made_by_swift_ring_builder_is_adopted(swift_dir):
    """A builder with the same devices made by hand: nothing to do but write its ring."""
    builder = swift_ring().RingBuilder(8, 3, 0)
    for d in THREE:
        builder.add_dev(dict(d, region=1))
    builder.rebalance(seed=1)
    builder.save(str(swift_dir / "object.builder"))
    result = reconcile(params(swift_dir))
    assert [a["action"] for a in result["actions"]] == [WRITE_RING]
    assert reconcile(params(swift_dir))["changed"] is False


def test_swift_missing_is_a_backend_error(monkeypatch):
    import builtins

    from stackcore import ring
    from stackcore.errors import BackendError

    real_import = builtins.__import__

    def no_swift(name, *args, **kwargs):
        if name.startswith("swift"):
            raise ImportError("No module named 'swift'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_swift)
    with pytest.raises(BackendError, match=re.escape("pip install 'swift>=2.38'")):
        ring.import_ring()


def test_plan_does_not_mutate_the_loaded_builder(swift_dir):
    """reconcile works on a copy: the builder it read stays as loaded (check mode relies on it)."""
    reconcile(params(swift_dir))
    builder = swift_ring().RingBuilder.load(str(swift_dir / "object.builder"))
    frozen = copy.deepcopy(builder.to_dict())
    reconcile(params(swift_dir, devices=[*THREE, dev(4)]), check=True)
    assert swift_ring().RingBuilder.load(str(swift_dir / "object.builder")).to_dict()["devs"] == \
        frozen["devs"]
    assert not [p for p in os.listdir(swift_dir) if p.startswith(".")]
