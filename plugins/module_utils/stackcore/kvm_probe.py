"""Does KVM really work on this host? Answered by running a tiny guest, not by looking at /dev/kvm.

On some hosts (nested virtualization inside another VM) /dev/kvm exists and libvirt lists
``<domain type='kvm'>``, yet a KVM guest crawls so slowly that it looks hung at "Booting from
ROM". The probe boots a hand-assembled multiboot kernel through the same path as a real guest
(SeaBIOS, the option ROM that loads ``-kernel``, 32-bit protected mode, paging, long mode), then
runs a small CPU and memory workload that TCG finishes in a fraction of a second and working KVM
in milliseconds. The guest writes progress lines and a marker to the serial port; the marker
within the timeout means KVM is usable.

The verdict is cached in ``/var/lib/stackctl/virt.json`` keyed by the QEMU version (and the host
kernel release, since nested KVM lives in the kernel), so the probe runs once per upgrade.
"""

import fcntl
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass

from .errors import BackendError, InvalidInput

QEMU = "qemu-system-x86_64"
DEFAULT_STATE_FILE = "/var/lib/stackctl/virt.json"
DEFAULT_TIMEOUT = 6.0
VIRT_TYPES = ("auto", "kvm", "qemu")

MARKER = b"STACKCTL-PROBE-OK\n"
# Progress lines, in order: firmware handed over to us; paging and long mode are on; the
# workload finished. Which one was seen last says where a slow or broken accelerator stopped.
STAGES = (
    (b"probe:entry\n", "32-bit entry"),
    (b"probe:long-mode\n", "long mode"),
    (b"probe:workload-done\n", "workload done"),
)

# Guest memory map (the guest gets 16 MiB): payload at 1 MiB, page tables just above it,
# the memory workload scribbles over 2-6 MiB.
LOAD_ADDR = 0x100000
PML4_ADDR = 0x110000
SCRATCH_START = 0x200000
SCRATCH_END = 0x600000
SERIAL_PORT = 0x3F8
DEBUG_EXIT_PORT = 0xF4  # isa-debug-exit: the guest ends QEMU instead of idling until the timeout
LOOP_ITERATIONS = 20_000_000  # TCG: ~0.15 s; working KVM: ~10 ms; the broken nested KVM: ~16 s
MEMORY_PASSES = 4

MULTIBOOT_MAGIC = 0x1BADB002
MULTIBOOT_AOUT_KLUDGE = 1 << 16  # use the address fields below, not ELF headers
MULTIBOOT_HEADER_SIZE = 32


# ---------------------------------------------------------------------------------------------
# The payload: a few x86 instructions, encoded by hand (no assembler on a hypervisor host).


def _u32(value):
    return struct.pack("<I", value & 0xFFFFFFFF)


def _jnz_back(body_len):
    """``jnz`` to the start of a loop whose body (without this 2-byte jump) is body_len bytes."""
    return b"\x75" + struct.pack("<b", -(body_len + 2))


def _say(text):
    """Write text to the serial port; %dx must hold the port. ``mov $c,%al; out %al,(%dx)``."""
    return b"".join(b"\xb0" + bytes([c]) + b"\xee" for c in text)


