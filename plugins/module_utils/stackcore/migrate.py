"""Moving one VM from this hypervisor to another (the core of ``stack_vm_migrate``).

Four modes, each idempotent and holding the domain's lock (``vm_lock``) while it works:

- ``live``: libvirt peer-to-peer live migration with incremental storage copy. Only the VM's
  qcow2 overlay travels (``VIR_MIGRATE_NON_SHARED_INC``): the target already has the base image
  in its cache and the domain defined with an empty overlay and the seed (``stack_vm
  state=present``, run there first). The source libvirtd reaches the target's libvirtd over
  libssh with the migration key and a pinned known_hosts file; QEMU's memory and disk streams go
  straight to the target's address. The domain is made persistent on the target and undefined
  here. A run where the domain is no longer defined here reports "not here" and changes nothing.
- ``copy``: the domain is shut off (or already gone): rsync its overlay disk and console log
  into the target's instance directory over SSH with the same key. A second run copies nothing.
- ``settle``: wait until no module holds the domain's lock and no libvirt job runs on it (a
  migration that an interrupted controller left running finishes or fails first), then report
  where things stand. Recovery uses it before deciding to go forward or back.
- ``reserve`` (on the target, after the domain is defined there, before a live move): reserve
  the guest's current ``address`` for its MAC in this host's DHCP (``dhcp_host``), refused when
  another guest here holds that address. A live-moved guest keeps its address; this host's
  dnsmasq must neither hand it out again nor have handed it out already.
"""

import contextlib
import ipaddress
import os
import re
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass

from . import dhcp_host, validate
from .domain import parse_domain
from .errors import BackendError, Conflict, InvalidInput
from .libvirt_conn import DEFAULT_URI, connect, import_libvirt, is_no_such
from .vm_lock import acquire
from .vm_ops import lookup
from .vm_plan import VmPaths

MODES = ("live", "copy", "settle", "reserve")
DEFAULT_KEY = "/etc/stackctl/migration/id_ed25519"
DEFAULT_KNOWN_HOSTS = "/etc/stackctl/migration/known_hosts"
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class MigrateRequest:
    name: str
    mode: str
    target: str | None = None
    target_user: str = "root"
    key_file: str = DEFAULT_KEY
    known_hosts: str = DEFAULT_KNOWN_HOSTS
    instance_dir: str = "/var/lib/stackctl/instances"
    uri: str = DEFAULT_URI
    timeout: float = 600
    bandwidth_mib: int = 0
    address: str | None = None  # reserve: the guest's IPv4 address

    def validate(self):
        validate.resource_name(self.name, "domain name")
        if self.mode not in MODES:
            raise InvalidInput(f"invalid mode {self.mode!r}: use one of {', '.join(MODES)}")
        if self.mode == "reserve":
            _ipv4(self.address)
        elif self.mode != "settle":
            uri_host(self.target)
        if not _USER.match(self.target_user or ""):
            raise InvalidInput(f"invalid target_user {self.target_user!r}")
        if self.timeout <= 0:
            raise InvalidInput("timeout must be positive")
        if self.bandwidth_mib < 0:
            raise InvalidInput("bandwidth_mib must not be negative")
        return self

    @property
    def paths(self):
        return VmPaths(self.instance_dir, self.name)


def uri_host(target):
    """``target`` as it goes into a URI: a hostname, an IPv4 address or a bracketed IPv6."""
    if not target:
        raise InvalidInput("target is required: the address of the host to move the VM to")
    try:
        address = ipaddress.ip_address(target)
    except ValueError:
        if not _HOSTNAME.match(target):
            raise InvalidInput(
                f"invalid target {target!r}: not a hostname or an address") from None
        return target
    return f"[{address}]" if address.version == 6 else str(address)


def _ipv4(address):
    try:
        return ipaddress.IPv4Address(address or "")
    except ValueError:
        raise InvalidInput(f"invalid address {address!r}: give the guest's IPv4 address") \
            from None


def target_uri(req):
    """The target libvirtd, reached by the source libvirtd over libssh, key-only, pinned."""
    return (f"qemu+libssh://{req.target_user}@{uri_host(req.target)}/system?"
            f"keyfile={req.key_file}&known_hosts={req.known_hosts}"
            "&known_hosts_verify=normal&sshauth=privkey")


def ssh_command(req):
    """The ``ssh`` argv rsync runs: the migration key, the pinned host keys, never a prompt."""
    return ["ssh", "-i", req.key_file, "-o", f"UserKnownHostsFile={req.known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=15", "-l", req.target_user]


def rsync_argv(req, sources, dest_dir):
    """Copy ``sources`` into ``dest_dir`` on the target: sparse, keeping modification times
    (so a second run finds nothing to do), creating the directory, listing what changed."""
    rsh = " ".join(shlex.quote(part) for part in ssh_command(req))
    return ["rsync", "--sparse", "--times", "--mkpath", "--itemize-changes", "-e", rsh,
            *sources, f"{uri_host(req.target)}:{dest_dir}/"]


@dataclass
class MigrateResult:
    changed: bool
    here: str  # the domain's state on this host after the run: running, stopped, absent ...
    detail: str
    seconds: float = 0.0


