"""Config sections, YAML files and --set overrides."""

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from ntdm_cli.config import ConfigStore, parse_overrides, section
from ntdm_cli.errors import ConfigError


@section("testsec")
@dataclass
class _Sec:
    steps: int = 10
    lr: float = 0.1
    name: str = "x"
    flag: bool = False
    sizes: list = field(default_factory=lambda: [1, 2])


def test_defaults_file_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("testsec:\n  steps: 20\n  lr: 1\n")
    store = ConfigStore(f, ["testsec.lr=1e-3", "testsec.flag=true", "testsec.sizes=[3, 4]"])
    cfg = store.get("testsec")
    assert (cfg.steps, cfg.lr, cfg.flag, cfg.sizes, cfg.name) == (20, 1e-3, True, [3, 4], "x")
    assert yaml.safe_load(store.to_yaml())["testsec"]["steps"] == 20


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["testsec.nope=1"], "has no key 'nope'"),
        (["testsec.steps=abc"], "expected an integer"),
        (["testsec.flag=3"], "expected true/false"),
        (["justkey=1"], "section.key"),
        (["noequals"], "expected section.key=value"),
    ],
)
def test_bad_overrides(overrides, message):
    with pytest.raises(ConfigError, match=message):
        ConfigStore(None, overrides).get("testsec")


def test_bad_yaml(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("testsec: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        ConfigStore(f)
    f.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="maps section names"):
        ConfigStore(f)


def test_parse_overrides_types():
    assert parse_overrides(["a.b=1", "a.c=x", "d.e=0.5"]) == {"a": {"b": 1, "c": "x"}, "d": {"e": 0.5}}


def test_string_options_read_yaml_booleans_back():
    """--set train.amp=off: YAML 1.1 reads off/on as booleans; a string option gets "off"/"on" back."""
    from ntdm_cli.config import ConfigStore
    from ntdm_cli.train.loop import TrainConfig

    assert ConfigStore(overrides=["train.amp=off"]).get("train", TrainConfig).amp == "off"
    assert ConfigStore(overrides=["train.amp=bf16"]).get("train", TrainConfig).amp == "bf16"
    with pytest.raises(Exception, match="train.amp"):
        ConfigStore(overrides=["train.amp=fp16"]).get("train", TrainConfig)


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_settings_files_resolve(path):
    """Every settings file of configs/ (the recipes' scales) names only known keys with valid values:
    a typo in a preset would otherwise surface an hour into SCALE=cpu."""
    import ntdm_cli.cli.main  # noqa: F401  (registers every command's config sections)

    store = ConfigStore(path)
    assert store.raw, f"{path} is empty"
    for name in store.raw:
        store.get(name)
