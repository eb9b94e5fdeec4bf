"""Every config group composes into a valid typed Config; bad values name key, value and choices."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from seq2seq.config import (
    AttentionType,
    Config,
    ConfigError,
    DecoderStyle,
    register_configs,
    to_object,
    to_plain,
)

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ["data", "model", "attention", "train", "experiment"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def compose_config(overrides: list[str]):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides)


@pytest.mark.parametrize("group,option",
                         [(g, o) for g in GROUPS for o in options(g)])
def test_every_group_option_composes_and_validates(group, option):
    cfg = to_object(compose_config([f"{group}={option}"]))
    assert isinstance(cfg, Config)


def test_defaults_are_the_documented_model():
    cfg = to_object(compose_config([]))
    assert cfg.attention.type is AttentionType.additive
    assert cfg.model.decoder_style is DecoderStyle.luong
    assert (cfg.data.src_lang, cfg.data.tgt_lang) == ("de", "en")


@pytest.mark.parametrize("override,words", [
    (["train.lr=-1"], ["train.lr", "-1"]),
    (["model.embedding_dropout=1.5"], ["model.embedding_dropout", "1.5"]),
    (["attention.num_heads=0"], ["attention.num_heads"]),
    (["data.max_len=0"], ["data.max_len"]),
    (["model.decoder_style=bahdanau", "model.input_feeding=true"], ["model.input_feeding"]),
    (["data.tgt_lang=de"], ["data.tgt_lang"]),
])
def test_out_of_range_values_name_the_key(override, words):
    with pytest.raises(ConfigError) as error:
        to_object(compose_config(override))
    for word in words:
        assert word in str(error.value)


@pytest.mark.parametrize("override", ["attention.type=foo", "model.hidden_size=abc",
                                      "train.no_such_key=1"])
def test_wrong_types_and_unknown_keys_fail_at_composition(override):
    with pytest.raises(Exception) as error:
        to_object(compose_config([override]))
    assert override.split("=")[0].split(".")[-1] in str(error.value) + str(error.value.__cause__)


def test_plain_dict_round_trips_through_validation():
    cfg = to_object(compose_config(["attention=multihead", "train=smoke"]))
    plain = to_plain(cfg)
    assert to_object(plain) == cfg
    assert plain["attention"]["type"] == "multihead"  # enums become plain strings


def test_plain_dict_with_a_bad_value_is_a_config_error():
    plain = to_plain(to_object(compose_config([])))
    plain["attention"]["type"] = "foo"
    with pytest.raises(ConfigError, match="foo"):
        to_object(plain)
