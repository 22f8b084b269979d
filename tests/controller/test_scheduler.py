"""Scheduler: filters and weighers as tables (server groups included), claims in the database,
and exact claims under real concurrency (several processes, one SQLite file or PostgreSQL)."""

import multiprocessing

import pytest
from sqlalchemy import func, select
from stackcore.errors import Conflict, NotFound

from stackctl.db import Database
from stackctl.models import (
    VM,
    Flavor,
    Host,
    Image,
    ServerGroup,
    ServerGroupMember,
    Tenant,
    new_uuid,
)
from stackctl.scheduler import (
    ClaimRequest,
    GroupState,
    HostState,
    Policy,
    Rejection,
    Request,
    Usage,
    claim,
    select_host,
    usage_by_host,
)

NO_OVERCOMMIT = Policy(1.0, 1.0, 1.0)
SMALL = Request(vcpus=1, ram_mb=512, disk_gb=5)


def hosts(*specs):
    """("name", vcpus, ram_mb, disk_gb[, enabled]) -> HostState list."""
    return [HostState(*spec) for spec in specs]


def in_group(policy, **members):
    """SMALL, joining server group 'web' (anti-affinity) or 'db' (affinity) whose members are
    ``host="vm1 vm2"``."""
    name = "db" if policy == "affinity" else "web"
    placed = {host: tuple(names.split()) for host, names in members.items()}
    return Request(SMALL.vcpus, SMALL.ram_mb, SMALL.disk_gb, GroupState(name, policy, placed))


# (case, hosts, usage, request, policy, expected host)
CHOICES = [
    ("only host", hosts(("aio", 2, 2048, 20)), {}, SMALL, NO_OVERCOMMIT, "aio"),
    ("spread picks most free RAM",
     hosts(("a", 4, 4096, 50), ("b", 4, 4096, 50)), {"a": Usage(1, 1024, 5, 1)}, SMALL,
     NO_OVERCOMMIT, "b"),
    ("pack picks least free RAM",
     hosts(("a", 4, 4096, 50), ("b", 4, 4096, 50)), {"a": Usage(1, 1024, 5, 1)}, SMALL,
     Policy(1.0, 1.0, 1.0, "pack"), "a"),
    ("ties broken by name (spread)", hosts(("b", 2, 2048, 20), ("a", 2, 2048, 20)), {}, SMALL,
     NO_OVERCOMMIT, "a"),
    ("ties broken by name (pack)", hosts(("b", 2, 2048, 20), ("a", 2, 2048, 20)), {}, SMALL,
     Policy(weigher="pack"), "a"),
    ("disabled host skipped", hosts(("a", 8, 8192, 100, False), ("b", 1, 1024, 10)), {},
     SMALL, NO_OVERCOMMIT, "b"),
    ("full host skipped", hosts(("a", 8, 8192, 100), ("b", 1, 1024, 10)),
     {"a": Usage(8, 8000, 10, 3)}, SMALL, NO_OVERCOMMIT, "b"),
    ("RAM overcommit 1.5 fits", hosts(("a", 2, 1024, 20)), {"a": Usage(1, 1024, 5, 1)},
     SMALL, Policy(), "a"),
    ("CPU overcommit 16 fits", hosts(("a", 1, 8192, 100)), {"a": Usage(15, 1024, 5, 15)},
     SMALL, Policy(), "a"),
    ("exact fit", hosts(("a", 1, 512, 5)), {}, SMALL, NO_OVERCOMMIT, "a"),
    ("empty affinity group: any host (spread)",
     hosts(("a", 4, 4096, 50), ("b", 4, 4096, 50)), {"a": Usage(1, 1024, 5, 1)},
     in_group("affinity"), NO_OVERCOMMIT, "b"),
    ("affinity beats spread", hosts(("a", 4, 4096, 50), ("b", 4, 4096, 50)),
     {"a": Usage(1, 1024, 5, 1)}, in_group("affinity", a="db-1"), NO_OVERCOMMIT, "a"),
    ("affinity members on two hosts: weighed among those",
     hosts(("a", 4, 4096, 50), ("b", 4, 4096, 50), ("c", 8, 8192, 50)),
     {"a": Usage(1, 1024, 5, 1), "b": Usage(1, 512, 5, 1)},
     in_group("affinity", a="db-1", b="db-2"), NO_OVERCOMMIT, "b"),
    ("empty anti-affinity group: any host (pack)",
     hosts(("a", 4, 4096, 50), ("b", 4, 4096, 50)), {"a": Usage(1, 1024, 5, 1)},
     in_group("anti-affinity"), Policy(1.0, 1.0, 1.0, "pack"), "a"),
    ("anti-affinity beats pack", hosts(("a", 4, 4096, 50), ("b", 4, 4096, 50)),
     {"a": Usage(1, 1024, 5, 1)}, in_group("anti-affinity", a="web-1"),
     Policy(1.0, 1.0, 1.0, "pack"), "b"),
    ("anti-affinity: members elsewhere do not matter",
     hosts(("a", 4, 4096, 50), ("b", 4, 4096, 50)), {},
     in_group("anti-affinity", gone="web-1"), NO_OVERCOMMIT, "a"),
]


