"""stackcore.swift_conf: the secrets file (created once, never rewritten), swift.conf rendering,
and the plan that refuses to change a node's hash path prefix/suffix (tables)."""

import json
import os
import stat

import pytest
from stackcore import swift_conf
from stackcore.errors import Conflict, InvalidInput

PREFIX = "a" * 8 + "0123456789abcdef"
SUFFIX = "b" * 8 + "fedcba9876543210"
OTHER = "c" * 24
GOLD = [{"index": 0, "name": "gold", "default": True}]
TWO = [{"index": 1, "name": "silver"}, {"index": 0, "name": "gold", "default": True}]


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


# --- secrets generated once ----------------------------------------------------------------------


def test_secrets_file_is_created_0600_in_a_0700_directory(tmp_path):
    path = tmp_path / "secrets" / "swift.json"

    values, created = swift_conf.load_or_create_secrets(str(path), ["prefix", "suffix"])

    assert created == ["prefix", "suffix"]
    assert set(values) == {"prefix", "suffix"}
    assert all(len(v) == 32 and int(v, 16) >= 0 for v in values.values())
    assert values["prefix"] != values["suffix"]
    assert json.loads(path.read_text()) == values
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["swift.json"]  # no temp file left


def test_length_sets_the_number_of_hex_characters(tmp_path):
    values, _ = swift_conf.load_or_create_secrets(str(tmp_path / "s.json"), ["key"], length=64)
    assert len(values["key"]) == 64


def test_only_missing_names_are_generated_and_existing_values_never_change(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"prefix": "kept", "unlisted": "also kept"}))

    values, created = swift_conf.load_or_create_secrets(str(path), ["prefix", "suffix"])

    assert created == ["suffix"]
    assert values["prefix"] == "kept" and values["unlisted"] == "also kept"
    assert json.loads(path.read_text()) == values


def test_second_call_generates_nothing_and_leaves_the_file_alone(tmp_path):
    path = tmp_path / "s.json"
    first, _ = swift_conf.load_or_create_secrets(str(path), ["prefix", "suffix"])
    before = (path.read_bytes(), os.stat(path).st_mtime_ns, os.stat(path).st_ino)

    again, created = swift_conf.load_or_create_secrets(str(path), ["prefix", "suffix"])

    assert created == [] and again == first
    assert (path.read_bytes(), os.stat(path).st_mtime_ns, os.stat(path).st_ino) == before


def test_check_mode_reports_the_names_and_writes_nothing(tmp_path):
    path = tmp_path / "secrets" / "s.json"

    values, created = swift_conf.load_or_create_secrets(str(path), ["prefix"], check=True)

    assert created == ["prefix"] and values == {}
    assert not path.parent.exists()


def test_check_mode_on_an_existing_file_leaves_it_alone(tmp_path):
    path = tmp_path / "s.json"
    path.write_text('{"prefix": "kept"}')

    values, created = swift_conf.load_or_create_secrets(str(path), ["prefix", "new"], check=True)

    assert created == ["new"] and values == {"prefix": "kept"}
    assert path.read_text() == '{"prefix": "kept"}'


@pytest.mark.parametrize("text", ["{not json", "", '["a list"]', '"a string"'],
                         ids=["malformed", "empty", "list", "string"])
def test_unreadable_secrets_file_is_a_conflict_and_is_left_untouched(tmp_path, text):
    path = tmp_path / "s.json"
    path.write_text(text)

    with pytest.raises(Conflict, match="restore it from") as err:
        swift_conf.load_or_create_secrets(str(path), ["prefix"])

    assert "\n" not in str(err.value) and str(path) in str(err.value)
    assert path.read_text() == text
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


@pytest.mark.parametrize("name", ["", "_", "a-b", "a b", "a/b", "../x", 7, None])
def test_invalid_secret_names_are_refused_before_anything_is_read(tmp_path, name):
    path = tmp_path / "s.json"
    with pytest.raises(InvalidInput, match="invalid secret name"):
        swift_conf.load_or_create_secrets(str(path), ["ok", name])
    assert not path.exists()


