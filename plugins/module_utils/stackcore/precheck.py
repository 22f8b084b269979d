"""Prechecks of a host before a rollout, read-only: are the ports our daemons need free (or
already held by those daemons), is there disk and memory, does a forced KVM really work, is the
clock close to the reference host's?

Every check ends in one-line problems without the host's name (the playbook prefixes it), e.g.
``port 6200 on 10.250.0.12 is taken by pid 123 (nginx); object-server needs it``. The verdicts
are pure functions of what was read, tested by tables; the readers (/proc, statvfs) are small
and separate.
"""

import ipaddress
import os
import time
from dataclasses import dataclass

from .errors import BackendError, InvalidInput
from .hostinfo import GIB, nearest_existing
from .kvm_probe import kvm_status

PROC = "/proc"
TCP_LISTEN = "0A"  # the state column of /proc/net/tcp{,6}
FREE, OURS, TAKEN = "free", "ours", "taken"
_MAX_ANCESTORS = 64


# ---------------------------------------------------------------------------------------------
# Ports


@dataclass(frozen=True)
class Listener:
    """A listening TCP socket: its local address, port and socket inode."""

    address: str
    port: int
    inode: int


@dataclass(frozen=True)
class Process:
    pid: int
    ppid: int
    name: str  # /proc/PID/comm
    cmdline: str  # arguments joined by spaces


@dataclass(frozen=True)
class PortSpec:
    """A port one of our daemons listens on, and how to recognise that daemon holding it.

    The holder is ours when it is the process the pid file names (or a child of it, as a
    server's workers are) or when its command line contains ``match``.
    """

    port: int
    address: str
    owner: str  # the daemon, for messages: "object-server"
    pidfile: str = ""
    match: str = ""

    def __post_init__(self):
        if not 0 < int(self.port) < 65536:
            raise InvalidInput(f"{self.owner}: port {self.port} is not between 1 and 65535")
        try:
            object.__setattr__(self, "address", normal_address(self.address))
        except ValueError:
            raise InvalidInput(f"{self.owner}: {self.address!r} is not an IP address") from None
        if self.pidfile and not os.path.isabs(self.pidfile):
            raise InvalidInput(f"{self.owner}: pidfile {self.pidfile!r} must be an absolute path")


@dataclass(frozen=True)
class PortVerdict:
    spec: PortSpec
    state: str  # free, ours or taken
    pid: int | None = None
    process: str = ""
    listening_on: str = ""

    @property
    def problem(self):
        """The one-line problem, or None when the port is free or ours."""
        if self.state != TAKEN:
            return None
        where = f"port {self.spec.port} on {self.spec.address}"
        if self.pid is None:
            holder = "a process this user cannot see (run the prechecks as root)"
        else:
            holder = f"pid {self.pid} ({self.process or 'exited'})"
        if self.listening_on != self.spec.address:
            holder += f" listening on {self.listening_on}"
        return f"{where} is taken by {holder}; {self.spec.owner} needs it"

    def as_dict(self):
        return {"port": self.spec.port, "address": self.spec.address, "owner": self.spec.owner,
                "state": self.state, "pid": self.pid, "process": self.process,
                "listening_on": self.listening_on}


def normal_address(text):
    """An IP address in canonical form; IPv4-mapped IPv6 addresses as IPv4."""
    addr = ipaddress.ip_address(str(text).strip())
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return str(addr)


def _decode_address(hexaddr):
    """/proc/net/tcp's address: 8 hex digits (IPv4) or 32 (IPv6), each 32-bit word in host
    (little-endian) order."""
    raw = bytes.fromhex(hexaddr)
    if len(raw) == 4:
        return normal_address(ipaddress.IPv4Address(raw[::-1]))
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return normal_address(ipaddress.IPv6Address(words))


def parse_proc_net_tcp(text):
    """The listening sockets in the text of /proc/net/tcp or /proc/net/tcp6."""
    out = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != TCP_LISTEN:
            continue
        hexaddr, hexport = fields[1].split(":")
        out.append(Listener(_decode_address(hexaddr), int(hexport, 16), int(fields[9])))
    return out


def covers(listening, wanted):
    """Whether a socket listening on address ``listening`` keeps a daemon from binding the same
    port on ``wanted``: the same address, or either one a wildcard (``::`` taken as dual-stack,
    Linux's default)."""
    if listening == wanted or "::" in (listening, wanted):
        return True
    if ":" in listening or ":" in wanted:  # one IPv6, one IPv4: distinct unless a wildcard
        return False
    return "0.0.0.0" in (listening, wanted)


def clashes(spec, listeners):
    """The listeners in the way of ``spec``."""
    return [lst for lst in listeners if lst.port == spec.port and covers(lst.address, spec.address)]


def _is_ours(pid, spec, processes, owner_pid):
    if spec.match and spec.match in processes[pid].cmdline:
        return True
    for _ in range(_MAX_ANCESTORS):  # the pid file's process, or one of its children
        if pid == owner_pid:
            return True
        proc = processes.get(pid)
        if proc is None or proc.ppid in (0, pid):
            return False
        pid = proc.ppid
    return False