@pytest.mark.parametrize("case,candidates,usage,request_,policy,expected", CHOICES,
                         ids=[c[0] for c in CHOICES])
def test_select_host_chooses(case, candidates, usage, request_, policy, expected):
    assert select_host(candidates, usage, request_, policy).name == expected


# (case, hosts, usage, request, policy, expected message)
REFUSALS = [
    ("no hosts", [], {}, SMALL, Policy(),
     "no hypervisor hosts are known: run 'stackctl host refresh'"),
    ("RAM", hosts(("aio", 4, 1024, 50)), {"aio": Usage(1, 924, 1, 1)}, SMALL, NO_OVERCOMMIT,
     "no host has 512 MiB RAM free: aio has 100 MiB"),
    ("RAM on two hosts", hosts(("a", 4, 256, 50), ("b", 4, 300, 50)), {}, SMALL,
     NO_OVERCOMMIT, "no host has 512 MiB RAM free: a has 256 MiB, b has 300 MiB"),
    ("vCPU", hosts(("aio", 1, 8192, 50)), {"aio": Usage(1, 128, 1, 1)}, SMALL, NO_OVERCOMMIT,
     "no host has 1 vCPU free: aio has 0 vCPU"),
    ("disk", hosts(("aio", 4, 8192, 4)), {}, SMALL, NO_OVERCOMMIT,
     "no host has 5 GiB disk free: aio has 4 GiB"),
    ("disabled", hosts(("aio", 4, 8192, 50, False)), {}, SMALL, Policy(),
     "no host is enabled: aio is disabled"),
    ("mixed reasons", hosts(("a", 4, 8192, 50, False), ("b", 4, 100, 50)), {}, SMALL,
     NO_OVERCOMMIT,
     "no host fits 1 vCPU, 512 MiB RAM, 5 GiB disk: a is disabled, b has 100 MiB RAM free"),
    ("over-used host reports 0, not a negative", hosts(("aio", 1, 1000, 10)),
     {"aio": Usage(1, 2000, 1, 2)}, SMALL, NO_OVERCOMMIT,
     "no host has 512 MiB RAM free: aio has 0 MiB"),
    ("anti-affinity: every host holds a member",
     hosts(("lab1", 4, 8192, 50), ("lab2", 4, 8192, 50)), {},
     in_group("anti-affinity", lab1="web-1", lab2="web-3 web-2"), NO_OVERCOMMIT,
     "no host is free of server group 'web' (anti-affinity): lab1 holds web-1, "
     "lab2 holds web-2 and web-3"),
    ("anti-affinity and a disabled host",
     hosts(("lab1", 4, 8192, 50, False), ("lab2", 4, 8192, 50)), {},
     in_group("anti-affinity", lab2="web-1"), NO_OVERCOMMIT,
     "no host fits 1 vCPU, 512 MiB RAM, 5 GiB disk: lab1 is disabled, "
     "lab2 holds web-1 of server group 'web' (anti-affinity)"),
    ("anti-affinity is the reason even on a full host",
     hosts(("lab1", 4, 256, 50),), {}, in_group("anti-affinity", lab1="web-1"),
     NO_OVERCOMMIT, "no host is free of server group 'web' (anti-affinity): lab1 holds web-1"),
    ("affinity: the members' host is full",
     hosts(("lab1", 4, 1024, 50), ("lab2", 4, 8192, 50)), {"lab1": Usage(1, 924, 5, 1)},
     in_group("affinity", lab1="db-1"), NO_OVERCOMMIT,
     "no host fits 1 vCPU, 512 MiB RAM, 5 GiB disk: lab1 has 100 MiB RAM free, "
     "lab2 holds no member of server group 'db' (affinity)"),
    ("affinity: the members' host is disabled",
     hosts(("lab1", 4, 8192, 50, False), ("lab2", 4, 8192, 50)), {},
     in_group("affinity", lab1="db-1"), NO_OVERCOMMIT,
     "no host fits 1 vCPU, 512 MiB RAM, 5 GiB disk: lab1 is disabled, "
     "lab2 holds no member of server group 'db' (affinity)"),
    ("affinity: the members' host is not a candidate",
     hosts(("lab2", 4, 8192, 50),), {}, in_group("affinity", gone="db-1"), NO_OVERCOMMIT,
     "no host holds server group 'db' (affinity): lab2 holds none of its members"),
]


