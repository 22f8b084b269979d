"""swift.conf and the cluster secrets behind it.

The hash path prefix/suffix decide where every object lives. Generated once, on the
controller, kept in a 0600 file; a node whose swift.conf already carries other values is
never rewritten (that would silently make every object on the cluster unreachable).
"""

import configparser
import io
import json
import os
import re
import secrets

from .errors import Conflict, InvalidInput
from .fileio import write_atomic

MASK = "********"


# ---------------------------------------------------------------- secrets generated once

def load_or_create_secrets(path, names, length=32, check=False):
    """The named random values in the JSON file ``path``; missing ones are generated.

    Returns ``(values, created_names)``. Existing values are never changed.
    """
    for name in names:
        if not isinstance(name, str) or not name.replace("_", "").isalnum():
            raise InvalidInput(f"invalid secret name {name!r}: letters, digits and _ only")
    values = {}
    if os.path.exists(path):
        try:
            with open(path) as handle:
                values = json.load(handle)
        except (OSError, ValueError) as err:
            raise Conflict(f"cannot read the secrets file {path}: {err.__class__.__name__}; "
                           "restore it from a backup instead of deleting it") from None
        if not isinstance(values, dict):
            raise Conflict(f"the secrets file {path} is not a JSON object; restore it from backup")
    created = [name for name in names if name not in values]
    if created and not check:
        values = dict(values, **{name: secrets.token_hex(length // 2) for name in created})
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        write_atomic(path, json.dumps(values, indent=2, sort_keys=True) + "\n", 0o600)
    return values, created


# ---------------------------------------------------------------- swift.conf

def render_swift_conf(prefix, suffix, policies):
    """swift.conf text for the hash values and storage policies (deterministic)."""
    for what, value in (("hash_path_prefix", prefix), ("hash_path_suffix", suffix)):
        if not isinstance(value, str) or len(value) < 16 or not value.isalnum():
            raise InvalidInput(f"{what} must be at least 16 letters or digits")
    lines = ["# Managed by stackctl (stack_swift_conf). The hash values must never change.",
             "[swift-hash]", f"swift_hash_path_prefix = {prefix}",
             f"swift_hash_path_suffix = {suffix}", ""]
    defaults = [p for p in policies if p.get("default")]
    if len(defaults) != 1:
        raise InvalidInput("exactly one storage policy must be the default")
    indexes = [int(p["index"]) for p in policies]
    if len(set(indexes)) != len(indexes):
        raise InvalidInput("two storage policies have the same index")
    for policy in sorted(policies, key=lambda p: int(p["index"])):
        lines.append(f"[storage-policy:{int(policy['index'])}]")
        lines.append(f"name = {policy['name']}")
        if policy.get("policy_type", "replication") != "replication":
            lines.append(f"policy_type = {policy['policy_type']}")
        if policy.get("default"):
            lines.append("default = yes")
        lines.append("")
    return "\n".join(lines)


def read_hash(text):
    """(prefix, suffix) from a swift.conf text; missing values are ''."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_file(io.StringIO(text))
    except configparser.Error as err:
        raise Conflict(f"cannot parse the existing swift.conf: {str(err).splitlines()[0]}; "
                       "fix it by hand (its hash values must be kept)") from None
    if not parser.has_section("swift-hash"):
        return "", ""
    return (parser.get("swift-hash", "swift_hash_path_prefix", fallback="").strip(),
            parser.get("swift-hash", "swift_hash_path_suffix", fallback="").strip())


def plan_swift_conf(current_text, prefix, suffix, policies, allow_hash_change=False, path=""):
    """Pure: ``(new_text or None, diff)``; raises Conflict when the hash would change."""
    new_text = render_swift_conf(prefix, suffix, policies)
    if current_text is not None:
        have = read_hash(current_text)
        if any(have) and have != (prefix, suffix) and not allow_hash_change:
            raise Conflict(
                f"{path or 'swift.conf'} already has a different hash path prefix/suffix; "
                "refusing to replace it: every stored object would become unreachable. Restore "
                "the controller's secrets file from a backup (or, on an empty cluster only, set "
                "allow_hash_change)")
    if current_text == new_text:
        return None, {}
    diff = {"before": mask(current_text or ""), "after": mask(new_text, current_text),
            "before_header": path, "after_header": path}
    return new_text, diff


_HASH_LINE = re.compile(r"^\s*(swift_hash_path_(?:prefix|suffix))\s*[=:]", re.IGNORECASE)


def mask(text, reference=None):
    """The text with the hash values replaced, for diffs and logs. With ``reference`` (the
    other side of a diff), values that differ from it are marked, so a hash change shows."""
    theirs = read_hash(reference) if reference else None
    mine = read_hash(text) if reference else None
    out = []
    for line in text.splitlines(keepends=True):
        match = _HASH_LINE.match(line)
        if match:
            key = match.group(1).lower()
            which = 0 if key.endswith("prefix") else 1
            changed = theirs is not None and theirs[which] and mine[which] != theirs[which]
            line = f"{key} = {MASK}{' (changed)' if changed else ''}\n"
        out.append(line)
    return "".join(out)
