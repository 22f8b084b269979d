"""Configuration: defaults, environment, the TOML file, and the private home."""

import stat

import pytest
from stackcore.errors import InvalidInput

from stackctl import config


def test_defaults_follow_novas_ratios_and_live_in_the_home(tmp_path):
    cfg = config.load({"STACKCTL_HOME": str(tmp_path / "h")})
    assert cfg.db_url == f"sqlite:///{tmp_path / 'h' / 'stackctl.db'}"
    assert cfg.inventory == config.project_root() / "inventories/aio/hosts.yml"
    assert (cfg.cpu_allocation_ratio, cfg.ram_allocation_ratio, cfg.disk_allocation_ratio) == (
        16.0, 1.5, 1.0)
    assert cfg.weigher == "spread"
    assert cfg.tenant is None
    assert (config.project_root() / "pyproject.toml").exists()


def test_home_is_created_private(tmp_path):
    home = tmp_path / "h"
    config.load({"STACKCTL_HOME": str(home)})
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_environment_beats_the_toml_file(tmp_path):
    home = tmp_path / "h"
    home.mkdir()
    (home / "stackctl.toml").write_text(
        'tenant = "from-file"\nweigher = "pack"\nram_allocation_ratio = 1.0\n')
    cfg = config.load({"STACKCTL_HOME": str(home), "STACKCTL_TENANT": "from-env"})
    assert cfg.tenant == "from-env"
    assert cfg.weigher == "pack"
    assert cfg.ram_allocation_ratio == 1.0


@pytest.mark.parametrize("env", [
    {"STACKCTL_WEIGHER": "random"},
    {"STACKCTL_RAM_ALLOCATION_RATIO": "lots"},
    {"STACKCTL_CPU_ALLOCATION_RATIO": "0"},
])
def test_bad_settings_are_refused(tmp_path, env):
    with pytest.raises(InvalidInput):
        config.load({"STACKCTL_HOME": str(tmp_path / "h"), **env})


def test_broken_toml_is_one_clear_error(tmp_path):
    home = tmp_path / "h"
    home.mkdir()
    (home / "stackctl.toml").write_text("tenant = \n")
    with pytest.raises(InvalidInput, match=r"stackctl.toml"):
        config.load({"STACKCTL_HOME": str(home)})