@pytest.mark.parametrize("case,candidates,usage,request_,policy,message", REFUSALS,
                         ids=[c[0] for c in REFUSALS])
def test_select_host_explains_why_nothing_fits(case, candidates, usage, request_, policy,
                                               message):
    with pytest.raises(Conflict) as err:
        select_host(candidates, usage, request_, policy)
    assert str(err.value) == message


def test_extra_filters_hook_runs_after_the_defaults():
    def anti_affinity(host, usage, request, policy):
        return Rejection(host.name, "is outside the group", "holds a group member",
                         "holds a group member") if host.name == "a" else None

    policy = Policy(extra_filters=(anti_affinity,))
    chosen = select_host(hosts(("a", 8, 8192, 100), ("b", 1, 1024, 10)), {}, SMALL, policy)
    assert chosen.name == "b"


# --- claims in the database ------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request, db):
    """The test's SQLite file, or a real PostgreSQL database emptied for the test (the
    ``postgres_url`` fixture: STACKCTL_TEST_PG_URL, or a private cluster started for the run)."""
    if request.param == "sqlite":
        yield db
        return
    url = request.getfixturevalue("postgres_url")
    from stackctl.models import Base

    pg = Database(url)
    Base.metadata.drop_all(pg.engine)
    pg.ensure_schema()
    yield pg
    pg.dispose()
    Base.metadata.drop_all(Database(url).engine)


def _seed(db, host_ram_mb=1024, hosts_=("aio",)):
    """A tenant, an image row and hosts; returns a function making claim requests (into
    server group ``group_id`` when given)."""
    with db.write() as session:
        tenant = Tenant(name="t")
        session.add(tenant)
        for name in hosts_:
            session.add(Host(name=name, vcpus=64, ram_mb=host_ram_mb, disk_gb=1000))
        image = Image(name="img", sha256="0" * 64, disk_format="qcow2", size=1, path="/x")
        session.add(image)
        session.flush()
        flavor = session.scalar(select(Flavor).where(Flavor.name == "m1.micro"))
        ids = (tenant.id, image.id, flavor.id)

    def request(name, group_id=None):
        tenant_id, image_id, flavor_id = ids
        return ClaimRequest(uuid=new_uuid(), tenant_id=tenant_id, name=name,
                            flavor_id=flavor_id, image_id=image_id, keypair_id=None, vcpus=1,
                            ram_mb=256, disk_gb=2, mac="52:54:00:00:00:00", group_id=group_id)

    return request


def test_claim_places_the_vm_and_counts_its_usage(any_db):
    db = any_db
    request = _seed(db, hosts_=("a", "b"))
    with db.write() as session:
        first = claim(session, request("one"), NO_OVERCOMMIT)
        second = claim(session, request("two"), NO_OVERCOMMIT)
        assert {first.host.name, second.host.name} == {"a", "b"}  # spread
        assert first.state == "building"
    with db.read() as session:
        usage = usage_by_host(session)
    assert usage["a"] == Usage(1, 256, 2, 1) and usage["b"] == Usage(1, 256, 2, 1)


def test_claim_refuses_a_name_taken_in_the_tenant(any_db):
    db = any_db
    request = _seed(db)
    with db.write() as session:
        claim(session, request("web"), NO_OVERCOMMIT)
    with pytest.raises(Conflict, match="already exists"), db.write() as session:
        claim(session, request("web"), NO_OVERCOMMIT)


def test_stopped_vms_keep_their_slot(db):
    request = _seed(db, host_ram_mb=512)
    with db.write() as session:
        for name in ("one", "two"):
            claim(session, request(name), NO_OVERCOMMIT).state = "stopped"
    with pytest.raises(Conflict, match="aio has 0 MiB"), db.write() as session:
        claim(session, request("three"), NO_OVERCOMMIT)


def _group(db, policy, name="web"):
    """Server group ``name`` of tenant 't' (made by ``_seed``); returns its id."""
    with db.write() as session:
        tenant = session.scalar(select(Tenant).where(Tenant.name == "t"))
        group = ServerGroup(tenant_id=tenant.id, name=name, policy=policy)
        session.add(group)
        session.flush()
        return group.id


def _placement(db, group_id):
    """{vm name: host name} of the group's members, read back from the database."""
    with db.read() as session:
        rows = session.execute(select(VM.name, Host.name).join(Host, VM.host_id == Host.id)
                               .join(ServerGroupMember, ServerGroupMember.vm_uuid == VM.uuid)
                               .where(ServerGroupMember.group_id == group_id))
        return dict(rows.all())


