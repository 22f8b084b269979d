"""The NoCloud seed: a small ISO (label ``cidata``) holding ``meta-data`` and ``user-data``.

Built in memory with pycdlib, the way ``genisoimage -V cidata -J -r`` lays it out: cloud-init
(and the kernel's iso9660 driver) read the Rock Ridge or Joliet names, so the files appear as
``meta-data`` and ``user-data``. The bytes are a pure function of the inputs (timestamps are
pinned), so a module can compare the file on disk with the one it would write.
"""

import hashlib
import io
import re
import threading
import time as _time
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

from .errors import BackendError, InvalidInput

VOLUME_LABEL = "cidata"
# 2024-01-01T00:00:00Z: every date in the ISO. A fixed date keeps the image reproducible.
FIXED_EPOCH = 1704067200.0
# (ISO 9660 level-1 name, Rock Ridge / Joliet name)
FILES = (("/METADATA.;1", "meta-data"), ("/USERDATA.;1", "user-data"))
# Their scalars win, their lists are appended to ours (e.g. ssh_authorized_keys).
USER_CLOUD_CONFIG_MERGE = "list(append)+dict(recurse_array)+str()"

_PLAIN_SCALAR = re.compile(r"^[A-Za-z0-9/][A-Za-z0-9 ._@+/=:,-]*$")
_YAML_SPECIAL = re.compile(
    r"^(~|null|true|false|yes|no|on|off|y|n|[-+]?(\.inf|\.nan|[0-9][0-9_.:eE+-]*|0[xob].*))$",
    re.IGNORECASE,
)
_pycdlib_lock = threading.Lock()


def yaml_scalar(value):
    """A YAML scalar for ``value``: plain when that is unambiguous (simple parsers in small
    guests read these files too), otherwise double-quoted with YAML escapes."""
    text = str(value)
    if (
        _PLAIN_SCALAR.match(text)
        and not _YAML_SPECIAL.match(text)
        and ": " not in text
        and not text.endswith((":", " "))
    ):
        return text
    return _double_quoted(text)


def _yaml_printable(code):
    # YAML's printable set minus its line breaks (NEL, LS, PS) and the BOM
    return (0x20 <= code <= 0x7E or 0xA0 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD
            or code >= 0x10000) and code not in (0x2028, 0x2029, 0xFEFF)


def _double_quoted(text):
    out = []
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif _yaml_printable(code):
            out.append(ch)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def _clean_keys(ssh_keys):
    keys = []
    for key in ssh_keys or ():
        if not isinstance(key, str) or "\n" in key.strip() or "\r" in key:
            raise InvalidInput("each SSH public key must be a single line of text")
        if key.strip():
            keys.append(key.strip())
    return keys


def _yaml_list(name, items):
    if not items:
        return f"{name}: []\n"
    return f"{name}:\n" + "".join(f"  - {yaml_scalar(item)}\n" for item in items)


def build_meta_data(instance_id, hostname, ssh_keys):
    """NoCloud meta-data (YAML): instance-id, local-hostname and public-keys."""
    return (
        f"instance-id: {yaml_scalar(instance_id)}\n"
        f"local-hostname: {yaml_scalar(hostname)}\n"
        + _yaml_list("public-keys", _clean_keys(ssh_keys))
    )


def cloud_config(hostname, ssh_keys):
    """Our #cloud-config part: the hostname and the authorized keys."""
    return (
        "#cloud-config\n"
        f"hostname: {yaml_scalar(hostname)}\n"
        + _yaml_list("ssh_authorized_keys", _clean_keys(ssh_keys))
    )


def _user_part_type(user_data):
    if user_data.startswith("#!"):
        return "x-shellscript"
    if user_data.startswith("#cloud-config"):
        return "cloud-config"
    raise InvalidInput("user_data must start with '#!' (a script) or '#cloud-config'")


