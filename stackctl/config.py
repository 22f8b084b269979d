"""Controller configuration: command-line flags > environment > ``<home>/stackctl.toml`` > defaults.

Environment variables (all optional):

- ``STACKCTL_HOME``: state directory (default ``~/.local/share/stackctl``, created 0700)
- ``STACKCTL_DB_URL``: SQLAlchemy URL (default ``sqlite:///<home>/stackctl.db``)
- ``STACKCTL_INVENTORY``: Ansible inventory (default ``<project>/inventories/aio/hosts.yml``)
- ``STACKCTL_TENANT``: default for ``--tenant``
- ``STACKCTL_CPU_ALLOCATION_RATIO``, ``STACKCTL_RAM_ALLOCATION_RATIO``,
  ``STACKCTL_DISK_ALLOCATION_RATIO``: overcommit (Nova's defaults 16.0, 1.5, 1.0)
- ``STACKCTL_WEIGHER``: ``spread`` (most free RAM first) or ``pack`` (least free RAM first)
- ``STACKCTL_STORAGE_URL``: the Swift proxy (default: the first host of the inventory's
  ``proxies`` group, at its ``swift_proxy_ip``/``swift_ip`` and ``swift_proxy_port``)
- ``STACKCTL_SWIFT_SECRETS``: the cluster secrets the storage roles generate
  (default ``/etc/stackctl/secrets/swift.json``)
- ``STACKCTL_SECRETS_DIR``: the controller's secrets directory, saved whole by ``stackctl backup``
  (default ``/etc/stackctl/secrets``)
- ``STACKCTL_SWIFT_BUILDERS``: the ring builders, one directory per cluster, for backup and
  restore (default ``/etc/stackctl/swift``; the roles' ``swift_builder_dir`` is per inventory)
- ``STACKCTL_KEEP_RUNS=1``: keep ansible-runner private dirs under ``<home>/run/`` for debugging
- ``STACKCTL_DEBUG=1``: show tracebacks for errors
- ``STACKCTL_CRASH_AT=<step>``: test-only fault injection, see ``stackctl.journal``

The TOML file uses the same names in lower case without the prefix, e.g.::

    db_url = "postgresql+psycopg://stackctl@db/stackctl"
    tenant = "demo"
    ram_allocation_ratio = 1.0
    weigher = "pack"
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from stackcore.errors import InvalidInput

WEIGHERS = ("spread", "pack")
OUTPUTS = ("table", "json", "yaml")

_DEFAULT_HOME = "~/.local/share/stackctl"
_RATIOS = {
    "cpu_allocation_ratio": 16.0,
    "ram_allocation_ratio": 1.5,
    "disk_allocation_ratio": 1.0,
}


def project_root() -> Path:
    """The repository (playbooks, library/, ansible.cfg) this package belongs to."""
    return Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Config:
    """Everything the controller needs to know about where things are and how to place VMs."""

    home: Path
    db_url: str
    inventory: Path
    project: Path = field(default_factory=project_root)
    tenant: str | None = None
    cpu_allocation_ratio: float = _RATIOS["cpu_allocation_ratio"]
    ram_allocation_ratio: float = _RATIOS["ram_allocation_ratio"]
    disk_allocation_ratio: float = _RATIOS["disk_allocation_ratio"]
    weigher: str = "spread"
    keep_runs: bool = False
    storage_url: str | None = None
    swift_secrets: Path = Path("/etc/stackctl/secrets/swift.json")
    secrets_dir: Path = Path("/etc/stackctl/secrets")
    swift_builders: Path = Path("/etc/stackctl/swift")

    @property
    def images_dir(self) -> Path:
        return self.home / "images"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def ansible_cfg(self) -> Path:
        return self.project / "ansible.cfg"

    def with_overrides(self, **changes: object) -> Config:
        """A copy with the given fields replaced; ``None`` values are ignored."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def load(environ: dict[str, str] | None = None) -> Config:
    """Build the configuration from the environment and the optional TOML file."""
    env = os.environ if environ is None else environ
    home = Path(env.get("STACKCTL_HOME") or _DEFAULT_HOME).expanduser().absolute()
    ensure_private_dir(home)
    file_values = _read_toml(home / "stackctl.toml")

    def pick(name: str) -> str | None:
        value = env.get(f"STACKCTL_{name.upper()}")
        if value in (None, ""):
            value = file_values.get(name)
        return None if value is None else str(value)

    project = project_root()
    ratios = {name: _ratio(name, pick(name), default) for name, default in _RATIOS.items()}
    weigher = pick("weigher") or "spread"
    if weigher not in WEIGHERS:
        raise InvalidInput(f"invalid weigher {weigher!r}: use one of {', '.join(WEIGHERS)}")
    return Config(
        home=home,
        db_url=pick("db_url") or f"sqlite:///{home / 'stackctl.db'}",
        inventory=Path(pick("inventory") or project / "inventories/aio/hosts.yml")
        .expanduser().absolute(),
        project=project,
        tenant=pick("tenant") or None,
        weigher=weigher,
        keep_runs=env.get("STACKCTL_KEEP_RUNS", "") not in ("", "0"),
        storage_url=(pick("storage_url") or "").rstrip("/") or None,
        swift_secrets=Path(pick("swift_secrets") or "/etc/stackctl/secrets/swift.json"),
        secrets_dir=Path(pick("secrets_dir") or "/etc/stackctl/secrets"),
        swift_builders=Path(pick("swift_builders") or "/etc/stackctl/swift"),
        **ratios,
    )


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed and make it 0700: it holds user data and secrets."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o777 != 0o700:
        path.chmod(0o700)
    return path


def _read_toml(path: Path) -> dict[str, object]:
    if not path.exists():
        return {}
    import tomllib

    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}") from exc


def _ratio(name: str, raw: str | None, default: float) -> float:
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(f"invalid {name} {raw!r}: expected a number") from None
    if not 0 < value <= 1000:
        raise InvalidInput(f"invalid {name} {value}: must be greater than 0")
    return value