def run(req, check=False, conn=None):
    req.validate()
    conn = conn or connect(req.uri)
    lock = acquire(req.instance_dir, req.name, timeout=req.timeout + 300) if not check else None
    try:
        if req.mode == "settle":
            _wait_for_job(conn, req.name, req.timeout)
            return MigrateResult(False, power(conn, req.name), "settled")
        if req.mode == "live":
            return _live(conn, req, check)
        if req.mode == "reserve":
            return _reserve(conn, req, check)
        return _copy(conn, req, check)
    finally:
        if lock is not None:
            lock.release()


def power(conn, name):
    """running, paused, stopped, other or absent (not defined here)."""
    libvirt = import_libvirt()
    try:
        state = conn.lookupByName(name).state()[0]
    except libvirt.libvirtError as exc:
        if is_no_such(exc):
            return "absent"
        raise BackendError(f"cannot read domain {name}: {exc.get_error_message()}") from exc
    return {libvirt.VIR_DOMAIN_RUNNING: "running", libvirt.VIR_DOMAIN_PAUSED: "paused",
            libvirt.VIR_DOMAIN_SHUTOFF: "stopped"}.get(state, "other")


def _live(conn, req, check):
    here = power(conn, req.name)
    if here == "absent":
        return MigrateResult(False, here, "not here: nothing to move")
    if here not in ("running", "paused"):
        raise Conflict(f"domain {req.name} is {here}, not running: a live migration needs a "
                       "running VM (move a stopped one with mode=copy)")
    if check:
        return MigrateResult(True, "absent", f"would live-migrate to {req.target}")
    libvirt = import_libvirt()
    flags = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER
             | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
             | libvirt.VIR_MIGRATE_NON_SHARED_INC | libvirt.VIR_MIGRATE_AUTO_CONVERGE)
    params = {libvirt.VIR_MIGRATE_PARAM_URI: f"tcp://{uri_host(req.target)}"}
    if req.bandwidth_mib:
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = req.bandwidth_mib
    dom = conn.lookupByName(req.name)
    started = time.monotonic()
    _migrate_with_deadline(dom, target_uri(req), params, flags, req.timeout)
    seconds = time.monotonic() - started
    return MigrateResult(True, power(conn, req.name), f"live-migrated to {req.target}", seconds)


def _migrate_with_deadline(dom, dest_uri, params, flags, timeout):
    """``migrateToURI3`` in a thread; past ``timeout`` the job is aborted (the VM keeps
    running here, as after any failed migration)."""
    libvirt = import_libvirt()
    outcome = {}

    def work():
        try:
            dom.migrateToURI3(dest_uri, params, flags)
        except libvirt.libvirtError as exc:
            outcome["error"] = exc.get_error_message()

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        with contextlib.suppress(libvirt.libvirtError):
            dom.abortJob()
        worker.join(120)
        raise BackendError(f"live migration did not finish within {int(timeout)} s; aborted, "
                           "the VM keeps running on the source")
    if "error" in outcome:
        raise BackendError(f"live migration failed: {outcome['error']}")


def _wait_for_job(conn, name, timeout):
    libvirt = import_libvirt()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            dom = conn.lookupByName(name)
            job = dom.jobInfo()[0] if dom.isActive() else libvirt.VIR_DOMAIN_JOB_NONE
        except libvirt.libvirtError as exc:
            if is_no_such(exc) or exc.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID:
                return  # gone, or stopped between the two calls: no job
            raise BackendError(f"cannot read domain {name}: {exc.get_error_message()}") from exc
        if job == libvirt.VIR_DOMAIN_JOB_NONE:
            return
        time.sleep(1)
    raise BackendError(f"a job on domain {name} is still running after {int(timeout)} s")


def _copy(conn, req, check):
    here = power(conn, req.name)
    if here in ("running", "paused", "other"):
        raise Conflict(f"domain {req.name} is {here}: stop it before copying its disk")
    paths = req.paths
    sources = [p for p in (paths.disk, paths.console_log) if os.path.isfile(p)]
    if paths.disk not in sources:
        raise Conflict(f"the disk {paths.disk} is not on this host: nothing to copy")
    argv = rsync_argv(req, sources, paths.dir)
    if check:
        argv.insert(1, "--dry-run")
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=req.timeout,
                          check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise BackendError(f"copying the disk to {req.target} failed: {last}")
    copied = [line.split(" ", 1)[-1] for line in proc.stdout.splitlines()
              if line.startswith(("<f", ">f"))]
    detail = f"copied {', '.join(copied)} to {req.target}" if copied else "already copied"
    return MigrateResult(bool(copied), here, detail, time.monotonic() - started)


def _reserve(conn, req, check):
    libvirt = import_libvirt()
    dom = lookup(conn, req.name)
    if dom is None:
        raise Conflict(f"domain {req.name} is not defined here: define it before reserving "
                       "its address")
    spec = parse_domain(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    if not (spec.network and spec.mac):
        raise Conflict(f"domain {req.name} has no interface on a libvirt network")
    actions = dhcp_host.reserve(conn, spec.network, spec.mac, str(_ipv4(req.address)),
                                check=check)
    detail = (f"reserved {req.address} for {spec.mac} on network {spec.network}" if actions
              else f"{req.address} already reserved for {spec.mac} on network {spec.network}")
    return MigrateResult(bool(actions), power(conn, req.name), detail)
