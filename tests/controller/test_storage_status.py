"""`stackctl storage`: the pure parts (recon answers -> status rows, stack_ring results -> ring
rows, inventory variables -> the cluster) by tables, the recon client against a local HTTP
server, and input checks that must fail before any host is touched.

The recon samples were captured with curl on 2026-11-21 from the all-in-one (127.0.0.1, ports
6200-6202) and from node swift1 of the three-node lab (127.0.0.2); those marked "Swift's
format" are built from swift/common/middleware/recon.py (unmounted devices, a recon cache the
daemons have not written yet), which a healthy lab does not show.
"""

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from stackcore.errors import Conflict, InvalidInput, NotFound

from stackctl.app import App
from stackctl.workflows import storage as wf
from stackctl.workflows import storage_status as st

NOW = 1795261200.0

AIO_DISKUSAGE = [{"device": "d1", "mounted": True, "size": 8522825728, "used": 134356992,
                  "avail": 8388468736}]
AIO_OBJECT_REPLICATION = {
    "replication_time": 0.019787784417470297,
    "replication_stats": {"attempted": 998, "failure": 0, "hashmatch": 0, "remove": 0,
                          "rsync": 0, "success": 0, "suffix_count": 3855, "suffix_hash": 0,
                          "suffix_sync": 0},
    "replication_last": 1795261167.2915566, "object_replication_time": 0.019787784417470297,
    "object_replication_last": 1795261167.2915566}
AIO_CONTAINER_REPLICATION = {
    "replication_time": 1.2755789756774902,
    "replication_stats": {"attempted": 63, "deferred": 0, "diff": 0, "diff_capped": 0,
                          "empty": 0, "failure": 0, "hashmatch": 0, "no_change": 63,
                          "remote_merge": 0, "remove": 0, "rsync": 0,
                          "start": 1795261173.0457036, "success": 63, "ts_repl": 0},
    "replication_last": 1795261174.3212826}
AIO_ACCOUNT_REPLICATION = {
    "replication_time": 0.320784330368042,
    "replication_stats": {"attempted": 16, "deferred": 0, "diff": 0, "diff_capped": 0,
                          "empty": 0, "failure": 0, "hashmatch": 0, "no_change": 16,
                          "remote_merge": 0, "remove": 0, "rsync": 0,
                          "start": 1795261174.500975, "success": 16, "ts_repl": 0},
    "replication_last": 1795261174.8217592}
AIO_RINGMD5 = {"/etc/swift/account.ring.gz": "b555b48bc63034ffba79270d7a156380",
               "/etc/swift/container.ring.gz": "f8e6ccd8dec123dc4b92a33a7bbec494",
               "/etc/swift/object.ring.gz": "01454d34e648bd9dceb21e11a638962b"}
AIO_BUILDER_MD5S = {path.rsplit("/", 1)[1].removesuffix(".ring.gz"): md5
                    for path, md5 in AIO_RINGMD5.items()}
# No swift-recon-cron on these hosts: nothing writes async_pending into the recon cache.
AIO_ASYNC = {"async_pending": None, "async_pending_last": None}
LAB_RINGMD5 = {"/etc/swift/swift1/account.ring.gz": "a418f8547ee74ddd58eef0571dc11afa",
               "/etc/swift/swift1/container.ring.gz": "755e92a9e8896cb3891235e1bfba4015",
               "/etc/swift/swift1/object.ring.gz": "c9b18ab3ecf88a6e99a7cb2394a0c812"}
LAB_DISKUSAGE = [{"device": "d1", "mounted": True, "size": 2080374784, "used": 48349184,
                  "avail": 2032025600}]
# Swift's format: a directory under the devices root that is not a mount point, and one whose
# mount check raised (str(OSError)).
UNMOUNTED = {"device": "d9", "mounted": False, "size": "", "used": "", "avail": ""}
BROKEN = {"device": "d2", "mounted": "[Errno 5] Input/output error: '/srv/node/d2'",
          "size": "", "used": "", "avail": ""}
# Swift's format: the replicator has not finished a pass yet (keys missing from the cache).
NEVER_REPLICATED = {"replication_time": None, "replication_stats": None,
                    "replication_last": None, "object_replication_time": None,
                    "object_replication_last": None}

AIO_NODE = wf.Node(host="aio", ip="127.0.0.1", inventory_devices=("d1",))


