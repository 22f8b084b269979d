"""stackcore.fileio: a file is either its old content or its new one, never half of one, and no
temp file is left behind."""

import os
import stat

import pytest
from stackcore.fileio import atomic_path, write_atomic


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def names(directory):
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("data, expected", [
    (b"\x00\xffbytes\n", b"\x00\xffbytes\n"),
    ("text é\n", "text é\n".encode()),
    ("", b""),
], ids=["bytes", "str-as-utf8", "empty"])
def test_write_atomic_writes_bytes_or_str(tmp_path, data, expected):
    target = tmp_path / "f"
    write_atomic(str(target), data)
    assert target.read_bytes() == expected
    assert names(tmp_path) == ["f"]


@pytest.mark.parametrize("wanted", [0o600, 0o640, 0o644, 0o755])
def test_write_atomic_applies_mode_whatever_the_umask(tmp_path, wanted):
    target = tmp_path / "f"
    old = os.umask(0o077)
    try:
        write_atomic(str(target), "x", wanted)
    finally:
        os.umask(old)
    assert mode(target) == wanted


def test_default_mode_is_0644(tmp_path):
    write_atomic(str(tmp_path / "f"), "x")
    assert mode(tmp_path / "f") == 0o644


def test_replacing_changes_content_and_mode_and_is_a_new_inode(tmp_path):
    target = tmp_path / "f"
    target.write_text("old")
    os.chmod(target, 0o666)
    inode = os.stat(target).st_ino

    write_atomic(str(target), "new", 0o600)

    assert target.read_text() == "new" and mode(target) == 0o600
    assert os.stat(target).st_ino != inode  # renamed over, not rewritten in place
    assert names(tmp_path) == ["f"]


def test_group_is_applied_when_given(tmp_path):
    gid = os.getgid()
    write_atomic(str(tmp_path / "f"), "x", 0o640, gid=gid)
    assert os.stat(tmp_path / "f").st_gid == gid


def test_relative_path_is_written_in_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_atomic("f", "x")
    assert (tmp_path / "f").read_text() == "x" and names(tmp_path) == ["f"]


def test_temp_file_is_private_while_written_and_next_to_the_target(tmp_path):
    target = tmp_path / "f"
    with atomic_path(str(target), 0o644) as tmp:
        assert os.path.dirname(tmp) == str(tmp_path)
        assert os.path.basename(tmp).startswith(".f.")
        assert mode(tmp) == 0o600
        assert not target.exists()  # nothing at the final name until the writer is done
        with open(tmp, "w") as handle:
            handle.write("done")
    assert target.read_text() == "done" and mode(target) == 0o644
    assert names(tmp_path) == ["f"]


class Boom(Exception):
    pass


@pytest.mark.parametrize("exists", [True, False], ids=["old-file", "no-file"])
def test_writer_error_leaves_no_temp_file_and_the_target_as_it_was(tmp_path, exists):
    target = tmp_path / "f"
    if exists:
        target.write_text("old content")

    with pytest.raises(Boom), atomic_path(str(target)) as tmp:
        with open(tmp, "w") as handle:
            handle.write("half of the new")
        raise Boom

    assert names(tmp_path) == (["f"] if exists else [])
    if exists:
        assert target.read_text() == "old content"


def test_writer_that_removed_its_temp_file_still_raises_its_own_error(tmp_path):
    with pytest.raises(Boom), atomic_path(str(tmp_path / "f")) as tmp:
        os.unlink(tmp)
        raise Boom
    assert names(tmp_path) == []


def test_keyboard_interrupt_cleans_up_too(tmp_path):
    with pytest.raises(KeyboardInterrupt), atomic_path(str(tmp_path / "f")):
        raise KeyboardInterrupt
    assert names(tmp_path) == []


def test_write_atomic_error_keeps_the_old_content(tmp_path):
    target = tmp_path / "f"
    target.write_text("old content")
    with pytest.raises(TypeError):
        write_atomic(str(target), 12345)  # neither bytes nor str: the write itself fails
    assert target.read_text() == "old content"
    assert names(tmp_path) == ["f"]


def test_error_while_finishing_removes_the_temp_file(tmp_path, monkeypatch):
    """A failure after the writer (here the rename) still leaves the old file and no temp."""
    target = tmp_path / "f"
    target.write_text("old content")

    def failing_replace(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="rename failed"):
        write_atomic(str(target), "new content")
    monkeypatch.undo()

    assert target.read_text() == "old content"
    assert names(tmp_path) == ["f"]


def test_missing_directory_is_an_error_not_a_created_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_atomic(str(tmp_path / "missing" / "f"), "x")
    assert names(tmp_path) == []
