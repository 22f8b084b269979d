"""``stackctl storage status``: each storage node's health from Swift's recon middleware.

The account, container and object servers of each node are asked over HTTP (urllib, in
threads, short timeouts); parsing their answers is pure and tested with captured samples.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stackctl.workflows.storage import RECON_TIMEOUT, Node, duration, load_cluster

if TYPE_CHECKING:
    from stackctl.app import App
    from stackctl.progress import StepProgress


@dataclass(frozen=True)
class Query:
    key: str
    server: str  # account, container or object: which server's port answers
    path: str


QUERIES = (
    Query("diskusage", "object", "/recon/diskusage"),
    Query("object_replication", "object", "/recon/replication/object"),
    Query("container_replication", "container", "/recon/replication/container"),
    Query("account_replication", "account", "/recon/replication/account"),
    Query("ringmd5", "object", "/recon/ringmd5"),
    Query("async", "object", "/recon/async"),
)


@dataclass(frozen=True)
class Answer:
    """A recon answer: its JSON, or why there is none (one line)."""

    data: Any = None
    error: str | None = None


def fetch_json(url: str, timeout: float = RECON_TIMEOUT) -> Answer:
    # No proxy: the storage network is never behind the environment's HTTP proxy.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            body = response.read(1 << 20)
    except urllib.error.HTTPError as exc:
        return Answer(error=f"HTTP {exc.code} for {url} (is recon in the server's pipeline?)")
    except urllib.error.URLError as exc:
        return Answer(error=_reason(exc.reason))
    except OSError as exc:  # timeouts and resets while reading
        return Answer(error=_reason(exc))
    try:
        return Answer(json.loads(body))
    except ValueError:
        return Answer(error=f"{url} did not answer JSON")


def _reason(reason: Any) -> str:
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def probe(nodes: list[Node], timeout: float = RECON_TIMEOUT) -> dict[str, dict[str, Answer]]:
    """Every query to every node at once; ``{host: {query key: Answer}}``."""
    jobs = [(node, q) for node in nodes for q in QUERIES]
    answers: dict[str, dict[str, Answer]] = {node.host: {} for node in nodes}
    if not jobs:
        return answers

    def url(node: Node, query: Query) -> str:
        host = f"[{node.ip}]" if ":" in node.ip else node.ip
        return f"http://{host}:{node.ports[query.server]}{query.path}"

    with ThreadPoolExecutor(max_workers=min(32, len(jobs))) as pool:
        futures = [(node, q, pool.submit(fetch_json, url(node, q), timeout)) for node, q in jobs]
        for node, q, future in futures:
            answers[node.host][q.key] = future.result()
    return answers


def builder_ring_md5s(builder_dir: str) -> tuple[dict[str, str] | None, str | None]:
    """md5 of each ``<ring>.ring.gz`` in the builder directory, or (None, why not)."""
    try:
        names = sorted(n for n in os.listdir(builder_dir) if n.endswith(".ring.gz"))
        md5s = {}
        for name in names:
            with open(os.path.join(builder_dir, name), "rb") as handle:
                digest = hashlib.md5(handle.read(), usedforsecurity=False).hexdigest()
            md5s[name.removesuffix(".ring.gz")] = digest
    except OSError as exc:
        return None, f"cannot read the ring builders' rings in {builder_dir}: {_reason(exc)}"
    if not md5s:
        return None, f"no ring files in {builder_dir}: is object storage deployed?"
    return md5s, None


def disk_usage(data: Any) -> dict:
    """/recon/diskusage: one entry per directory under the node's devices root; ``mounted`` is
    true, false (not a mount point) or the error that check raised."""
    devices = [d for d in data if isinstance(d, Mapping)] if isinstance(data, list) else []
    mounted = [d for d in devices if d.get("mounted") is True]
    size = sum(int(d.get("size") or 0) for d in mounted)
    used = sum(int(d.get("used") or 0) for d in mounted)
    return {"devices_mounted": len(mounted), "devices_total": len(devices),
            "mounted": sorted(str(d.get("device")) for d in mounted),
            "unmounted": sorted(str(d.get("device")) for d in devices
                                if d.get("mounted") is not True),
            "size_bytes": size, "used_bytes": used,
            "used_pct": round(100.0 * used / size, 1) if size else None}


def replication_last(data: Any, kind: str) -> float | None:
    """When the last replication pass of ``kind`` finished (epoch seconds), or None."""
    if not isinstance(data, Mapping):
        return None
    keys = ("object_replication_last", "replication_last") if kind == "object" else \
        ("replication_last",)
    for key in keys:
        value = data.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def ago(seconds: float | None) -> str:
    """``12s ago``, ``5m ago``, ``3h ago``, ``2d ago``; ``never`` for None."""
    if seconds is None:
        return "never"
    return f"{duration(seconds)} ago"


def ring_check(node_md5s: Any, builder_md5s: Mapping[str, str] | None) -> tuple[str, list[str]]:
    """``ok``, ``DIFFERS`` (with the rings) or ``unknown``: a node's /recon/ringmd5 (keys are
    its ring files' full paths) against the controller's rings, compared by ring name. A ring
    the node lacks differs."""
    if not builder_md5s or not isinstance(node_md5s, Mapping):
        return "unknown", []
    have = {os.path.basename(str(path)).removesuffix(".ring.gz"): md5
            for path, md5 in node_md5s.items()}
    differ = sorted(name for name, md5 in builder_md5s.items() if have.get(name) != md5)
    return ("DIFFERS" if differ else "ok"), differ


def node_row(node: Node, answers: Mapping[str, Answer], builder_md5s: Mapping[str, str] | None,
             now: float) -> dict:
    """One status row (table cells plus the numbers behind them) from a node's answers."""
    failed = [(q, answers[q.key].error) for q in QUERIES
              if q.key in answers and answers[q.key].error]
    data = {k: a.data for k, a in answers.items() if a.error is None}
    usage = disk_usage(data["diskusage"]) if "diskusage" in data else None
    last = {kind: replication_last(data.get(f"{kind}_replication"), kind)
            for kind in ("object", "container", "account")}
    rings, differ = ring_check(data.get("ringmd5"), builder_md5s)
    async_pending = (data.get("async") or {}).get("async_pending") \
        if isinstance(data.get("async"), Mapping) else None
    if failed:
        query, reason = failed[0]
        status = f"unreachable: {query.server} server {node.ports[query.server]}: {reason}"
    elif usage is not None and usage["unmounted"]:
        status = "unmounted: " + ", ".join(usage["unmounted"])
    else:
        status = "ok"
    replicated = None
    if "object_replication" in data:
        seen = last["object"]
        replicated = ago(None if seen is None else now - seen)
    return {
        "host": node.host, "ip": node.ip,
        "devices": f"{usage['devices_mounted']}/{usage['devices_total']}" if usage else None,
        "used": f"{usage['used_pct']:.1f}%" if usage and usage["used_pct"] is not None else None,
        "replicated": replicated,
        "async_pending": async_pending if isinstance(async_pending, int) else None,
        "rings": rings, "rings_differ": differ, "status": status,
        **({k: usage[k] for k in ("devices_mounted", "devices_total", "mounted", "unmounted",
                                  "used_bytes", "size_bytes")} if usage else {}),
        "replication_last": last,
    }


def status(app: App, timeout: float = RECON_TIMEOUT,
           ui: StepProgress | None = None) -> tuple[list[dict], list[str]]:
    """(one row per storage node, notes). A node that does not answer is a row saying so."""
    cluster = load_cluster(app, full=False)
    md5s, why = builder_ring_md5s(cluster.builder_dir)
    nodes = list(cluster.nodes.values())
    if ui is not None:
        ui.step(f"asking {len(nodes)} storage node(s)")
    answers = probe(nodes, timeout)
    now = time.time()
    return [node_row(n, answers[n.host], md5s, now) for n in nodes], [why] if why else []