def answers(**overrides):
    base = {"diskusage": AIO_DISKUSAGE, "object_replication": AIO_OBJECT_REPLICATION,
            "container_replication": AIO_CONTAINER_REPLICATION,
            "account_replication": AIO_ACCOUNT_REPLICATION, "ringmd5": AIO_RINGMD5,
            "async": AIO_ASYNC}
    out = {key: st.Answer(data) for key, data in base.items()}
    out.update(overrides)
    return out


# --- recon answers ------------------------------------------------------------------------


@pytest.mark.parametrize("data, mounted, total, unmounted, pct", [
    (AIO_DISKUSAGE, 1, 1, [], 1.6),
    (LAB_DISKUSAGE, 1, 1, [], 2.3),
    ([*AIO_DISKUSAGE, UNMOUNTED], 1, 2, ["d9"], 1.6),
    ([BROKEN, UNMOUNTED], 0, 2, ["d2", "d9"], None),
    ([], 0, 0, [], None),
    (None, 0, 0, [], None),
])
def test_disk_usage_counts_mounted_devices_and_their_used_share(data, mounted, total, unmounted,
                                                                pct):
    usage = st.disk_usage(data)
    assert (usage["devices_mounted"], usage["devices_total"], usage["unmounted"],
            usage["used_pct"]) == (mounted, total, unmounted, pct)


@pytest.mark.parametrize("data, kind, expected", [
    (AIO_OBJECT_REPLICATION, "object", 1795261167.2915566),
    ({"replication_last": 12.0}, "object", 12.0),  # before Swift had object_replication_last
    (AIO_CONTAINER_REPLICATION, "container", 1795261174.3212826),
    (NEVER_REPLICATED, "object", None),
    ({"replication_last": True}, "account", None),
    (None, "account", None),
])
def test_replication_last_reads_the_pass_end_time(data, kind, expected):
    assert st.replication_last(data, kind) == expected


@pytest.mark.parametrize("seconds, text", [
    (None, "never"), (-3, "0s ago"), (12.7, "12s ago"), (119, "119s ago"), (120, "2m ago"),
    (7199, "119m ago"), (7200, "2h ago"), (172800, "2d ago"),
])
def test_ago(seconds, text):
    assert st.ago(seconds) == text


@pytest.mark.parametrize("node, builder, expected", [
    (AIO_RINGMD5, AIO_BUILDER_MD5S, ("ok", [])),
    # A node with its own configuration directory: compared by ring name, not by path.
    (LAB_RINGMD5, {"account": "a418f8547ee74ddd58eef0571dc11afa",
                   "container": "755e92a9e8896cb3891235e1bfba4015",
                   "object": "c9b18ab3ecf88a6e99a7cb2394a0c812"}, ("ok", [])),
    (AIO_RINGMD5, {**AIO_BUILDER_MD5S, "object": "0" * 32}, ("DIFFERS", ["object"])),
    ({k: v for k, v in AIO_RINGMD5.items() if "account" not in k}, AIO_BUILDER_MD5S,
     ("DIFFERS", ["account"])),
    ({**AIO_RINGMD5, "/etc/swift/container.ring.gz": None}, AIO_BUILDER_MD5S,
     ("DIFFERS", ["container"])),
    (AIO_RINGMD5, None, ("unknown", [])),
    (AIO_RINGMD5, {}, ("unknown", [])),
    (None, AIO_BUILDER_MD5S, ("unknown", [])),
])
def test_ring_check_compares_the_nodes_rings_with_the_controllers(node, builder, expected):
    assert st.ring_check(node, builder) == expected


STATUS_ROWS = [
    ("healthy", answers(), AIO_BUILDER_MD5S,
     {"devices": "1/1", "used": "1.6%", "replicated": "32s ago", "async_pending": None,
      "rings": "ok", "status": "ok"}),
    ("async pendings counted",
     answers(**{"async": st.Answer({"async_pending": 3, "async_pending_last": NOW})}),
     AIO_BUILDER_MD5S,
     {"async_pending": 3, "status": "ok"}),
    ("never replicated", answers(object_replication=st.Answer(NEVER_REPLICATED)),
     AIO_BUILDER_MD5S, {"replicated": "never", "status": "ok"}),
    ("a device not mounted", answers(diskusage=st.Answer([*AIO_DISKUSAGE, UNMOUNTED])),
     AIO_BUILDER_MD5S, {"devices": "1/2", "status": "unmounted: d9"}),
    ("rings differ", answers(), {**AIO_BUILDER_MD5S, "object": "0" * 32},
     {"rings": "DIFFERS", "rings_differ": ["object"], "status": "ok"}),
    ("controller rings unreadable", answers(), None, {"rings": "unknown", "status": "ok"}),
    ("the account server is down", answers(account_replication=st.Answer(
        error="Connection refused")), AIO_BUILDER_MD5S,
     {"devices": "1/1", "status": "unreachable: account server 6202: Connection refused"}),
    ("nothing answers", {k: st.Answer(error="timed out") for k in answers()}, AIO_BUILDER_MD5S,
     {"devices": None, "used": None, "replicated": None, "async_pending": None,
      "rings": "unknown", "status": "unreachable: object server 6200: timed out"}),
]


