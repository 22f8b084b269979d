"""Assemble the guest's file trees (initramfs and root filesystem) in staging
directories: busybox and its applet links, dynamically linked programs with
exactly the shared libraries they load (read from their ELF headers), kernel
modules with their dependencies, and the tracked files of this directory."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

from apt_packages import BuildError, run

# Where the loader looks for libraries in a Debian amd64 userland.
LIB_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "lib", "usr/lib")


def elf_dependencies(path: Path) -> list[str]:
    """The program interpreter (as an absolute path) and the DT_NEEDED
    sonames of a 64-bit little-endian ELF file; [] for a static one."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise BuildError(f"{path.name}: not a 64-bit little-endian ELF file")
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    loads, dynamic, deps = [], None, []
    for index in range(phnum):
        p_type, _, offset, vaddr, _, filesz, _, _ = struct.unpack_from(
            "<IIQQQQQQ", data, phoff + index * phentsize)
        if p_type == 1:  # PT_LOAD
            loads.append((vaddr, offset, filesz))
        elif p_type == 2:  # PT_DYNAMIC
            dynamic = (offset, filesz)
        elif p_type == 3:  # PT_INTERP
            deps.append(data[offset:offset + filesz].rstrip(b"\0").decode())
    if dynamic is None:
        return deps
    needed, strtab = [], None
    for entry in range(dynamic[0], dynamic[0] + dynamic[1], 16):
        tag, value = struct.unpack_from("<qQ", data, entry)
        if tag == 0:  # DT_NULL
            break
        if tag == 1:  # DT_NEEDED
            needed.append(value)
        elif tag == 5:  # DT_STRTAB (a virtual address)
            strtab = next(off + value - va for va, off, size in loads if va <= value < va + size)
    for name_offset in needed:
        end = data.index(b"\0", strtab + name_offset)
        deps.append(data[strtab + name_offset:end].decode())
    return deps


def _symlink_chain(tree: Path, rel: str) -> list[str]:
    """rel and every path its symlinks lead to inside tree, ending with a file."""
    chain = [rel]
    while (tree / chain[-1]).is_symlink():
        if len(chain) > 10:
            raise BuildError(f"symlink loop at {rel}")
        target = os.readlink(tree / chain[-1])
        if target.startswith("/"):
            chain.append(target.lstrip("/"))
        else:
            chain.append(os.path.normpath(os.path.join(os.path.dirname(chain[-1]), target)))
    if not (tree / chain[-1]).is_file():
        raise BuildError(f"{rel}: {chain[-1]} is not in the unpacked packages")
    return chain


def install_file(tree: Path, rel: str, root: Path) -> None:
    """Copy tree/rel to root/rel, recreating the symlinks on the way."""
    chain = _symlink_chain(tree, rel)
    for link in chain[:-1]:
        dest = root / link
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.is_symlink():
            os.symlink(os.readlink(tree / link), dest)
    source, dest = tree / chain[-1], root / chain[-1]
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, dest)
    dest.chmod(0o755 if source.stat().st_mode & 0o111 else 0o644)


def install_program(tree: Path, rel: str, root: Path) -> list[str]:
    """Install a program and, recursively, the libraries it needs.
    Returns the library paths installed (relative to root)."""
    installed: list[str] = []
    pending = [rel]
    while pending:
        current = pending.pop()
        install_file(tree, current, root)
        for dep in elf_dependencies(tree / _symlink_chain(tree, current)[-1]):
            dep_rel = dep.lstrip("/") if dep.startswith("/") else _find_library(tree, dep)
            if dep_rel not in installed:
                installed.append(dep_rel)
                pending.append(dep_rel)
    return sorted(installed)


def _find_library(tree: Path, soname: str) -> str:
    for directory in LIB_DIRS:
        if (tree / directory / soname).exists() or (tree / directory / soname).is_symlink():
            return f"{directory}/{soname}"
    raise BuildError(f"library {soname} is in none of the unpacked packages")


def install_busybox(tree: Path, root: Path) -> None:
    """bin/busybox plus a symlink for each applet, where busybox would put it."""
    install_file(tree, "bin/busybox", root)
    for applet in run([str(tree / "bin/busybox"), "--list-full"]).split():
        link = root / applet
        if link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink("/bin/busybox", link)


def install_modules(kernel_tree: Path, version: str, names: list[str],
                    root: Path, busybox: Path) -> list[str]:
    """Copy the named modules and all they depend on, then index them with
    busybox depmod (the kernel package ships no modules.dep). Returns the
    module files installed."""
    source = kernel_tree / "lib/modules" / version
    if not (source / "modules.dep").exists():
        run([str(busybox), "depmod", "-b", str(kernel_tree), version])
    depends: dict[str, list[str]] = {}
    for line in (source / "modules.dep").read_text().splitlines():
        module, _, deps = line.partition(":")
        depends[module] = deps.split()
    by_name = {_module_name(path): path for path in depends}
    wanted, pending = set(), []
    for name in names:
        if _module_name(name) not in by_name:
            raise BuildError(f"kernel {version} has no module {name}")
        pending.append(by_name[_module_name(name)])
    while pending:
        module = pending.pop()
        if module not in wanted:
            wanted.add(module)
            pending.extend(depends[module])
    dest = root / "lib/modules" / version
    for module in sorted(wanted):
        (dest / module).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / module, dest / module)
        (dest / module).chmod(0o644)
    for index in ("modules.builtin", "modules.order"):
        shutil.copyfile(source / index, dest / index)
    run([str(busybox), "depmod", "-b", str(root), version])
    # depmod writes in directory order: sort for a reproducible image.
    for index in dest.glob("modules.*"):
        if index.name not in ("modules.builtin", "modules.order"):
            lines = sorted(index.read_text().splitlines())
            index.write_text("".join(line + "\n" for line in lines))
    return sorted(wanted)


def _module_name(path: str) -> str:
    return os.path.basename(path).removesuffix(".ko").replace("-", "_")


def copy_tracked(source: Path, root: Path) -> None:
    """Copy a directory of this repo into a tree: directories 0755, files
    0755 when executable in git, else 0644."""
    for path in sorted(source.rglob("*")):
        if "__pycache__" in path.parts:
            continue
        dest = root / path.relative_to(source)
        if path.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            dest.chmod(0o755)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
            dest.chmod(0o755 if os.access(path, os.X_OK) else 0o644)


def make_dirs(root: Path, modes: dict[str, int]) -> None:
    for rel, mode in modes.items():
        (root / rel).mkdir(parents=True, exist_ok=True)
        (root / rel).chmod(mode)


def make_symlinks(root: Path, links: dict[str, str]) -> None:
    for rel, target in links.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        if not (root / rel).is_symlink():
            os.symlink(target, root / rel)