def _code32(gdtr_addr, long_mode_addr):
    """32-bit entry (multiboot: protected mode, flat segments, paging off) up to the far jump."""
    map_loop = (
        b"\x89\x07"                      # mov %eax,(%edi)        one 2 MiB page directory entry
        + b"\x05" + _u32(0x200000)       # add $2MiB,%eax
        + b"\x83\xc7\x08"                # add $8,%edi
        + b"\x49"                        # dec %ecx
    )
    return (
        b"\xfa"                                          # cli
        + b"\x66\xba" + struct.pack("<H", SERIAL_PORT)   # mov $0x3f8,%dx
        + _say(STAGES[0][0])
        + b"\xbf" + _u32(PML4_ADDR)                      # mov $PML4,%edi
        + b"\x31\xc0"                                    # xor %eax,%eax
        + b"\xb9" + _u32(3 * 1024)                       # mov $3072,%ecx
        + b"\xf3\xab"                                    # rep stosl: zero PML4, PDPT, PD
        + b"\xc7\x05" + _u32(PML4_ADDR) + _u32(PML4_ADDR + 0x1003)           # PML4[0] = PDPT
        + b"\xc7\x05" + _u32(PML4_ADDR + 0x1000) + _u32(PML4_ADDR + 0x2003)  # PDPT[0] = PD
        + b"\xbf" + _u32(PML4_ADDR + 0x2000)             # mov $PD,%edi
        + b"\xb8" + _u32(0x83)                           # mov $(present|rw|2MiB),%eax
        + b"\xb9" + _u32(8)                              # mov $8,%ecx: identity-map 16 MiB
        + map_loop + _jnz_back(len(map_loop))
        + b"\xb8" + _u32(PML4_ADDR)                      # mov $PML4,%eax
        + b"\x0f\x22\xd8"                                # mov %eax,%cr3
        + b"\x0f\x20\xe0"                                # mov %cr4,%eax
        + b"\x83\xc8\x20"                                # or $PAE,%eax
        + b"\x0f\x22\xe0"                                # mov %eax,%cr4
        + b"\xb9" + _u32(0xC0000080)                     # mov $EFER,%ecx
        + b"\x0f\x32"                                    # rdmsr
        + b"\x0d" + _u32(0x100)                          # or $LME,%eax
        + b"\x0f\x30"                                    # wrmsr
        + b"\x0f\x01\x15" + _u32(gdtr_addr)              # lgdt gdtr
        + b"\x0f\x20\xc0"                                # mov %cr0,%eax
        + b"\x0d" + _u32(0x80000001)                     # or $(PG|PE),%eax
        + b"\x0f\x22\xc0"                                # mov %eax,%cr0
        + b"\xea" + _u32(long_mode_addr) + b"\x08\x00"   # ljmp $0x08,$long_mode
    )


def _code64():
    """64-bit code: report, run the workload, report, print the marker, exit QEMU, halt."""
    spin = b"\xff\xc9"                   # dec %ecx
    store = (
        b"\x89\x1f"                      # mov %ebx,(%rdi)
        + b"\x48\x83\xc7\x04"            # add $4,%rdi
        + b"\x48\x81\xff" + _u32(SCRATCH_END)  # cmp $END,%rdi
    )
    scratch_pass = (
        b"\xbf" + _u32(SCRATCH_START)    # mov $START,%edi (zero-extends into %rdi)
        + store + _jnz_back(len(store))
        + b"\xff\xcb"                    # dec %ebx
    )
    return (
        b"\x66\xba" + struct.pack("<H", SERIAL_PORT)    # mov $0x3f8,%dx
        + _say(STAGES[1][0])
        + b"\xb9" + _u32(LOOP_ITERATIONS)               # mov $N,%ecx
        + spin + _jnz_back(len(spin))
        + b"\xbb" + _u32(MEMORY_PASSES)                 # mov $passes,%ebx
        + scratch_pass + _jnz_back(len(scratch_pass))
        + _say(STAGES[2][0])
        + _say(MARKER)
        + b"\xe6" + bytes([DEBUG_EXIT_PORT])            # out %al,$0xf4: QEMU exits
        + b"\xfa\xf4\xeb\xfc"                           # cli; hlt; jmp back to cli
    )


# Flat GDT: null, 64-bit code (selector 0x08), data.
_GDT = struct.pack("<3Q", 0, 0x00209A0000000000, 0x0000920000000000)