def owner_pid(spec, pidfile_pid, processes):
    """The pid file's pid if it names a live process that is the daemon (command line
    containing ``match``, when given): a stale pid file whose pid was reused names no owner."""
    proc = processes.get(pidfile_pid)
    if proc is None or (spec.match and spec.match not in proc.cmdline):
        return None
    return pidfile_pid


def port_verdict(spec, listeners, holders, processes, pidfile_pid=None):
    """Whether ``spec``'s port is free, held by our daemon, or taken by another process.

    ``listeners``: every listening socket; ``holders``: socket inode -> pids holding it;
    ``processes``: pid -> Process for those pids and their ancestors; ``pidfile_pid``: what
    ``spec.pidfile`` says (None without one).
    """
    in_the_way = clashes(spec, listeners)
    if not in_the_way:
        return PortVerdict(spec, FREE)
    ours = owner_pid(spec, pidfile_pid, processes)
    first = None
    for listener in in_the_way:
        pids = sorted(holders.get(listener.inode, ()))
        if not pids:
            return PortVerdict(spec, TAKEN, listening_on=listener.address)
        for pid in pids:
            if pid not in processes:  # exited since the scan: judge by the others
                continue
            if not _is_ours(pid, spec, processes, ours):
                return PortVerdict(spec, TAKEN, pid, processes[pid].name, listener.address)
            first = first or (pid, listener.address)
    if first is None:  # every holder exited between the reads
        return PortVerdict(spec, FREE)
    return PortVerdict(spec, OURS, first[0], processes[first[0]].name, first[1])


def read_listeners(proc=PROC):
    """Listening TCP sockets (IPv4 and IPv6) in this process's network namespace."""
    out = []
    for name in ("tcp", "tcp6"):
        try:
            with open(os.path.join(proc, "net", name)) as handle:
                out.extend(parse_proc_net_tcp(handle.read()))
        except FileNotFoundError:  # no IPv6 in this kernel
            continue
        except OSError as exc:
            raise BackendError(f"cannot read {proc}/net/{name}: {exc}") from exc
    return out


