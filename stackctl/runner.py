"""All host work goes through here: ansible-runner running our modules, never virsh or ssh.

Each call writes a one-play playbook into a private directory ``<home>/run/<label>-<n>-*/``
(0700; the module arguments live in that file, never on a command line, because user_data may
hold secrets), runs it with ansible-runner against the configured inventory, streams the
task events to a progress callback and returns the per-task results (``res``). A failed or
unreachable task becomes one ``BackendError`` line carrying the module's ``msg``. The directory
is deleted afterwards unless ``STACKCTL_KEEP_RUNS=1``.

String arguments are written so that Ansible never templates or retypes user input (a
user_data containing ``{{ ... }}`` stays literal; see ``render_playbook``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from stackcore.errors import BackendError, HostUnreachable, InvalidInput

from stackctl.config import Config, ensure_private_dir

_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")


@dataclass(frozen=True)
class Task:
    """One module call: ``module`` (e.g. ``stack_vm``) with ``args``; ``name`` is shown."""

    module: str
    args: Mapping[str, Any] = field(default_factory=dict)
    name: str = ""

    @property
    def title(self) -> str:
        return self.name or self.module


@dataclass(frozen=True)
class TaskEvent:
    """A task started or ended on a host: kind is start|ok|changed|failed|unreachable|skipped."""

    kind: str
    host: str
    task: str
    msg: str = ""


Progress = Callable[[TaskEvent], None]


class Runner(Protocol):
    """What workflows need from the host layer (``AnsibleRunner``; recovery tests use a double)."""

    def run_tasks(self, host: str, tasks: Sequence[Task], progress: Progress | None = None,
                  label: str = "adhoc") -> list[dict]: ...


@dataclass
class HostOutcome:
    """Results of one host in a multi-host run: task results, or why it failed."""

    results: list[dict] = field(default_factory=list)
    error: str | None = None


@dataclass
class _Collector:
    """Turns ansible-runner events into per-host results and progress callbacks."""

    progress: Progress | None
    results: dict[str, list[dict]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    unreachable: set[str] = field(default_factory=set)
    unmatched: bool = False
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    output: list[str] = field(default_factory=list)

    def __call__(self, event: dict) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        host, task = data.get("host", ""), data.get("task", "")
        if kind == "runner_on_start":
            self._tell("start", host, task)
        elif kind in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable",
                      "runner_on_skipped"):
            res = data.get("res") or {}
            self.results.setdefault(host, []).append(res)
            short = {"runner_on_ok": "changed" if res.get("changed") else "ok",
                     "runner_on_failed": "failed", "runner_on_unreachable": "unreachable",
                     "runner_on_skipped": "skipped"}[kind]
            msg = ""
            if short == "unreachable":
                self.unreachable.add(host)
            if short in ("failed", "unreachable") and not data.get("ignore_errors"):
                msg = failure_message(res)
                self.errors.setdefault(host, f"{task} on {host}: {msg}" if task else msg)
            self._tell(short, host, task, msg)
        elif kind == "playbook_on_no_hosts_matched":
            self.unmatched = True
        elif kind == "playbook_on_stats":
            self.stats = {key: data.get(key) or {} for key in
                          ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored")}
        elif event.get("stdout") and kind in ("verbose", "error", "warning", ""):
            self.output.append(event["stdout"])
        return False  # nothing is written to disk: results may hold secrets

    def _tell(self, kind: str, host: str, task: str, msg: str = "") -> None:
        if self.progress is not None:
            self.progress(TaskEvent(kind, host, task, msg))

    def last_output_line(self) -> str:
        lines = [ln.strip() for chunk in self.output for ln in chunk.splitlines() if ln.strip()]
        errors = [ln for ln in lines if "error" in ln.lower()]
        return _strip_ansi((errors or lines or ["no output"])[-1])


def failure_message(res: Mapping[str, Any]) -> str:
    """One line from a failed module result: its ``msg``, or the end of the module's stderr."""
    msg = str(res.get("msg") or "").strip()
    if not msg or msg.startswith("MODULE FAILURE"):
        stderr = str(res.get("module_stderr") or res.get("stderr") or "").strip()
        lines = [ln for ln in stderr.splitlines() if ln.strip()]
        if lines:
            msg = lines[-1].strip()
    return (msg.splitlines() or ["failed without a message"])[0]


