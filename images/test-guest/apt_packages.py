"""Debian packages for the test guest: resolve the candidate versions with
apt-cache, fetch the .debs into a cache directory with `apt-get download`
(verified against the archive's SHA256) and unpack them with dpkg-deb."""

from __future__ import annotations

import hashlib
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path


class BuildError(Exception):
    """A failure the user can act on; reported as one line by build.py."""


@dataclass(frozen=True)
class Package:
    """One binary package at the version apt would install now."""

    name: str
    version: str
    arch: str
    sha256: str
    size: int

    @property
    def deb_name(self) -> str:
        """The file name `apt-get download` gives it (epoch colon escaped)."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.arch}.deb"


def run(argv: list[str], cwd: Path | None = None) -> str:
    """Run a tool, return its stdout; a failure becomes a BuildError."""
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        last = detail[-1] if detail else f"exit status {proc.returncode}"
        raise BuildError(f"{' '.join(argv[:3])} failed: {last}")
    return proc.stdout


def _stanzas(text: str) -> list[dict[str, str]]:
    records, current = [], {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                records.append(current)
            current = {}
        elif not line[0].isspace() and ":" in line:
            key, _, value = line.partition(":")
            current[key] = value.strip()
    if current:
        records.append(current)
    return records


def show(names: list[str]) -> dict[str, dict[str, str]]:
    """apt-cache's record of the candidate version of each package."""
    proc = subprocess.run(
        ["apt-cache", "show", "--no-all-versions", *names],
        capture_output=True, text=True, check=False,
    )
    found: dict[str, dict[str, str]] = {}
    for record in _stanzas(proc.stdout):
        found.setdefault(record.get("Package", ""), record)
    missing = [name for name in names if name not in found]
    if missing:
        raise BuildError(
            f"apt-cache knows no package {', '.join(missing)} (run apt-get update?)"
        )
    return found


def kernel_dependency(meta: str, record: dict[str, str]) -> str:
    """The versioned linux-image package that a meta-package such as
    linux-image-cloud-amd64 depends on, from its apt-cache record."""
    depends = record.get("Depends", "")
    match = re.search(r"\b(linux-image-\d[^\s,(|]*)", depends)
    if not match:
        raise BuildError(f"{meta} depends on no linux-image package: {depends!r}")
    return match.group(1)


def package_from(name: str, record: dict[str, str]) -> Package:
    """A Package from its apt-cache record."""
    try:
        return Package(name=name, version=record["Version"], arch=record["Architecture"],
                       sha256=record["SHA256"], size=int(record["Size"]))
    except (KeyError, ValueError) as err:
        raise BuildError(f"apt-cache record of {name} lacks {err}") from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(packages: list[Package], cache: Path) -> dict[str, Path]:
    """Make sure each .deb is in `cache` with the archive's checksum;
    download only the missing ones. Returns name -> path."""
    cache.mkdir(parents=True, exist_ok=True)
    paths = {pkg.name: cache / pkg.deb_name for pkg in packages}
    wanted = [
        pkg for pkg in packages
        if not paths[pkg.name].is_file() or sha256_file(paths[pkg.name]) != pkg.sha256
    ]
    if wanted:
        print(f"test-guest: downloading {len(wanted)} package(s) into {cache}", flush=True)
        run(["apt-get", "download", *[f"{pkg.name}={pkg.version}" for pkg in wanted]], cwd=cache)
    for pkg in wanted:
        path = paths[pkg.name]
        if not path.is_file():
            raise BuildError(f"apt-get download left no {path.name} in {cache}")
        if sha256_file(path) != pkg.sha256:
            path.unlink()
            raise BuildError(f"{path.name}: checksum does not match the archive's")
        path.chmod(0o644)
    return paths


def extract(deb: Path, dest: Path) -> None:
    """Unpack a .deb's files (not its maintainer scripts) under dest."""
    dest.mkdir(parents=True, exist_ok=True)
    run(["dpkg-deb", "-x", str(deb), str(dest)])
