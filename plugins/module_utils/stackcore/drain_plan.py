"""The pure half of draining Swift storage (``stackctl storage decommission`` and ``device
replace``): the weight steps, whether a ring can lose devices, which journaled step comes next,
and whether replication has converged, judged from recon answers. No Swift import, no I/O;
tested by tables."""

import itertools
import math

from .errors import Conflict, InvalidInput

# Each step lowers a leaving device to this fraction of its original weight.
DEFAULT_FRACTIONS = (0.5, 0.25, 0.0)
# Swift's Ring re-reads a changed ring file at most this long after it changed (reload_time):
# a replication pass that started later works with the new ring.
RING_RELOAD_SECONDS = 15
# Recon times are the nodes' clocks; the prechecks allow them this far from the controller's.
CLOCK_SLACK_SECONDS = 5
KINDS = ("object", "container", "account")

def parse_fractions(text):
    """``"0.5,0.25,0"`` -> (0.5, 0.25, 0.0): strictly decreasing, each in [0, 1), ending at 0
    (added when missing)."""
    try:
        values = [float(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise InvalidInput(f"invalid steps {text!r}: expected fractions such as 0.5,0.25,0") \
            from None
    return check_fractions(values)


def check_fractions(values):
    values = [float(v) for v in values]
    if not values or any(not math.isfinite(v) or not 0 <= v < 1 for v in values):
        raise InvalidInput(f"invalid steps {values}: each must be at least 0 and below 1 (a "
                           "fraction of the original weight)")
    if any(b >= a for a, b in itertools.pairwise(values)):
        raise InvalidInput(f"invalid steps {values}: they must decrease")
    if values[-1] != 0:
        values.append(0.0)
    return tuple(values)


def drain_steps(weights, fractions=DEFAULT_FRACTIONS):
    """The weights of the leaving devices at each step: ``{key: weight * fraction}`` per
    fraction, from the ORIGINAL weights (so a resumed plan is the same plan). A step that
    changes no weight is left out; the last step is always every device at 0."""
    fractions = check_fractions(fractions)
    steps = []
    previous = dict(weights)
    for fraction in fractions:
        step = {key: round(float(w) * fraction, 6) for key, w in weights.items()}
        if step != previous:
            steps.append(step)
            previous = step
    if not steps or any(steps[-1].values()):
        steps.append(dict.fromkeys(weights, 0.0))
    return steps


def check_can_lose(ring, devices, leaving, replicas, what="them"):
    """Conflict when ``ring`` without the devices whose keys are in ``leaving`` could not
    place ``replicas`` replicas apart: fewer devices with weight than replicas, or fewer
    failure domains (region, zone) than replicas where it had enough before.

    ``devices``: the ring's devices as dicts with key, region, zone and weight."""
    wanted = math.ceil(replicas)
    staying = [d for d in devices if d["key"] not in leaving and float(d["weight"]) > 0]
    if len(staying) < wanted:
        raise Conflict(f"without {what} the {ring} ring would keep {len(staying)} device(s) "
                       f"with weight, fewer than its {replicas:g} replicas: add storage first")
    before = {(d["region"], d["zone"]) for d in devices if float(d["weight"]) > 0}
    after = {(d["region"], d["zone"]) for d in staying}
    if len(after) < min(wanted, len(before)):
        raise Conflict(f"without {what} the {ring} ring would keep {len(after)} zone(s) for "
                       f"{replicas:g} "
                       f"replicas (it has {len(before)}): replicas would share a zone; add "
                       "storage in another zone first")


def drain_plan_names(count):
    """The journal steps of ``count`` weight steps: each change, then its convergence."""
    return [f"{kind}-{k}" for k in range(1, count + 1) for kind in ("weight", "converge")]


def next_step(planned, done):
    """The first planned journal step not done yet (None: the operation is complete)."""
    return next((name for name in planned if name not in set(done)), None)


def pass_of(kind, data):
    """(start, end, stats) of the last replication pass in a recon answer, or None.

    The object replicator reports its duration in minutes; the account and container
    replicators in seconds, with the start in their stats."""
    if not isinstance(data, dict):
        return None
    stats = data.get("replication_stats") if isinstance(data.get("replication_stats"),
                                                        dict) else {}
    if kind == "object":
        end, took = data.get("object_replication_last"), data.get("object_replication_time")
        if not _number(end) or not _number(took):
            return None
        return end - took * 60, end, stats
    end = data.get("replication_last")
    if not _number(end):
        return None
    start = stats.get("start")
    if not _number(start):
        took = data.get("replication_time")
        start = end - took if _number(took) else None
    return (start, end, stats) if start is not None else None


def _number(value):
    return isinstance(value, int | float) and not isinstance(value, bool)


def replication_lag(kind, data, since):
    """Why ``kind``'s replication on one node has not converged for rings in place at
    ``since`` (epoch seconds); None when it has: its last pass started after ``since`` and
    neither failed nor found partitions to hand off (a handoff is removed only once every
    primary has it, so a pass that removed one is followed by another)."""
    found = pass_of(kind, data)
    if found is None:
        return f"no {kind} replication pass reported yet"
    start, _, stats = found
    if start < since:
        return f"no {kind} replication pass started since the new rings"
    failures = int(stats.get("failure") or 0)
    removed = int(stats.get("remove") or 0)
    if failures:
        return f"the last {kind} replication pass had {failures} failure(s)"
    if removed:
        return f"the last {kind} replication pass handed off {removed} partition(s)"
    return None


def convergence_lag(answers, since, kinds=KINDS):
    """Everything still in the way of convergence, one line each, from
    ``{host: {kind: recon answer or None}}``; empty when every node has converged."""
    waiting = []
    for host in sorted(answers):
        for kind in kinds:
            why = replication_lag(kind, answers[host].get(kind), since)
            if why:
                waiting.append(f"{host}: {why}")
    return waiting


def resume_after(now, seconds_left):
    """When the next rebalance may move partitions again, or None if it may now."""
    return now + seconds_left if seconds_left > 0 else None
