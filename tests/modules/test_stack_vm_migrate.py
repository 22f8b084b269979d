"""stack_vm_migrate: its documentation against its argument spec and the core's request (the
module itself runs between lab hosts: tests/integration/test_day2_lab.py)."""

import dataclasses

from stackcore.migrate import MODES, MigrateRequest


def test_documentation_matches_the_argument_spec(documentation_mismatches):
    assert documentation_mismatches("stack_vm_migrate") == []


def test_every_option_reaches_the_core_and_every_mode_is_offered(load_library_module):
    module = load_library_module("stack_vm_migrate")
    assert set(module.ARGUMENT_SPEC) == {f.name for f in dataclasses.fields(MigrateRequest)}
    assert module.ARGUMENT_SPEC["mode"]["choices"] == list(MODES)
