"""Every config group composes into a valid typed Config; bad values name key, value and choices;
each default lives in one place."""

import dataclasses
from importlib.resources import files
from pathlib import Path

import pytest
import yaml

from seq2seq.config import (
    ATTENTION_CONFIGS,
    Config,
    DataConfig,
    DecoderStyle,
    ModelConfig,
    TrainConfig,
    to_object,
    to_plain,
)
from seq2seq.errors import ConfigError

CONF = Path(str(files("seq2seq.conf")))
GROUPS = ["data", "model", "attention", "decoder", "train", "experiment", "debug"]
REPO = Path(__file__).resolve().parents[1]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_the_defaults_list_names_every_group_folder():
    defaults = yaml.safe_load((CONF / "config.yaml").read_text())["defaults"]
    named = {next(iter(entry)) for entry in defaults if isinstance(entry, dict)}
    folders = {p.name for p in CONF.iterdir() if p.is_dir() and p.name != "__pycache__"}
    # hydra/: configs of Hydra's own groups (hydra/launcher=parallel), which Hydra's defaults
    # choose, not config.yaml's
    assert named == folders - {"hydra"} == set(GROUPS)
    assert {p.parent.name for p in (CONF / "hydra").rglob("*.yaml")} == {"launcher"}


@pytest.mark.parametrize("group,option",
                         [(g, o) for g in GROUPS for o in options(g)])
def test_every_group_option_composes_and_validates(compose, group, option):
    assert isinstance(compose([f"{group}={option}"]), Config)


def test_every_attention_file_is_a_scorer_and_every_scorer_has_a_file(compose):
    assert options("attention") == sorted(ATTENTION_CONFIGS)
    for name, schema in ATTENTION_CONFIGS.items():
        attention = compose([f"attention={name}"]).attention
        assert type(attention) is schema and attention.type == name


def test_defaults_are_the_documented_model(compose):
    cfg = compose([])
    assert cfg.attention.type == "additive"
    assert cfg.model.decoder_style is DecoderStyle.luong
    assert (cfg.data.src_lang, cfg.data.tgt_lang) == ("de", "en")
    assert (cfg.model.embedding_size, cfg.model.hidden_size) == (512, 512)


def test_every_default_lives_in_the_dataclasses(compose):
    """The default run is exactly the dataclass defaults; YAML files state only what differs."""
    cfg = compose([])
    assert cfg.model == ModelConfig() and cfg.train == TrainConfig() and cfg.data == DataConfig()
    assert cfg.attention == ATTENTION_CONFIGS["additive"]()
    for path in CONF.rglob("*.yaml"):
        settings = yaml.safe_load(path.read_text()) or {}
        group = path.parent.name
        schema = {"model": ModelConfig(), "train": TrainConfig(), "data": DataConfig(),
                  "decoder": ModelConfig()}.get(group)
        if schema is None:
            continue
        for key, value in settings.items():
            if key in ("src_lang", "tgt_lang"):  # a language pair file names both languages
                continue
            default = getattr(schema, key)
            default = default.value if hasattr(default, "value") else default
            assert value != default, f"{path.relative_to(CONF)} repeats the default {key}={value}"


def test_recipes_hold_only_what_changes(compose):
    cpu = compose(["experiment=cpu40"])
    assert (cpu.model.hidden_size, cpu.attention.type, cpu.train.max_minutes,
            cpu.train.average_checkpoints, cpu.train.average_select.value) == \
        (256, "general", 40, 5, "best")
    smoke = compose(["debug=smoke"])
    assert (smoke.model.hidden_size, smoke.train.max_steps, smoke.data.max_train_pairs) == \
        (64, 240, 4000)
    both = compose(["experiment=cpu40", "debug=smoke"])  # debug shrinks whatever runs
    assert (both.model.hidden_size, both.attention.type) == (64, "general")