class AnsibleRunner:
    """Runs tasks on inventory hosts through ``ansible_runner.run`` (imported lazily)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._counter = itertools.count(1)
        self._inventory_data: dict | None = None

    # -- the interface workflows use -----------------------------------------------------

    def run_tasks(self, host: str, tasks: Sequence[Task], progress: Progress | None = None,
                  label: str = "adhoc") -> list[dict]:
        """Run ``tasks`` in order on ``host``; the results, or BackendError on any failure."""
        collected = self._run_play([host], tasks, progress, label)
        if host in collected.errors:
            error = HostUnreachable if host in collected.unreachable else BackendError
            raise error(collected.errors[host])
        results = collected.results.get(host, [])
        if collected.unmatched or (not results and tasks):
            if collected.unmatched:
                raise BackendError(f"host {host!r} is not in the inventory {self.config.inventory}")
            raise BackendError(f"ansible run on {host} failed: {collected.last_output_line()}")
        return results

    def run_each(self, hosts: Sequence[str], tasks: Sequence[Task],
                 progress: Progress | None = None, label: str = "adhoc") -> dict[str, HostOutcome]:
        """Run ``tasks`` on several hosts at once (Ansible's forks); one outcome per host."""
        if not hosts:
            return {}
        collected = self._run_play(hosts, tasks, progress, label)
        outcomes = {}
        for host in hosts:
            results = collected.results.get(host, [])
            error = collected.errors.get(host)
            if error is None and len(results) < len(tasks):
                error = f"ansible run on {host} did not complete: {collected.last_output_line()}"
            outcomes[host] = HostOutcome(results, error)
        return outcomes

    def inventory_hosts(self, group: str) -> dict[str, str]:
        """``{host: address}`` for the hosts of ``group`` (children included) in the inventory."""
        return {name: str(hv.get("ansible_host", name))
                for name, hv in self.inventory_hostvars(group).items()}

    def inventory_hostvars(self, group: str) -> dict[str, dict]:
        """``{host: inventory variables}`` for the hosts of ``group`` (children included)."""
        out = self._inventory()
        hostvars = out.get("_meta", {}).get("hostvars", {})
        return {name: dict(hostvars.get(name, {})) for name in sorted(_group_hosts(out, group))}

    def _inventory(self) -> dict:
        """``ansible-inventory --list``, cached per invocation and, for a static inventory, on
        disk under the home until one of its files changes (ansible-inventory costs ~0.7 s)."""
        if self._inventory_data is not None:
            return self._inventory_data
        self._check_inventory()
        cache = InventoryCache(self.config.inventory, self.config.home / "cache")
        out = cache.load()
        if out is None:
            out = self._list_inventory()
            cache.save(out)
        self._inventory_data = out
        return out

    def _list_inventory(self) -> dict:
        ansible_runner = _import_ansible_runner()
        with self._private_dir("inventory") as private:
            out, err, rc = ansible_runner.run_command(
                executable_cmd=ansible_bin("ansible-inventory"),
                cmdline_args=["--list", "-i", str(self.config.inventory)],
                private_data_dir=str(private), envvars=self.envvars(), quiet=True,
                runner_mode="subprocess")
        try:
            out = json.loads(out) if rc == 0 else None
        except ValueError:
            out = None
        if not isinstance(out, dict):
            line = (_strip_ansi(str(err or out or "")).strip().splitlines() or ["no output"])[-1]
            raise BackendError(f"cannot read the inventory {self.config.inventory}: {line}")
        return out

    def run_playbook(self, playbook: Path, on_event: Callable[[dict], None], *,
                     check: bool = False, diff: bool = False, limit: str | None = None,
                     tags: str | None = None, extravars: Mapping[str, Any] | None = None,
                     ) -> tuple[str, dict[str, dict[str, int]]]:
        """Run one of the project's playbooks (``deploy``); returns (status, recap stats).

        ``extravars`` are Ansible's extra vars (-e), written into the private directory."""
        ansible_runner = _import_ansible_runner()
        self._check_inventory()
        collector = _Collector(progress=None)

        def handler(event: dict) -> bool:
            collector(event)
            on_event(event)
            return False

        cmdline = " ".join(flag for flag, on in (("--check", check), ("--diff", diff)) if on)
        with self._private_dir("deploy") as private:
            result = ansible_runner.run(
                private_data_dir=str(private), project_dir=str(self.config.project),
                playbook=str(playbook), inventory=str(self.config.inventory),
                envvars=self.envvars(), cmdline=cmdline or None, limit=limit, tags=tags,
                extravars=dict(extravars) if extravars else None, quiet=True,
                event_handler=handler)
        if result.status != "successful" and not collector.stats:
            raise BackendError(f"deploy did not run: {collector.last_output_line()}")
        return result.status, collector.stats

    # -- machinery -------------------------------------------------------------------------

    def envvars(self) -> dict[str, str]:
        """Environment for ansible-playbook: our config, modules and the venv's binaries."""
        project = self.config.project
        venv_bin = str(Path(sys.executable).parent)
        return {
            "ANSIBLE_CONFIG": str(project / "ansible.cfg"),
            "ANSIBLE_LIBRARY": str(project / "library"),
            "ANSIBLE_MODULE_UTILS": str(project / "plugins" / "module_utils"),
            "ANSIBLE_ROLES_PATH": str(project / "roles"),
            "ANSIBLE_NOCOLOR": "1",
            "PATH": os.pathsep.join([venv_bin, os.environ.get("PATH", "/usr/bin:/bin")]),
        }

    def _run_play(self, hosts: Sequence[str], tasks: Sequence[Task], progress: Progress | None,
                  label: str) -> _Collector:
        for host in hosts:
            if not _HOST.match(host):
                raise InvalidInput(f"invalid host name {host!r}")
        ansible_runner = _import_ansible_runner()
        self._check_inventory()
        collector = _Collector(progress)
        with self._private_dir(label) as private:
            project = private / "project"
            project.mkdir(mode=0o700)
            playbook = project / "play.yml"
            fd = os.open(playbook, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(render_playbook(",".join(hosts), tasks))
            try:
                ansible_runner.run(
                    private_data_dir=str(private), playbook="play.yml",
                    inventory=str(self.config.inventory), envvars=self.envvars(),
                    quiet=True, event_handler=collector)
            except Exception as exc:  # ansible-runner's own failures (config, spawn)
                raise BackendError(f"ansible-runner failed: {_one_line(exc)}") from exc
        return collector

    def _private_dir(self, label: str):
        return _PrivateDir(self.config, f"{label}-{next(self._counter)}-")

    def _check_inventory(self) -> None:
        if not self.config.inventory.is_file():
            raise BackendError(f"inventory {self.config.inventory} does not exist "
                               "(set STACKCTL_INVENTORY or --inventory)")


class _PrivateDir:
    """A fresh 0700 directory under ``<home>/run``, removed on exit unless keep_runs."""

    def __init__(self, config: Config, prefix: str) -> None:
        self.config = config
        self.prefix = prefix
        self.path: Path | None = None

    def __enter__(self) -> Path:
        root = ensure_private_dir(self.config.run_dir)
        self.path = Path(tempfile.mkdtemp(prefix=self.prefix, dir=root))
        return self.path

    def __exit__(self, *_exc) -> None:
        if self.path is not None and not self.config.keep_runs:
            shutil.rmtree(self.path, ignore_errors=True)


def render_playbook(hosts: str, tasks: Sequence[Task]) -> str:
    """The YAML of a one-play playbook running ``tasks`` on ``hosts``.

    Every string argument is double-quoted, so YAML never turns it into a number, a boolean
    or null (``0755``, ``yes``, a MAC like ``52:54:00:12:34:56`` which is base-60 to YAML 1.1).
    Strings that contain Jinja markers are also tagged ``!unsafe`` so that Ansible never
    templates them. Only those: ansible-core 2.19 re-resolves an ``!unsafe`` scalar as if it
    were plain, quotes or not, so the tag on ``"0755"`` would yield the integer 493.
    """
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(_Quoted, lambda d, v: d.represent_scalar(
        "tag:yaml.org,2002:str", str(v), style='"'))
    Dumper.add_representer(_Unsafe, lambda d, v: d.represent_scalar("!unsafe", str(v),
                                                                    style='"'))
    play = {
        "name": "stackctl",
        "hosts": hosts,
        "gather_facts": False,
        "tasks": [{"name": _literal(t.title), t.module: _literal(dict(t.args))} for t in tasks],
    }
    return yaml.dump([play], Dumper=Dumper, sort_keys=False, default_flow_style=False)


@dataclass(frozen=True)
class HostVar:
    """An argument taken from the host's inventory variables on the host (e.g. the
    inventory's ``hypervisor_virt_type``). Written by the controller, never from user input:
    the name must be an identifier and the default a plain word."""

    name: str
    default: str
    suffix: str = ""  # appended to the value, e.g. a file name under a directory variable

    def __post_init__(self) -> None:
        plain = r"[A-Za-z0-9_./-]*"
        if not self.name.isidentifier() or not re.fullmatch(plain, self.default) \
                or not re.fullmatch(plain, self.suffix):
            raise InvalidInput(f"bad host variable reference {self.name!r}")

    def jinja(self) -> str:
        return "{{ " + f"{self.name} | default('{self.default}')" + " }}" + self.suffix


class InventoryCache:
    """``ansible-inventory --list`` output kept in ``<home>/cache`` (0700), valid while no file
    of a static inventory changed: the inventory file and its directory's ``host_vars`` and
    ``group_vars`` (name, size and mtime of each). Inventory plugins and scripts (their answer
    depends on more than files) are never cached."""

    STATIC = (".yml", ".yaml", ".ini", "")

    def __init__(self, inventory: Path, directory: Path) -> None:
        self.inventory = inventory
        self.path = directory / ("inventory-" + hashlib.sha256(
            str(inventory).encode()).hexdigest()[:16] + ".json")

    def stamp(self) -> list | None:
        if self.inventory.suffix not in self.STATIC or not self.inventory.is_file() \
                or os.access(self.inventory, os.X_OK):
            return None
        try:
            if b"plugin:" in self.inventory.read_bytes()[:4096]:
                return None
            files = [self.inventory]
            for sub in ("host_vars", "group_vars"):
                folder = self.inventory.parent / sub
                if folder.is_dir():
                    files += sorted(p for p in folder.rglob("*") if p.is_file())
            return [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
        except OSError:
            return None

    def load(self) -> dict | None:
        stamp = self.stamp()
        if stamp is None:
            return None
        try:
            with self.path.open() as handle:
                cached = json.load(handle)
        except (OSError, ValueError):
            return None
        return cached.get("inventory") if cached.get("stamp") == stamp else None

    def save(self, data: dict) -> None:
        stamp = self.stamp()
        if stamp is None:
            return
        try:
            ensure_private_dir(self.path.parent)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump({"stamp": stamp, "inventory": data}, handle)
            os.replace(tmp, self.path)
        except OSError:
            pass  # a cache that cannot be written only costs time


class _Quoted(str):
    """A string argument, always written double-quoted."""


class _Unsafe(str):
    """A string Ansible must not template (written with the ``!unsafe`` tag)."""


_JINJA_MARKERS = ("{{", "{%", "{#")


def _literal(value: Any) -> Any:
    if isinstance(value, HostVar):
        return _Quoted(value.jinja())
    if isinstance(value, str):
        return (_Unsafe if any(m in value for m in _JINJA_MARKERS) else _Quoted)(value)
    if isinstance(value, Mapping):
        return {k: _literal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_literal(v) for v in value]
    return value


def _group_hosts(inventory: dict, group: str, seen: set[str] | None = None) -> set[str]:
    seen = set() if seen is None else seen
    if group in seen:
        return set()
    seen.add(group)
    node = inventory.get(group) or {}
    hosts = set(node.get("hosts") or [])
    for child in node.get("children") or []:
        hosts |= _group_hosts(inventory, child, seen)
    return hosts


def ansible_bin(name: str) -> str:
    """An Ansible command from the environment stackctl runs in, else from PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


def _import_ansible_runner():
    try:
        import ansible_runner
    except ImportError as exc:
        raise BackendError("ansible-runner is not installed in this environment") from exc
    return ansible_runner


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _one_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