@pytest.mark.parametrize("case, node_answers, builder, expected", STATUS_ROWS,
                         ids=[row[0] for row in STATUS_ROWS])
def test_node_row(case, node_answers, builder, expected):
    row = st.node_row(AIO_NODE, node_answers, builder, NOW)
    assert row["host"] == "aio" and row["ip"] == "127.0.0.1"
    assert {key: row.get(key) for key in expected} == expected


def test_node_row_keeps_the_numbers_behind_the_cells():
    row = st.node_row(AIO_NODE, answers(), AIO_BUILDER_MD5S, NOW)
    assert row["used_bytes"] == 134356992 and row["size_bytes"] == 8522825728
    assert (row["mounted"], row["unmounted"]) == (["d1"], [])
    assert row["replication_last"] == {"object": 1795261167.2915566,
                                       "container": 1795261174.3212826,
                                       "account": 1795261174.8217592}


# --- the recon client, against a real HTTP server ----------------------------------------------


@pytest.fixture
def recon_server(tmp_path):
    """An HTTP server answering the recon paths with the aio samples; ringmd5 names the
    ring files it was given. Yields (port, rings dir)."""
    rings = tmp_path / "builders"
    rings.mkdir()
    for ring in ("account", "container", "object"):
        (rings / f"{ring}.ring.gz").write_bytes(f"{ring} ring".encode())
    pages = {
        "/recon/diskusage": AIO_DISKUSAGE,
        "/recon/replication/object": AIO_OBJECT_REPLICATION,
        "/recon/replication/container": AIO_CONTAINER_REPLICATION,
        "/recon/replication/account": AIO_ACCOUNT_REPLICATION,
        "/recon/async": AIO_ASYNC,
        "/recon/ringmd5": {f"/etc/swift/{p.name}": hashlib.md5(p.read_bytes()).hexdigest()
                           for p in rings.iterdir()},
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(pages[self.path]).encode() if self.path in pages else None
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body or b"Not Found")

        def log_message(self, *_args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], rings
    server.shutdown()
    server.server_close()


def closed_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_probe_asks_every_server_and_reports_the_ones_that_do_not_answer(recon_server):
    port, rings = recon_server
    up = wf.Node("up", "127.0.0.1", ports={"object": port, "container": port, "account": port})
    down = wf.Node("down", "127.0.0.1",
                   ports={"object": closed_port(), "container": port, "account": port})
    got = st.probe([up, down], timeout=2)
    md5s, why = st.builder_ring_md5s(str(rings))
    assert why is None
    row = st.node_row(up, got["up"], md5s, NOW)
    assert (row["devices"], row["rings"], row["status"]) == ("1/1", "ok", "ok")
    row = st.node_row(down, got["down"], md5s, NOW)
    assert row["status"].startswith("unreachable: object server")
    assert "Connection refused" in row["status"]


def test_fetch_json_says_when_recon_is_not_in_the_pipeline(recon_server):
    port, _ = recon_server
    answer = st.fetch_json(f"http://127.0.0.1:{port}/recon/nothing")
    assert answer.error.startswith("HTTP 404") and "recon" in answer.error


def test_builder_md5s_of_a_missing_directory_say_why(tmp_path):
    md5s, why = st.builder_ring_md5s(str(tmp_path / "nope"))
    assert md5s is None and "No such file or directory" in why


def test_status_shows_a_node_that_does_not_answer(home, recon_server):
    port, rings = recon_server
    nodes = {"s1": {"swift_ip": "127.0.0.1", "swift_builder_dir": str(rings),
                    "swift_object_port": port, "swift_container_port": port,
                    "swift_account_port": port},
             "s2": {"swift_ip": "127.0.0.1", "swift_builder_dir": str(rings),
                    "swift_object_port": closed_port()}}
    rows, notes = st.status(app_with({"storage_nodes": nodes}), timeout=2)
    assert notes == []
    assert [(r["host"], r["status"].split(":")[0], r["rings"]) for r in rows] == [
        ("s1", "ok", "ok"), ("s2", "unreachable", "unknown")]