def build_payload():
    """The probe kernel: a multiboot image loaded at 1 MiB (a.out kludge, no ELF)."""
    entry = LOAD_ADDR + MULTIBOOT_HEADER_SIZE
    code32_len = len(_code32(0, 0))  # instruction lengths do not depend on the addresses
    code_end = MULTIBOOT_HEADER_SIZE + code32_len + len(_code64())
    gdt_offset = code_end + (-code_end) % 8
    gdt_addr = LOAD_ADDR + gdt_offset
    gdtr_addr = gdt_addr + len(_GDT)
    code = _code32(gdtr_addr, entry + code32_len) + _code64()
    gdtr = struct.pack("<HI", len(_GDT) - 1, gdt_addr)
    end = gdtr_addr + len(gdtr)
    header = struct.pack(
        "<8I",
        MULTIBOOT_MAGIC,
        MULTIBOOT_AOUT_KLUDGE,
        -(MULTIBOOT_MAGIC + MULTIBOOT_AOUT_KLUDGE) & 0xFFFFFFFF,
        LOAD_ADDR,  # header_addr: the header sits at the start of the image
        LOAD_ADDR,  # load_addr
        end,  # load_end_addr
        end,  # bss_end_addr: no bss
        entry,
    )
    return (header + code).ljust(gdt_offset, b"\x00") + _GDT + gdtr


# ---------------------------------------------------------------------------------------------
# Running it.


@dataclass(frozen=True)
class ProbeRun:
    """What one run of the payload under one accelerator showed."""

    accel: str
    ok: bool
    elapsed_s: float
    reached: str  # the last stage seen ("" when the guest printed nothing)
    detail: str


def qemu_argv(qemu, accel, kernel, serial_log):
    """The QEMU command line for one probe run (an argv list)."""
    return [
        qemu, "-accel", accel,
        "-kernel", kernel,
        "-m", "16",
        "-display", "none", "-nodefaults", "-no-reboot",
        "-monitor", "none",
        "-serial", f"file:{serial_log}",
        "-device", f"isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=0x04",
    ]


def reached_stage(output):
    """The name of the last progress line present in the serial output, or ""."""
    reached = ""
    for line, name in STAGES:
        if line in output:
            reached = name
    return reached


def run_probe(accel="kvm", timeout=DEFAULT_TIMEOUT, qemu=QEMU):
    """Boot the payload under ``accel`` (kvm|tcg) and report whether the marker appeared in time.

    The QEMU process is always gone when this returns (killed on timeout), and the temporary
    directory holding the payload and the serial log is removed.
    """
    if accel not in ("kvm", "tcg"):
        raise InvalidInput(f"invalid accelerator {accel!r}: expected kvm or tcg")
    binary = shutil.which(qemu)
    if binary is None:
        raise BackendError(f"{qemu} not found: install qemu-system-x86")
    with tempfile.TemporaryDirectory(prefix="stackctl-kvm-probe-") as tmp:
        kernel = os.path.join(tmp, "probe.bin")
        serial_log = os.path.join(tmp, "serial.log")
        with open(kernel, "wb") as f:
            f.write(build_payload())
        argv = qemu_argv(binary, accel, kernel, serial_log)
        with open(os.path.join(tmp, "qemu.err"), "w+b") as stderr:
            return _watch(accel, argv, serial_log, stderr, timeout)


def _watch(accel, argv, serial_log, stderr, timeout):
    """Start QEMU, poll the serial log until the marker, QEMU's exit or the timeout."""
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,  # a Ctrl-C aimed at us does not reach QEMU first
        )
    except OSError as exc:
        raise BackendError(f"cannot start {argv[0]}: {exc.strerror or exc}") from exc
    try:
        while True:
            output = _read(serial_log)
            exited = proc.poll() is not None
            if MARKER in output or exited or time.monotonic() - started > timeout:
                break
            time.sleep(0.02)
        elapsed = round(time.monotonic() - started, 3)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    output = _read(serial_log)  # whatever arrived between the last poll and the end
    reached = reached_stage(output)
    if MARKER in output:
        return ProbeRun(accel, True, elapsed, reached, f"marker seen after {elapsed} s")
    if exited:
        stderr.seek(0)
        lines = stderr.read().decode(errors="replace").strip().splitlines()
        why = lines[-1] if lines else f"exit status {proc.returncode}"
        detail = f"QEMU exited without the marker ({why})"
    else:
        detail = f"no marker within {timeout} s (killed)"
        if reached:
            detail += "; the guest started but runs far too slowly"
    if reached:
        detail += f"; it got as far as: {reached}"
    return ProbeRun(accel, False, elapsed, reached, detail)


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def probe_kvm(timeout=DEFAULT_TIMEOUT, qemu=QEMU):
    """True when a guest really runs under ``-accel kvm`` at a usable speed on this host."""
    return _run_kvm(timeout, qemu).ok


