#!/usr/bin/env python3
"""Build the stackctl test guest: a tiny cloud-style guest made only from
Debian packages (the cloud kernel, busybox-static, dropbear), booted by
direct kernel boot. It honours a NoCloud seed, takes its address by DHCP,
serves SSH for root (keys only) and powers off on ACPI shutdown.

    python images/test-guest/build.py --out build/images/test-guest

Writes disk.qcow2, vmlinuz, initrd.img and manifest.json into --out. A run
whose inputs (these sources, the package versions apt resolves) match the
existing manifest and files does nothing; --force rebuilds anyway.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True  # keep the source directory (an input) clean

import apt_packages
import guest_tree
import image_files
from apt_packages import BuildError, Package

NAME = "test-guest"
KERNEL_META = "linux-image-cloud-amd64"
USERLAND = ["busybox-static", "dropbear-bin", "libtomcrypt1", "libtommath1",
            "libc6", "zlib1g", "libgmp10", "libcrypt1"]
ROOT_LABEL = "stackctl-root"
# root by label: the guest finds its disk whatever order the virtio disks
# (root, seed) get on the PCI bus.
CMDLINE = f"console=ttyS0 root=LABEL={ROOT_LABEL} rw quiet"
# Enough to find the root disk (ext4, crc32c and jbd2 are built in) and to
# seed the entropy pool early; the rest of the drivers load from the disk.
INITRD_MODULES = ["virtio_pci", "virtio_blk", "virtio-rng"]
ROOT_MODULES = [*INITRD_MODULES, "virtio_net", "isofs", "button", "evdev"]
ROOT_PROGRAMS = ["usr/sbin/dropbear", "usr/bin/dropbearkey"]
ROOT_SIZE = "64M"
# File dates inside the image (SOURCE_DATE_EPOCH overrides): fixed, so the
# same inputs give the same bytes.
EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "1704067200"))
TOOLS = {"apt-get": "apt", "apt-cache": "apt", "dpkg-deb": "dpkg",
         "mke2fs": "e2fsprogs", "debugfs": "e2fsprogs", "qemu-img": "qemu-utils"}
ROOT_DIRS = {"dev": 0o755, "proc": 0o555, "sys": 0o555, "run": 0o755, "tmp": 0o1777,
             "mnt": 0o755, "root": 0o700, "home": 0o755, "etc/dropbear": 0o755,
             "var/log": 0o755, "var/lib/stackctl-guest": 0o755, "var/tmp": 0o1777}
ROOT_LINKS = {"var/run": "/run", "etc/mtab": "/proc/self/mounts"}
FILES = {"disk": ("disk.qcow2", "qcow2"), "kernel": ("vmlinuz", "aki"),
         "initrd": ("initrd.img", "ari")}


def check_tools() -> None:
    missing = [f"{tool} (Debian package {pkg})" for tool, pkg in TOOLS.items()
               if shutil.which(tool) is None]
    if missing:
        raise BuildError(f"missing tool(s): {', '.join(missing)}")


def resolve_packages(kernel_hint: str | None) -> list[Package]:
    """The kernel package KERNEL_META depends on now, then USERLAND, at
    their candidate versions. `kernel_hint` (the last build's kernel) lets
    the common case take one apt-cache call instead of two."""
    names = [KERNEL_META, *USERLAND] + ([kernel_hint] if kernel_hint else [])
    records = apt_packages.show(names)
    kernel = apt_packages.kernel_dependency(KERNEL_META, records[KERNEL_META])
    if kernel != kernel_hint:
        records.update(apt_packages.show([kernel]))
    return [apt_packages.package_from(name, records[name]) for name in [kernel, *USERLAND]]


def previous_kernel(out: Path) -> str | None:
    try:
        packages = json.loads((out / "manifest.json").read_text())["packages"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return next((name for name in packages if name.startswith("linux-image-")), None)


def inputs_digest(packages: list[Package]) -> str:
    """What the image is made of: the package versions and every file of
    this directory but the docs (its name, executable bit and bytes)."""
    digest = hashlib.sha256()
    digest.update(f"{CMDLINE}\n{ROOT_SIZE}\n{EPOCH}\n".encode())
    for pkg in packages:
        digest.update(f"{pkg.name}={pkg.version}:{pkg.sha256}\n".encode())
    for path in sorted(HERE.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".md":
            rel = path.relative_to(HERE).as_posix()
            digest.update(f"{rel}:{os.access(path, os.X_OK)}:".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def up_to_date(out: Path, inputs: str) -> bool:
    """True when out holds a manifest for these inputs whose files match."""
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("inputs") != inputs:
        return False
    for entry in manifest.get("files", {}).values():
        path = out / entry["path"]
        if not path.is_file() or path.stat().st_size != entry["size"]:
            return False
        if apt_packages.sha256_file(path) != entry["sha256"]:
            return False
    return set(manifest.get("files", {})) == set(FILES)


def build_root(root: Path, userland: Path, kernel: Path, version: str) -> None:
    busybox = userland / "bin/busybox"
    guest_tree.install_busybox(userland, root)
    for program in ROOT_PROGRAMS:
        guest_tree.install_program(userland, program, root)
    guest_tree.install_modules(kernel, version, ROOT_MODULES, root, busybox)
    guest_tree.make_dirs(root, ROOT_DIRS)
    guest_tree.make_symlinks(root, ROOT_LINKS)
    guest_tree.copy_tracked(HERE / "rootfs", root)
    image_files.set_times(root, EPOCH)


def build_initrd(initrd: Path, userland: Path, kernel: Path, version: str) -> None:
    guest_tree.install_busybox(userland, initrd)
    guest_tree.install_modules(kernel, version, INITRD_MODULES, initrd, userland / "bin/busybox")
    guest_tree.make_dirs(initrd, {"dev": 0o755, "proc": 0o755, "sys": 0o755,
                                  "newroot": 0o755, "run": 0o755, "tmp": 0o1777})
    guest_tree.copy_tracked(HERE / "initramfs", initrd)


def build(out: Path, cache: Path, packages: list[Package], inputs: str) -> dict:
    """Build every file into a scratch directory beside out, then move them
    in; the manifest goes last, so an interrupted build leaves none."""
    kernel_pkg = packages[0]
    version = kernel_pkg.name.removeprefix("linux-image-")
    debs = apt_packages.fetch(packages, cache)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as scratch:
        work = Path(scratch)
        kernel, userland = work / "kernel", work / "userland"
        print(f"test-guest: unpacking {len(debs)} packages (kernel {version})", flush=True)
        apt_packages.extract(debs[kernel_pkg.name], kernel)
        for pkg in packages[1:]:
            apt_packages.extract(debs[pkg.name], userland)
        print("test-guest: assembling the root filesystem and the initramfs", flush=True)
        build_root(work / "root", userland, kernel, version)
        build_initrd(work / "initrd", userland, kernel, version)
        print(f"test-guest: writing {FILES['disk'][0]}, {FILES['initrd'][0]}, "
              f"{FILES['kernel'][0]}", flush=True)
        staged = work / "out"
        staged.mkdir()
        shutil.copyfile(kernel / "boot" / f"vmlinuz-{version}", staged / FILES["kernel"][0])
        image_files.write_initramfs(work / "initrd", staged / FILES["initrd"][0], EPOCH,
                                    {"dev/console": (5, 1), "dev/null": (1, 3)})
        image_files.make_ext4(work / "root", work / "base.raw", ROOT_SIZE,
                              ROOT_LABEL, inputs, EPOCH)
        image_files.to_qcow2(work / "base.raw", staged / FILES["disk"][0])
        manifest = make_manifest(staged, packages, version, inputs)
        publish(staged, out, manifest)
    return manifest


def make_manifest(staged: Path, packages: list[Package], version: str, inputs: str) -> dict:
    files = {}
    for role, (name, fmt) in FILES.items():
        path = staged / name
        files[role] = {"path": name, "sha256": apt_packages.sha256_file(path),
                       "format": fmt, "size": path.stat().st_size}
    return {
        "name": NAME,
        "cmdline": CMDLINE,
        "files": files,
        "kernel_version": version,
        "packages": {pkg.name: pkg.version for pkg in packages},
        "inputs": inputs,
    }


def publish(staged: Path, out: Path, manifest: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o755)
    (out / "manifest.json").unlink(missing_ok=True)
    for name, _ in FILES.values():
        (staged / name).chmod(0o644)
        os.replace(staged / name, out / name)
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    tmp.chmod(0o644)
    os.replace(tmp, out / "manifest.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True,
                        help="output directory (e.g. build/images/test-guest)")
    parser.add_argument("--cache", type=Path, default=HERE.parents[1] / "build" / "debs",
                        help="where downloaded .debs are kept (default: build/debs)")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args(argv)
    os.umask(0o022)
    out = args.out.resolve()
    try:
        check_tools()
        print("test-guest: resolving packages", flush=True)
        packages = resolve_packages(previous_kernel(out))
        inputs = inputs_digest(packages)
        if not args.force and up_to_date(out, inputs):
            print(f"test-guest: {out} is up to date", flush=True)
            return 0
        manifest = build(out, args.cache.resolve(), packages, inputs)
    except BuildError as err:
        print(f"test-guest: error: {err}", file=sys.stderr)
        return 1
    disk = manifest["files"]["disk"]
    print(f"test-guest: built {out} (disk {disk['size'] // 1024} KiB, "
          f"kernel {manifest['kernel_version']})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