def socket_holders(inodes, proc=PROC):
    """socket inode -> pids with it open, for the inodes asked about (processes this user can
    see: another user's open files are unreadable without root)."""
    wanted = {f"socket:[{inode}]": inode for inode in inodes}
    found = {}
    if not wanted:
        return found
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        fd_dir = os.path.join(proc, entry, "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:  # exited, or not ours to read
            continue
        for fd in fds:
            try:
                inode = wanted.get(os.readlink(os.path.join(fd_dir, fd)))
            except OSError:
                continue
            if inode is not None:
                found.setdefault(inode, set()).add(int(entry))
    return found


def read_process(pid, proc=PROC):
    """The process ``pid``, or None when it is gone."""
    base = os.path.join(proc, str(pid))
    try:
        with open(os.path.join(base, "stat")) as handle:
            stat = handle.read()
        with open(os.path.join(base, "cmdline"), "rb") as handle:
            cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may itself hold spaces and parentheses.
    name = stat[stat.index("(") + 1:stat.rindex(")")]
    ppid = int(stat[stat.rindex(")") + 1:].split()[1])
    return Process(int(pid), ppid, name, cmdline)


def read_pidfile(path):
    """The pid a pid file holds, or None (missing, empty, garbage)."""
    try:
        with open(path) as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _with_ancestors(pids, proc):
    processes = {}
    todo = [p for p in pids if p]
    while todo:
        pid = todo.pop()
        if pid in processes or len(processes) > 4096:
            continue
        found = read_process(pid, proc)
        if found is not None:
            processes[pid] = found
            todo.append(found.ppid)
    return processes


def check_ports(specs, proc=PROC):
    """Read this host's listeners and judge each spec (a list of PortVerdict, in order)."""
    listeners = read_listeners(proc)
    in_the_way = {lst.inode for spec in specs for lst in clashes(spec, listeners)}
    holders = socket_holders(in_the_way, proc)
    pidfile_pids = {spec.pidfile: read_pidfile(spec.pidfile) for spec in specs if spec.pidfile}
    held = {pid for pids in holders.values() for pid in pids}
    processes = _with_ancestors(held | set(pidfile_pids.values()) - {None}, proc)
    return [port_verdict(spec, listeners, holders, processes, pidfile_pids.get(spec.pidfile))
            for spec in specs]


# ---------------------------------------------------------------------------------------------
# Disk, memory, clock, accelerator


@dataclass(frozen=True)
class DiskFree:
    path: str  # as asked
    mount: str  # the mount point of the filesystem holding it (or its nearest existing parent)
    free_gb: float  # for unprivileged use


def mount_point(path):
    """The mount point of the filesystem holding the existing ``path``."""
    path = os.path.realpath(path)
    dev = os.stat(path).st_dev
    while path != "/":
        parent = os.path.dirname(path)
        if os.stat(parent).st_dev != dev:
            return path
        path = parent
    return path


def measure_disk(paths):
    """Free space of the filesystem holding each path (a path not made yet: its nearest
    existing parent)."""
    out = []
    for path in paths:
        existing = nearest_existing(path)
        st = os.statvfs(existing)
        out.append(DiskFree(path, mount_point(existing), st.f_bavail * st.f_frsize / GIB))
    return out


def disk_problems(measured, min_gb):
    """One problem per filesystem with less than ``min_gb`` GiB free (named by the first path
    asked about on it)."""
    problems, seen = [], set()
    for disk in measured:
        if disk.mount in seen:
            continue
        seen.add(disk.mount)
        if disk.free_gb < min_gb:
            problems.append(f"{disk.free_gb:.1f} GiB free for {disk.path} (on {disk.mount}), "
                            f"at least {min_gb:g} GiB needed")
    return problems


def parse_meminfo(text):
    """MemAvailable from /proc/meminfo, in MiB (MemFree on kernels older than 3.14)."""
    fields = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if rest.split():
            fields[name] = int(rest.split()[0])  # kB
    kib = fields.get("MemAvailable", fields.get("MemFree"))
    if kib is None:
        raise BackendError("no MemAvailable or MemFree in /proc/meminfo")
    return kib // 1024


def read_memory_available_mb(path="/proc/meminfo"):
    try:
        with open(path) as handle:
            return parse_meminfo(handle.read())
    except OSError as exc:
        raise BackendError(f"cannot read {path}: {exc}") from exc


def memory_problem(available_mb, min_mb):
    if available_mb >= min_mb:
        return None
    return f"{available_mb} MiB of memory available, at least {min_mb} MiB needed"


def clock_problem(offset, reference_offset, max_skew, reference_name):
    """``offset`` and ``reference_offset``: this host's and the reference host's clock minus
    the Ansible controller's when each task was sent, so the transport delay mostly cancels."""
    skew = offset - reference_offset
    if abs(skew) <= max_skew:
        return None
    way = "ahead of" if skew > 0 else "behind"
    return (f"the clock is {abs(skew):.1f} s {way} {reference_name}'s (at most {max_skew:g} s "
            "allowed: is NTP running?)")


def virt_problem(virt_type, kvm_record, kvm_device_ok):
    """A forced ``kvm`` must really run a guest. ``kvm_record``: kvm_probe's verdict, or None
    before QEMU is installed (then only /dev/kvm can be looked at). ``auto`` falls back to TCG
    and ``qemu`` is TCG: both always work."""
    if virt_type != "kvm":
        return None
    if kvm_record is None:
        if kvm_device_ok:
            return None
        return ("hypervisor_virt_type is kvm but /dev/kvm is missing or not accessible "
                "(set auto to fall back to TCG)")
    if kvm_record.get("kvm_usable"):
        return None
    detail = kvm_record.get("detail") or "the probe guest did not run"
    return (f"hypervisor_virt_type is kvm but KVM does not run a guest here ({detail}); set "
            "auto to fall back to TCG")


def read_kvm(virt_type):
    """(kvm_probe's record or None, whether /dev/kvm is usable) for a forced ``kvm``; nothing
    is probed otherwise. The record is kvm_probe's cached verdict (a probe runs only when QEMU
    changed); None while QEMU is not installed yet."""
    if virt_type != "kvm":
        return None, True
    try:
        record = kvm_status()
    except BackendError:
        record = None
    return record, os.access("/dev/kvm", os.R_OK | os.W_OK)


@dataclass(frozen=True)
class HostLimits:
    """What a host must have; zero disables the disk or memory check."""

    min_disk_gb: float = 0
    min_memory_mb: int = 0
    max_clock_skew: float = 5
    reference_name: str = "the controller"


def host_report(paths, limits, reference_time=None, reference_offset=0.0, virt_type=None,
                clock=time.time):
    """Measure this host and judge it: ``{"disk", "memory_available_mb", "clock_offset",
    "kvm", "problems"}``. ``reference_time``: the Ansible controller's clock when the task was
    sent (None: no clock check); ``reference_offset``: the reference host's offset measured the
    same way."""
    offset = None if reference_time is None else clock() - float(reference_time)
    problems = []
    if offset is not None:
        problems.append(clock_problem(offset, float(reference_offset), limits.max_clock_skew,
                                      limits.reference_name))
    disks = measure_disk(paths)
    problems += disk_problems(disks, limits.min_disk_gb)
    memory = read_memory_available_mb()
    problems.append(memory_problem(memory, limits.min_memory_mb))
    record, device_ok = read_kvm(virt_type)
    problems.append(virt_problem(virt_type, record, device_ok))
    return {
        "disk": [{"path": d.path, "mount": d.mount, "free_gb": round(d.free_gb, 1)} for d in disks],
        "memory_available_mb": memory,
        "clock_offset": None if offset is None else round(offset, 3),
        "kvm": record,
        "problems": [p for p in problems if p],
    }