# ---------------------------------------------------------------------------------------------
# The cached verdict.


def qemu_version(qemu=QEMU):
    """QEMU's version as a dotted string, from ``qemu-system-x86_64 --version``."""
    binary = shutil.which(qemu)
    if binary is None:
        raise BackendError(f"{qemu} not found: install qemu-system-x86")
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise BackendError(f"cannot run {binary} --version: {exc}") from exc
    return parse_qemu_version(out)


def parse_qemu_version(text):
    """``QEMU emulator version 7.2.22 (Debian ...)`` -> ``"7.2.22"``."""
    match = re.search(r"version (\d+\.\d+(?:\.\d+)?)", text)
    if not match:
        raise BackendError(f"cannot read the QEMU version from {text.strip()[:80]!r}")
    return match.group(1)


def load_state(state_file):
    """The cached probe record, or None when missing or unreadable."""
    try:
        with open(state_file, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def is_fresh(record, version, kernel):
    """A cached record answers for this host only if QEMU and the host kernel are unchanged."""
    return (
        record is not None
        and record.get("qemu_version") == version
        and record.get("host_kernel", kernel) == kernel
        and isinstance(record.get("kvm_usable"), bool)
    )


def kvm_status(state_file=DEFAULT_STATE_FILE, reprobe=False, timeout=DEFAULT_TIMEOUT, qemu=QEMU):
    """The probe record for this host: cached when fresh, else probed (once, under a lock).

    Returns ``{"qemu_version", "host_kernel", "kvm_usable", "probed_at", "elapsed_s",
    "detail", "cached"}``.
    """
    version = qemu_version(qemu)
    kernel = os.uname().release
    record = None if reprobe else load_state(state_file)
    if is_fresh(record, version, kernel):
        return dict(record, cached=True)
    with _probe_lock(state_file):
        record = None if reprobe else load_state(state_file)
        if is_fresh(record, version, kernel):  # probed by someone else while we waited
            return dict(record, cached=True)
        run = _run_kvm(timeout, qemu)
        record = {
            "qemu_version": version,
            "host_kernel": kernel,
            "kvm_usable": run.ok,
            "probed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "elapsed_s": run.elapsed_s,
            "detail": run.detail,
        }
        _save_state(state_file, record)
    return dict(record, cached=False)


def _run_kvm(timeout, qemu):
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return ProbeRun("kvm", False, 0.0, "", "/dev/kvm is missing or not accessible")
    return run_probe("kvm", timeout, qemu)


def virt_type(forced="auto", state_file=DEFAULT_STATE_FILE, reprobe=False,
              timeout=DEFAULT_TIMEOUT, qemu=QEMU):
    """The libvirt domain type to use: "kvm" when KVM really works, else "qemu" (TCG).

    ``forced`` "kvm" or "qemu" is returned as is without probing.
    """
    if forced not in VIRT_TYPES:
        raise InvalidInput(f"invalid virt_type {forced!r}: expected one of {', '.join(VIRT_TYPES)}")
    if forced != "auto":
        return forced
    status = kvm_status(state_file, reprobe=reprobe, timeout=timeout, qemu=qemu)
    return "kvm" if status["kvm_usable"] else "qemu"


@contextmanager
def _probe_lock(state_file):
    """flock beside the state file, so parallel tasks on one host probe only once."""
    directory = os.path.dirname(os.path.abspath(state_file))
    path = os.path.join(directory, "." + os.path.basename(state_file) + ".lock")
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        # Not root, or a read-only state dir: probe without the lock (and without caching).
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _save_state(state_file, record):
    """Write the record atomically. A cache we cannot write only means probing again later."""
    directory = os.path.dirname(os.path.abspath(state_file))
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".virt.", suffix=".tmp")
    except OSError:
        return
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, state_file)
    except OSError:
        pass
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