def _text_part(text, subtype, filename):
    part = MIMEText(text, subtype, "us-ascii" if text.isascii() else "utf-8")
    part.add_header("Content-Disposition", "attachment", filename=filename)
    return part


def build_user_data(hostname, ssh_keys, extra=None):
    """The user-data file: our cloud-config alone, or a MIME multipart of ours and ``extra``
    (a script or a cloud-config) so that cloud-init runs both."""
    ours = cloud_config(hostname, ssh_keys)
    if not extra:
        return ours
    subtype = _user_part_type(extra)
    msg = MIMEMultipart("mixed")
    msg.attach(_text_part(ours, "cloud-config", "stackctl.cfg"))
    theirs = _text_part(extra, subtype, "user-data" if subtype == "cloud-config" else "user.sh")
    if subtype == "cloud-config":
        theirs.add_header("Merge-Type", USER_CLOUD_CONFIG_MERGE)
    msg.attach(theirs)
    # A boundary derived from the content (not random) keeps the ISO reproducible.
    digest = hashlib.sha256((ours + "\0" + extra).encode("utf-8")).hexdigest()[:24]
    msg.set_boundary(f"==stackctl-{digest}==")
    return msg.as_string()


class _PinnedTime:
    """Stands in for the ``time`` module inside pycdlib while an ISO is built: every date
    pycdlib asks for is FIXED_EPOCH in UTC, whatever the clock and TZ say."""

    def __getattr__(self, name):
        return getattr(_time, name)

    @staticmethod
    def time():
        return FIXED_EPOCH

    @staticmethod
    def localtime(secs=None):
        return _time.gmtime(FIXED_EPOCH if secs is None else secs)


def _pinned_pycdlib():
    """pycdlib has no way to set its dates; swap the ``time`` its modules see (under a
    lock, restored afterwards)."""
    import importlib

    modules = []
    for name in ("pycdlib.pycdlib", "pycdlib.headervd", "pycdlib.dates", "pycdlib.utils",
                 "pycdlib.udf", "pycdlib.inode", "pycdlib.rockridge", "pycdlib.dr"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        if getattr(mod, "time", None) is _time:
            modules.append(mod)
    return modules


def _import_pycdlib():
    try:
        import pycdlib
    except ImportError as exc:  # modules report this with missing_required_lib first
        raise BackendError("the pycdlib Python library is not installed") from exc
    return pycdlib


def build_seed_iso(instance_id, hostname, ssh_keys, user_data=None):
    """The NoCloud seed ISO for one VM, as bytes (deterministic)."""
    contents = {
        "meta-data": build_meta_data(instance_id, hostname, ssh_keys).encode("utf-8"),
        "user-data": build_user_data(hostname, ssh_keys, user_data).encode("utf-8"),
    }
    pycdlib = _import_pycdlib()
    out = io.BytesIO()
    with _pycdlib_lock:
        patched = _pinned_pycdlib()
        for mod in patched:
            mod.time = _PinnedTime()
        try:
            iso = pycdlib.PyCdlib()
            iso.new(interchange_level=3, vol_ident=VOLUME_LABEL, joliet=3, rock_ridge="1.09")
            for iso_name, name in FILES:
                data = contents[name]
                iso.add_fp(io.BytesIO(data), len(data), iso_name, rr_name=name,
                           joliet_path="/" + name)
            iso.write_fp(out)
            iso.close()
        finally:
            for mod in patched:
                mod.time = _time
    return out.getvalue()


def read_seed_files(iso_bytes):
    """{name: text} of the files in a seed ISO, by their Rock Ridge names (for tests, checks)."""
    pycdlib = _import_pycdlib()
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(iso_bytes))
    try:
        files = {}
        for _iso_name, name in FILES:
            buf = io.BytesIO()
            iso.get_file_from_iso_fp(buf, rr_path="/" + name)
            files[name] = buf.getvalue().decode("utf-8")
        return files
    finally:
        iso.close()