# --- render_swift_conf and read_hash --------------------------------------------------------------


def test_render_is_deterministic_and_sorted_by_policy_index():
    text = swift_conf.render_swift_conf(PREFIX, SUFFIX, TWO)
    assert text == swift_conf.render_swift_conf(PREFIX, SUFFIX, list(reversed(TWO)))
    assert text.index("[storage-policy:0]") < text.index("[storage-policy:1]")
    assert f"swift_hash_path_prefix = {PREFIX}\n" in text
    assert f"swift_hash_path_suffix = {SUFFIX}\n" in text
    assert text.startswith("# Managed by stackctl")


def test_render_writes_what_swift_reads():
    text = swift_conf.render_swift_conf(PREFIX, SUFFIX, [
        {"index": 0, "name": "gold"},
        {"index": "2", "name": "cold", "policy_type": "erasure_coding", "default": True},
        {"index": 1, "name": "silver", "policy_type": "replication"}])
    assert text.endswith(
        "[storage-policy:0]\nname = gold\n\n"
        "[storage-policy:1]\nname = silver\n\n"
        "[storage-policy:2]\nname = cold\npolicy_type = erasure_coding\ndefault = yes\n")
    assert swift_conf.read_hash(text) == (PREFIX, SUFFIX)


@pytest.mark.parametrize("policies", [
    [{"index": 0, "name": "gold"}],
    [{"index": 0, "name": "gold", "default": True}, {"index": 1, "name": "s", "default": True}],
    [],
], ids=["no-default", "two-defaults", "no-policy"])
def test_exactly_one_default_policy(policies):
    with pytest.raises(InvalidInput, match="exactly one storage policy must be the default"):
        swift_conf.render_swift_conf(PREFIX, SUFFIX, policies)


@pytest.mark.parametrize("prefix, suffix, what", [
    ("short", SUFFIX, "hash_path_prefix"),
    ("x" * 15, SUFFIX, "hash_path_prefix"),
    (PREFIX, "", "hash_path_suffix"),
    (PREFIX, "has-a-dash-0123456789", "hash_path_suffix"),
    (PREFIX, "x" * 16 + "\n[swift-hash]", "hash_path_suffix"),
    (None, SUFFIX, "hash_path_prefix"),
])
def test_short_or_invalid_hash_values_are_refused(prefix, suffix, what):
    with pytest.raises(InvalidInput, match=f"{what} must be at least 16"):
        swift_conf.render_swift_conf(prefix, suffix, GOLD)


def test_sixteen_characters_are_enough():
    swift_conf.render_swift_conf("x" * 16, "y" * 16, GOLD)


@pytest.mark.parametrize("text, expected", [
    (f"[swift-hash]\nswift_hash_path_prefix = {PREFIX}\nswift_hash_path_suffix = {SUFFIX}\n",
     (PREFIX, SUFFIX)),
    (f"[swift-hash]\nswift_hash_path_suffix={SUFFIX}\n", ("", SUFFIX)),
    (f"[swift-hash]\nswift_hash_path_prefix: {PREFIX}\n", (PREFIX, "")),
    ("[storage-policy:0]\nname = gold\n", ("", "")),
    ("", ("", "")),
    ("# only a comment\n", ("", "")),
], ids=["both", "suffix-only", "colon-syntax", "no-section", "empty", "comment"])
def test_read_hash(text, expected):
    assert swift_conf.read_hash(text) == expected


# --- plan_swift_conf (table) ----------------------------------------------------------------------


RENDERED = swift_conf.render_swift_conf(PREFIX, SUFFIX, GOLD)
NO_HASH = "[storage-policy:0]\nname = gold\ndefault = yes\n"


@pytest.mark.parametrize("current, policies, allow, writes", [
    (None, GOLD, False, True),
    (RENDERED, GOLD, False, False),
    (RENDERED, TWO, False, True),
    (RENDERED.replace("# Managed", "# Edited by hand"), GOLD, False, True),
    (NO_HASH, GOLD, False, True),
    (RENDERED.replace(PREFIX, OTHER), GOLD, True, True),
], ids=["no-file", "same", "other-policies", "hand-edited", "no-hash-yet",
        "hash-change-allowed"])