# --- stack_ring results -> ring rows -------------------------------------------------------------


def ring_result(actions, parts_moved=0, balance=0.0, blocked=False, left=0):
    """A stack_ring result (its RETURN), as the module gives it."""
    return {"changed": bool(actions), "actions": [{"action": a, "reason": "r"} for a in actions],
            "parts_moved": parts_moved, "min_part_hours_blocked": blocked,
            "min_part_seconds_left": left, "ring": {"name": "object", "balance": balance}}


ADD = ["add_device", "rebalance", "save_builder", "write_ring"]


@pytest.mark.parametrize("result, moved, note", [
    (ring_result(ADD, 3, 18.36), 3, ""),
    (ring_result(["set_weight", "rebalance", "save_builder", "write_ring"], 0, 999.99,
                 blocked=True, left=3420),
     0, "min_part_hours kept recently moved partitions in place; rebalance again in 57m"),
    (ring_result([], 0, 999.99, left=3360), 0,
     "balance 999.99%: partitions may move again in 56m"),
    (ring_result([], 0, 0.0, left=3360), 0, "no change"),
    (ring_result([]), 0, "no change"),
])
def test_ring_summary(result, moved, note):
    summary = wf.ring_summary("object", result)
    assert (summary["parts_moved"], summary["note"]) == (moved, note)
    assert summary["changed"] == bool(result["actions"])


def test_device_rows_name_the_node_of_each_device():
    cluster = wf.cluster_from_hostvars({"s1": {"swift_ip": "127.0.0.2"},
                                        "s2": {"swift_ip": "127.0.0.3",
                                               "swift_object_port": 6300}})
    facts = {"devices": [
        {"ip": "127.0.0.2", "port": 6200, "device": "d1", "zone": 1, "region": 1,
         "weight": 100.0, "parts": 700, "id": 0, "meta": ""},
        {"ip": "127.0.0.3", "port": 6300, "device": "d1", "zone": 2, "region": 1,
         "weight": 50.0, "parts": 324, "id": 1, "meta": ""},
        {"ip": "127.0.0.9", "port": 6200, "device": "x", "zone": 3, "region": 1,
         "weight": 0.0, "parts": 0, "id": 2, "meta": ""}]}
    rows = wf.device_rows("object", facts, cluster)
    assert [(r["host"], r["device"], r["weight"], r["parts"]) for r in rows] == [
        ("s1", "d1", 100.0, 700), ("s2", "d1", 50.0, 324), (None, "x", 0.0, 0)]


@pytest.mark.parametrize("found, problems", [
    ({"object": {"weight": 0.0, "parts": 0}}, []),
    ({"object": {"weight": 1.0, "parts": 3}, "account": {"weight": 0.0, "parts": 0}},
     ["weight in its rings (object 1)", "partitions in its rings (object 3)"]),
    ({"account": {"weight": 0.0, "parts": 2}, "object": {"weight": 0.0, "parts": 5}},
     ["partitions in its rings (account 2, object 5)"]),
])
def test_drain_problems(found, problems):
    assert wf.drain_problems(found) == problems


# --- inventory -> cluster ------------------------------------------------------------------------


def test_cluster_takes_the_roles_defaults():
    cluster = wf.cluster_from_hostvars({"aio": {"swift_devices": [{"name": "d1"}]}},
                                       {"ctl": {}}, {"aio": {}})
    node = cluster.node("aio")
    assert (node.ip, node.zone, node.region, dict(node.ports)) == (
        "127.0.0.1", 1, 1, {"object": 6200, "container": 6201, "account": 6202})
    assert cluster.builder_dir == "/etc/stackctl/swift/default"
    assert (cluster.controller, cluster.ring_hosts, cluster.rings) == (
        "ctl", ["aio"], ("account", "container", "object"))
    assert node.inventory_devices == ("d1",)
    assert node.ring_device("container", "d9", 5) == {
        "region": 1, "zone": 1, "ip": "127.0.0.1", "port": 6201, "device": "d9", "weight": 5.0}


@pytest.mark.parametrize("hostvars, where", [
    ({"swift_cluster_name": "aio"}, "/etc/stackctl/swift/aio"),
    ({"swift_cluster_name": "aio", "swift_builder_dir": "/srv/b/"}, "/srv/b"),
])
def test_builder_dir(hostvars, where):
    assert wf.builder_dir_of("aio", hostvars) == where