@pytest.mark.parametrize("override,words", [
    (["train.lr=-1"], ["train.lr", "-1"]),
    (["model.embedding_dropout=1.5"], ["model.embedding_dropout", "1.5"]),
    (["model.word_dropout=1.0"], ["model.word_dropout", "1.0"]),
    (["attention=multihead", "attention.num_heads=0"], ["attention.num_heads"]),
    (["data.max_len=0"], ["data.max_len"]),
    (["decoder=bahdanau", "model.input_feeding=true"], ["model.input_feeding"]),
    (["data.tgt_lang=de"], ["data.tgt_lang"]),
    (["model.share_embeddings=true", "data.tokenizer.joint=false"],
     ["model.share_embeddings=True", "data.tokenizer.joint"]),
    (["attention=multihead", "attention.num_heads=3"], ["attention.num_heads=3", "512"]),
    (["model.encoder_self_attention=true", "model.self_attention_heads=3"],
     ["model.self_attention_heads=3", "1024"]),
    (["attention=dot", "attention.type=general"], ["attention.type", "attention=NAME"]),
    # non-finite and out-of-range floats that used to pass and fail later, or train silently
    (["train.lr=inf"], ["train.lr=inf", "(0, 10]"]),
    (["train.lr=1e30"], ["train.lr=1e+30", "(0, 10]"]),  # trained on to a val loss of 3e32
    (["seed=99999999999999999999999"], ["seed=99999999999999999999999", "4294967295"]),
    (["seed=-1"], ["seed=-1", "[0, 4294967295]"]),
    (["train.lr=nan"], ["train.lr=nan"]),
    (["train.schedule=cosine", "train.min_lr=-0.01"], ["train.min_lr=-0.01"]),
    # a warmup longer than the run trained at lr * step / warmup throughout, without a word
    (["train.schedule=cosine", "train.warmup_steps=1000", "train.max_steps=30"],
     ["train.warmup_steps=1000", "train.max_steps=30", "warmed up"]),
    (["train.min_lr=0.1"], ["train.min_lr=0.1", "train.lr=0.001"]),
    (["train.num_threads=-1"], ["train.num_threads=-1"]),
    (["train.beam_size=101"], ["train.beam_size=101", "[1, 100]"]),
    (["train.valid_beam_size=0"], ["train.valid_beam_size=0", "[1, 100]"]),
    (["train.clip_norm=inf"], ["train.clip_norm"]),
    (["train.max_minutes=inf"], ["train.max_minutes"]),
    (["train.max_len_ratio=1e30"], ["train.max_len_ratio", "100"]),
    (["train.length_penalty=nan"], ["train.length_penalty"]),
    (["train.length_penalty=1e308"], ["train.length_penalty", "[0, 10]"]),
    (["data.root=''"], ["data.root"]),
    # sentencepiece's own range, refused here instead of by an internal check in its trainer
    (["data.tokenizer.character_coverage=0.01"],
     ["data.tokenizer.character_coverage=0.01", "[0.98, 1]"]),
    (["data.name=../../escape"], ["data.name='../../escape'", "inside data.root"]),
    (["data.src_lang=de/../.."], ["data.src_lang='de/../..'", "inside data.root"]),
    (["train.weight_decay=inf"], ["train.weight_decay"]),
])
def test_out_of_range_values_name_the_key(compose, override, words):
    with pytest.raises(ConfigError) as error:
        compose(override)
    for word in words:
        assert word in str(error.value)


@pytest.mark.parametrize("name", ["../../escape", "/tmp/x", "a\\b", "a\0b", "", " ", ".", ".."])
def test_a_data_name_is_one_folder_inside_the_data_root(name):
    with pytest.raises(ConfigError, match=r"data.name=.* is invalid: expected a folder name "):
        DataConfig(name=name)
    assert DataConfig(name="my..corpus v2").name == "my..corpus v2"  # dots inside are a name


def test_heads_may_not_divide_the_hidden_size_with_an_explicit_head_dim(compose):
    cfg = compose(["attention=multihead", "attention.num_heads=3", "attention.head_dim=64"])
    assert (cfg.attention.num_heads, cfg.attention.head_dim) == (3, 64)


@pytest.mark.parametrize("override", ["attention=foo", "model.hidden_size=abc",
                                      "train.no_such_key=1", "+train.no_such_key=1",
                                      "attention.num_heads=8", "model.decoder_style=foo"])
def test_wrong_types_and_unknown_keys_fail_at_composition(compose, override):
    with pytest.raises(Exception) as error:
        compose([override])
    key = override.split("=")[0].split(".")[-1]
    assert key in str(error.value) + str(error.value.__cause__)


@pytest.mark.parametrize("group,options", [
    ("attention", "additive, dot, general, multihead"),
    ("debug", "smoke"),
    ("decoder", "bahdanau, luong, luong_input_feeding"),
])
def test_a_config_group_set_to_null_lists_its_options(compose, group, options):
    """Hydra itself answers `attention=null` with a 29-line ValueError traceback."""
    with pytest.raises(ConfigError) as error:
        compose([f"{group}=null"])
    assert str(error.value) == f"{group}=null is invalid: expected one of {options}"


def test_plain_dict_round_trips_through_validation(compose):
    cfg = compose(["attention=multihead", "debug=smoke"])
    plain = to_plain(cfg)
    assert to_object(plain) == cfg
    assert plain["attention"]["type"] == "multihead"  # enums become plain strings


@pytest.mark.parametrize("change,words", [
    ({"type": "foo"}, ["foo", "additive, dot, general, multihead"]),
    ({"num_heads": 8}, ["num_heads", "AdditiveAttentionConfig", "attention_size"]),
])
def test_plain_dict_with_a_bad_value_is_a_config_error(compose, change, words):
    plain = to_plain(compose([]))
    plain["attention"].update(change)
    with pytest.raises(ConfigError) as error:
        to_object(plain)
    for word in words:
        assert word in str(error.value)


def test_each_scorer_takes_only_its_own_settings():
    names = {name: {f.name for f in dataclasses.fields(schema)}
             for name, schema in ATTENTION_CONFIGS.items()}
    assert names["dot"] == {"type", "dropout", "scaled"}
    assert names["additive"] == {"type", "dropout", "attention_size"}
    assert names["multihead"] == {"type", "dropout", "num_heads", "head_dim", "value_dim"}


@pytest.mark.parametrize("overrides,words", [
    (["attention=dot", "attention.num_heads=8"], ["attention.num_heads", "DotAttentionConfig"]),
    (["attention=multihead", "attention.num_heads=3"], ["attention.num_heads=3"]),
    (["+train.lrr=0.1"], ["train.lrr"]),
    (["attention=nope"], ["attention/nope", "additive"]),
])
def test_the_train_command_refuses_a_bad_config_at_once_in_one_line(refused_training, tmp_path,
                                                                     overrides, words):
    """Before the run dir, the corpus or the tokenizer: no data.source is given, and no
    outputs/ folder may appear."""
    err = refused_training(overrides)
    for word in words:
        assert word in err
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "data").exists()