def test_claim_into_an_anti_affinity_group_uses_each_host_once(any_db):
    db = any_db
    request = _seed(db, host_ram_mb=8192, hosts_=("a", "b"))
    web = _group(db, "anti-affinity")
    with db.write() as session:
        claim(session, request("plain"), Policy(weigher="pack"))  # not a member: no effect
    for name in ("web-1", "web-2"):
        with db.write() as session:
            claim(session, request(name, web), Policy(weigher="pack"))
    assert _placement(db, web) == {"web-1": "a", "web-2": "b"}
    with pytest.raises(Conflict) as err, db.write() as session:
        claim(session, request("web-3", web), Policy(weigher="pack"))
    assert str(err.value) == ("no host is free of server group 'web' (anti-affinity): "
                              "a holds web-1, b holds web-2")
    with db.read() as session:  # the refused claim left no row behind
        assert session.scalar(select(func.count()).select_from(VM)) == 3


def test_claim_into_an_affinity_group_follows_its_first_member(any_db):
    db = any_db
    request = _seed(db, host_ram_mb=8192, hosts_=("a", "b", "c"))
    db_group = _group(db, "affinity", "db")
    for name in ("db-1", "db-2", "db-3"):  # spread alone would use a, b, c
        with db.write() as session:
            claim(session, request(name, db_group), NO_OVERCOMMIT)
    assert _placement(db, db_group) == {"db-1": "a", "db-2": "a", "db-3": "a"}
    with db.write() as session:
        assert claim(session, request("other"), NO_OVERCOMMIT).host.name == "b"


def test_claim_into_a_group_deleted_meanwhile_is_not_found(any_db):
    db = any_db
    request = _seed(db)
    web = _group(db, "anti-affinity")
    with db.write() as session:
        session.delete(session.get(ServerGroup, web))
    with pytest.raises(NotFound, match="server group was deleted"), db.write() as session:
        claim(session, request("web-1", web), NO_OVERCOMMIT)


def test_deleting_a_vm_ends_its_membership(any_db):
    """ON DELETE CASCADE (SQLite needs foreign_keys=ON, which db.py sets per connection)."""
    db = any_db
    request = _seed(db)
    web = _group(db, "anti-affinity")
    with db.write() as session:
        uuid = claim(session, request("web-1", web), NO_OVERCOMMIT).uuid
    with db.write() as session:
        assert session.get(VM, uuid).server_group.name == "web"
        assert session.get(VM, uuid).to_dict()["server_group"] == "web"
        session.delete(session.get(VM, uuid))
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(ServerGroupMember)) == 0
        assert session.get(ServerGroup, web) is not None


def _claim_in_process(url, request, barrier, results):
    db = Database(url)
    db.ensure_schema()
    barrier.wait()
    try:
        with db.write() as session:
            vm = claim(session, request, NO_OVERCOMMIT)
            results.put(("ok", vm.host.name))
    except Conflict as exc:
        results.put(("conflict", str(exc)))
    finally:
        db.dispose()


def test_concurrent_claims_never_overcommit(any_db):
    """12 processes claim 256 MiB at once on a 1 GiB host (no overcommit): exactly 4 win."""
    db = any_db
    request = _seed(db, host_ram_mb=1024)
    db.dispose()
    workers = 12
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_claim_in_process,
                         args=(db.url, request(f"vm{i}"), barrier, results))
             for i in range(workers)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    assert sorted(kind for kind, _ in outcomes).count("ok") == 4
    refusals = [msg for kind, msg in outcomes if kind == "conflict"]
    assert len(refusals) == 8
    assert all(msg == "no host has 256 MiB RAM free: aio has 0 MiB" for msg in refusals)
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(VM)) == 4
        assert session.scalar(select(func.sum(VM.ram_mb))) == 1024


def test_concurrent_claims_into_one_anti_affinity_group_use_distinct_hosts(any_db):
    """8 processes create into one anti-affinity group at once on 3 roomy hosts: membership is
    read under the claim's lock, so exactly 3 win, one per host."""
    db = any_db
    request = _seed(db, host_ram_mb=64 * 1024, hosts_=("a", "b", "c"))
    web = _group(db, "anti-affinity")
    db.dispose()
    workers = 8
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_claim_in_process,
                         args=(db.url, request(f"web-{i}", web), barrier, results))
             for i in range(workers)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    assert sorted(host for kind, host in outcomes if kind == "ok") == ["a", "b", "c"]
    refusals = [msg for kind, msg in outcomes if kind == "conflict"]
    assert len(refusals) == 5
    assert all(msg.startswith("no host is free of server group 'web' (anti-affinity): a holds")
               for msg in refusals)
    placement = _placement(db, web)
    assert len(placement) == 3 and sorted(placement.values()) == ["a", "b", "c"]
