"""Typed configuration: one dataclass per config group, registered with Hydra's ConfigStore.

The YAML files under ``conf/`` are merged into these schemas, so a value of the wrong type or an
unknown key fails at composition time. Choices are Enums, so ``attention.type=foo`` fails with the
list of valid names. Range checks (``train.lr=-1``) live in ``__post_init__`` and run when
:func:`to_object` turns the composed config into dataclass instances, before any work starts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A config value is out of range; the message names the key, the value and what is allowed."""


class CorpusKind(Enum):
    multi30k = "multi30k"
    custom = "custom"


class SubwordModel(Enum):
    unigram = "unigram"
    bpe = "bpe"


class AttentionType(Enum):
    additive = "additive"
    dot = "dot"
    general = "general"
    multihead = "multihead"


class DecoderStyle(Enum):
    luong = "luong"
    bahdanau = "bahdanau"


class OptimizerName(Enum):
    adam = "adam"
    adamw = "adamw"


class Schedule(Enum):
    constant = "constant"
    plateau = "plateau"
    inverse_sqrt = "inverse_sqrt"
    cosine = "cosine"


class DeviceName(Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: expected {allowed}")


@dataclass
class TokenizerConfig:
    """sentencepiece settings; trained on the training split, cached under data.root."""

    joint: bool = True  # one vocabulary for both languages (needed to tie src/tgt embeddings)
    vocab_size: int = 8000
    model_type: SubwordModel = SubwordModel.unigram
    character_coverage: float = 1.0

    def __post_init__(self) -> None:
        _check(self.vocab_size >= 16, "data.tokenizer.vocab_size", self.vocab_size, "an int >= 16")
        _check(
            0.0 < self.character_coverage <= 1.0,
            "data.tokenizer.character_coverage",
            self.character_coverage,
            "a float in (0, 1]",
        )


@dataclass
class SplitFiles:
    """One split of a custom corpus: two aligned files (plain or .gz) or one TSV file."""

    src: str | None = None
    tgt: str | None = None
    tsv: str | None = None


@dataclass
class DataConfig:
    corpus: CorpusKind = CorpusKind.multi30k
    name: str = "multi30k"  # names the prepared-data folder under root, with the language pair
    src_lang: str = "de"
    tgt_lang: str = "en"
    # Multi30k: a local directory holding the {split}.{lang}.gz files; null downloads them.
    source: str | None = None
    root: str = "data"
    train_split: str = "train"
    valid_split: str = "val"
    test_split: str = "test_2016_flickr"
    # custom corpora: files per split (see conf/data/custom.yaml)
    train_files: SplitFiles = field(default_factory=SplitFiles)
    valid_files: SplitFiles = field(default_factory=SplitFiles)
    test_files: SplitFiles = field(default_factory=SplitFiles)
    max_len: int = 100  # training pairs longer than this (in subwords, either side) are dropped
    max_train_pairs: int | None = None  # keep only the first N training pairs (smoke runs)
    max_eval_pairs: int | None = None  # evaluate on the first N val/test pairs (smoke runs)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)

    def __post_init__(self) -> None:
        _check(self.max_len >= 1, "data.max_len", self.max_len, "an int >= 1")
        for key in ("max_train_pairs", "max_eval_pairs"):
            value = getattr(self, key)
            _check(value is None or value >= 1, f"data.{key}", value, "null or an int >= 1")
        _check(self.src_lang != self.tgt_lang, "data.tgt_lang", self.tgt_lang,
               f"a language other than data.src_lang={self.src_lang!r}")


@dataclass
class ModelConfig:
    embedding_size: int = 256
    hidden_size: int = 256
    encoder_layers: int = 1
    decoder_layers: int = 1
    rnn_dropout: float = 0.0  # between stacked GRU layers
    embedding_dropout: float = 0.3
    output_dropout: float = 0.3  # on the combined [h; c] vector before the output layer
    decoder_style: DecoderStyle = DecoderStyle.luong
    input_feeding: bool = False  # luong only; turns on the per-step training loop
    tie_embeddings: bool = True  # tie target embedding and output projection
    encoder_self_attention: bool = False
    self_attention_heads: int = 4

    def __post_init__(self) -> None:
        for key in ("embedding_size", "hidden_size", "encoder_layers", "decoder_layers",
                    "self_attention_heads"):
            value = getattr(self, key)
            _check(isinstance(value, int) and value >= 1, f"model.{key}", value, "an int >= 1")
        for key in ("rnn_dropout", "embedding_dropout", "output_dropout"):
            value = getattr(self, key)
            _check(0.0 <= value < 1.0, f"model.{key}", value, "a float in [0, 1)")
        _check(
            not (self.input_feeding and self.decoder_style is DecoderStyle.bahdanau),
            "model.input_feeding", self.input_feeding,
            "false with model.decoder_style=bahdanau (input feeding is a luong option)",
        )


@dataclass
class AttentionConfig:
    type: AttentionType = AttentionType.additive
    attention_size: int | None = None  # additive scorer size (default: model.hidden_size)
    scaled: bool = True  # dot: divide scores by sqrt(d)
    num_heads: int = 1  # multihead
    head_dim: int | None = None  # multihead: key/query size per head (default hidden/heads)
    value_dim: int | None = None  # multihead: value size per head (default head_dim)
    dropout: float = 0.0  # dropout on attention weights

    def __post_init__(self) -> None:
        _check(self.num_heads >= 1, "attention.num_heads", self.num_heads, "an int >= 1")
        _check(0.0 <= self.dropout < 1.0, "attention.dropout", self.dropout, "a float in [0, 1)")
        for key in ("attention_size", "head_dim", "value_dim"):
            value = getattr(self, key)
            _check(value is None or value >= 1, f"attention.{key}", value, "null or an int >= 1")


@dataclass
class TrainConfig:
    batch_tokens: int = 6000  # token budget per batch, padding included
    optimizer: OptimizerName = OptimizerName.adam
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    schedule: Schedule = Schedule.plateau
    warmup_steps: int = 0  # inverse_sqrt / cosine
    plateau_factor: float = 0.5
    plateau_patience: int = 1  # evaluations without val BLEU gain before the lr is cut
    min_lr: float = 1e-5
    clip_norm: float = 1.0
    label_smoothing: float = 0.1
    max_epochs: int = 30
    max_steps: int | None = None
    max_minutes: float | None = None  # wall-clock budget for training (not evaluation)
    eval_every: int | None = None  # in steps; null evaluates once per epoch
    patience: int = 5  # early stopping: evaluations without val BLEU gain
    amp: bool = True  # mixed precision on CUDA; ignored on the CPU
    beam_size: int = 5  # for the final test evaluation
    valid_beam_size: int = 1  # for val BLEU during training (greedy is much faster)
    length_penalty: float = 1.0
    max_len_ratio: float = 1.5  # decode at most ratio * src_len + max_len_offset tokens
    max_len_offset: int = 10
    max_nan_steps: int = 5  # consecutive non-finite losses before the run stops
    num_threads: int | None = None  # torch CPU threads; null keeps torch's default
    # steps between handing freed heap memory back to the OS (malloc_trim): caps the peak RSS
    # of long CPU runs at ~10% of speed; 0 does it only after each evaluation
    release_memory_every: int = 0
    log_every: int = 50  # steps between TensorBoard scalar writes
    num_plot_sentences: int = 4  # validation sentences whose attention is plotted
    resume: str | None = None  # a run dir or checkpoint file to continue from

    def __post_init__(self) -> None:
        _check(self.batch_tokens >= 1, "train.batch_tokens", self.batch_tokens, "an int >= 1")
        _check(self.lr > 0, "train.lr", self.lr, "a float > 0")
        _check(self.weight_decay >= 0, "train.weight_decay", self.weight_decay, "a float >= 0")
        _check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "train.betas",
               self.betas, "two floats in [0, 1)")
        _check(0 < self.plateau_factor < 1, "train.plateau_factor", self.plateau_factor,
               "a float in (0, 1)")
        _check(self.clip_norm > 0, "train.clip_norm", self.clip_norm, "a float > 0")
        _check(0 <= self.label_smoothing < 1, "train.label_smoothing", self.label_smoothing,
               "a float in [0, 1)")
        _check(self.max_epochs >= 1, "train.max_epochs", self.max_epochs, "an int >= 1")
        _check(self.max_steps is None or self.max_steps >= 1, "train.max_steps", self.max_steps,
               "null or an int >= 1")
        _check(self.max_minutes is None or self.max_minutes > 0, "train.max_minutes",
               self.max_minutes, "null or a float > 0")
        _check(self.eval_every is None or self.eval_every >= 1, "train.eval_every",
               self.eval_every, "null or an int >= 1")
        for key in ("beam_size", "valid_beam_size", "max_nan_steps", "log_every"):
            value = getattr(self, key)
            _check(value >= 1, f"train.{key}", value, "an int >= 1")
        _check(self.patience >= 0, "train.patience", self.patience, "an int >= 0")
        _check(self.release_memory_every >= 0, "train.release_memory_every",
               self.release_memory_every, "an int >= 0")
        _check(self.max_len_ratio > 0, "train.max_len_ratio", self.max_len_ratio, "a float > 0")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 1
    device: DeviceName = DeviceName.auto


def register_configs() -> None:
    """Register the schema that conf/config.yaml extends (its defaults list names `schema`)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="schema", node=Config)


def to_object(cfg: DictConfig | dict) -> Config:
    """Validate a composed config (or a plain dict from a checkpoint) into a `Config`.

    Raises `ConfigError` with the key, the value and what is allowed.
    """
    from omegaconf.errors import OmegaConfBaseException

    try:
        merged = OmegaConf.merge(OmegaConf.structured(Config), cfg)
        return OmegaConf.to_object(merged)  # runs every __post_init__
    except OmegaConfBaseException as error:
        raise ConfigError(str(error).splitlines()[0]) from None


def to_plain(cfg: Config) -> dict[str, Any]:
    """The config as plain containers (enums as their values) for checkpoints and results.json."""

    def convert(value: Any) -> Any:
        if isinstance(value, Enum):
            return value.value
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        return value

    return convert(cfg)