def test_plan_swift_conf(current, policies, allow, writes):
    text, diff = swift_conf.plan_swift_conf(current, PREFIX, SUFFIX, policies,
                                            allow_hash_change=allow, path="/etc/swift/swift.conf")
    if writes:
        assert text == swift_conf.render_swift_conf(PREFIX, SUFFIX, policies)
        assert diff["before_header"] == diff["after_header"] == "/etc/swift/swift.conf"
    else:
        assert (text, diff) == (None, {})


@pytest.mark.parametrize("current", [
    RENDERED.replace(PREFIX, OTHER),
    RENDERED.replace(SUFFIX, OTHER),
    f"[swift-hash]\nswift_hash_path_prefix = {PREFIX}\n",
], ids=["other-prefix", "other-suffix", "suffix-missing"])
def test_a_different_hash_is_a_conflict(current):
    with pytest.raises(Conflict, match="refusing to replace it") as err:
        swift_conf.plan_swift_conf(current, PREFIX, SUFFIX, GOLD, path="/x/swift.conf")
    message = str(err.value)
    assert "\n" not in message and message.startswith("/x/swift.conf already has")
    assert "allow_hash_change" in message
    assert PREFIX not in message and SUFFIX not in message and OTHER not in message


def test_refusal_comes_before_policies_are_compared():
    with pytest.raises(Conflict):
        swift_conf.plan_swift_conf(RENDERED.replace(SUFFIX, OTHER), PREFIX, SUFFIX, TWO)


@pytest.mark.parametrize("current", [None, RENDERED, RENDERED.replace(PREFIX, OTHER)],
                         ids=["new-file", "policy-change", "hash-change"])
def test_diff_never_shows_the_hash_values(current):
    _, diff = swift_conf.plan_swift_conf(current, PREFIX, SUFFIX, TWO, allow_hash_change=True)
    shown = diff["before"] + diff["after"]
    for secret in (PREFIX, SUFFIX, OTHER):
        assert secret not in shown
    changed = " (changed)" if current == RENDERED.replace(PREFIX, OTHER) else ""
    assert f"swift_hash_path_prefix = {swift_conf.MASK}{changed}\n" in diff["after"]
    assert f"swift_hash_path_suffix = {swift_conf.MASK}\n" in diff["after"]
    assert "[storage-policy:1]" in diff["after"]


def test_mask_keeps_everything_but_the_values():
    masked = swift_conf.mask(RENDERED)
    assert masked == RENDERED.replace(PREFIX, swift_conf.MASK).replace(SUFFIX, swift_conf.MASK)
    assert swift_conf.mask("") == ""


@pytest.mark.parametrize("line", [f"swift_hash_path_prefix: {OTHER}\n",
                                  f"SWIFT_HASH_PATH_PREFIX = {OTHER}\n"])
def test_mask_hides_every_spelling_swift_reads(line):
    assert swift_conf.read_hash("[swift-hash]\n" + line)[0] == OTHER
    assert OTHER not in swift_conf.mask("[swift-hash]\n" + line)


@pytest.mark.parametrize("current", ["swift_hash_path_prefix = x\n",
                                     "[swift-hash]\n[swift-hash]\n"],
                         ids=["no-section-header", "duplicate-section"])
def test_unparsable_swift_conf_is_a_conflict_not_a_traceback(current):
    with pytest.raises(Conflict):
        swift_conf.plan_swift_conf(current, PREFIX, SUFFIX, GOLD)


def test_duplicate_policy_index_is_refused():
    with pytest.raises(InvalidInput):
        swift_conf.render_swift_conf(PREFIX, SUFFIX, [*GOLD, {"index": 0, "name": "other"}])


def test_secrets_file_in_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    swift_conf.load_or_create_secrets("s.json", ["prefix"])
    assert mode(tmp_path / "s.json") == 0o600