@pytest.mark.parametrize("nodes, message", [
    ({"a": {"swift_ip": "{{ ansible_host }}"}}, "host a: swift_ip is a template"),
    ({"a": {"swift_zone": "two"}}, "host a: swift_zone must be a whole number"),
    ({"a": {"swift_cluster_name": "../etc"}}, "invalid swift_cluster_name"),
    ({"a": {"swift_cluster_name": "x"}, "b": {"swift_cluster_name": "y"}},
     "the storage nodes disagree on their ring builders"),
])
def test_cluster_refuses_what_it_cannot_use(nodes, message):
    with pytest.raises(Conflict, match=message):
        wf.cluster_from_hostvars(nodes)


# --- input checks: nothing touched -------------------------------------------------------------


class InventoryOnly:
    """Runner double: answers inventory questions from a dict; touching a host fails the test."""

    def __init__(self, groups):
        self.groups = groups
        self.touched = []

    def inventory_hostvars(self, group):
        return self.groups.get(group, {})

    def run_tasks(self, host, tasks, progress=None, label="adhoc"):
        self.touched.append(host)
        raise AssertionError(f"a host was touched: {host} {[t.module for t in tasks]}")

    run_each = run_tasks


AIO_GROUPS = {"storage_nodes": {"aio": {"swift_cluster_name": "aio",
                                        "swift_devices": [{"name": "d1", "size_gb": 8}]}},
              "controllers": {"aio": {}}, "proxies": {"aio": {}}}


def app_with(groups):
    from stackctl import config

    return App(config.load(), runner=InventoryOnly(groups))


@pytest.mark.parametrize("call, error, message", [
    (lambda app: wf.add_device(app, "aio", "bad/name"), InvalidInput, "invalid device name"),
    (lambda app: wf.add_device(app, "aio", "-d9"), InvalidInput, "invalid device name"),
    (lambda app: wf.add_device(app, "aio", "d9", weight=-1), InvalidInput, "invalid weight -1"),
    (lambda app: wf.add_device(app, "aio", "d9", weight=float("nan")), InvalidInput,
     "invalid weight"),
    (lambda app: wf.add_device(app, "aio", "d9", size_gb=1, disk="/dev/sdb"), InvalidInput,
     "not both"),
    (lambda app: wf.add_device(app, "aio", "d9", size_gb=0), InvalidInput, "--size-gb 0"),
    (lambda app: wf.add_device(app, "aio", "d9", disk="sdb"), InvalidInput, "invalid --disk"),
    (lambda app: wf.add_device(app, "aio", "d9", disk="/dev/../etc/passwd"), InvalidInput,
     "invalid --disk"),
    (lambda app: wf.add_device(app, "hv9", "d9"), NotFound, "'hv9' is not a storage node"),
    (lambda app: wf.add_device(app, "aio", "d1"), Conflict,
     "d1 of aio is listed in the inventory's swift_devices"),
    (lambda app: wf.set_weight(app, "aio", "d9", -0.5), InvalidInput, "invalid weight"),
    (lambda app: wf.set_weight(app, "nope", "d9", 1), NotFound, "not a storage node"),
    (lambda app: wf.remove_device(app, "aio", "d1"), Conflict,
     "remove it from the inventory first"),
    (lambda app: wf.remove_device(app, "aio", "d 9"), InvalidInput, "invalid device name"),
])
def test_bad_requests_fail_before_any_host_is_touched(home, call, error, message):
    app = app_with(AIO_GROUPS)
    with pytest.raises(error, match=message):
        call(app)
    assert app.runner.touched == []


@pytest.mark.parametrize("missing", ["storage_nodes", "controllers", "proxies"])
def test_commands_say_when_object_storage_is_not_deployed(home, missing):
    app = app_with({k: v for k, v in AIO_GROUPS.items() if k != missing})
    with pytest.raises(Conflict, match=f"object storage is not deployed: .* no hosts in its "
                                       f"'{missing}' group"):
        wf.rebalance(app)
    assert app.runner.touched == []


def test_cli_reports_a_bad_device_name_in_one_line(cli):
    result = cli("storage", "device", "add", "aio", "a/b", "--weight", "5")
    assert result.exit_code == InvalidInput.exit_code
    assert result.stderr.strip().splitlines() == [
        "stackctl: error: invalid device name 'a/b': use 1-64 letters, digits, '_' or '-', "
        "starting with a letter or digit"]


def test_cli_status_without_storage_nodes_is_a_conflict(cli, inventory):
    result = cli("storage", "status")
    assert result.exit_code == Conflict.exit_code
    assert "object storage is not deployed" in result.stderr
    assert "'storage_nodes' group" in result.stderr
