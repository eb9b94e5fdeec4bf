"""Typed configuration: one dataclass per config group and one per attention scorer.

Every default lives here, once; the YAML files of ``conf/`` state only what differs.
Hydra composes them over these schemas (registered in its ConfigStore), so a value of the wrong
type or an unknown key fails at composition time, and choices are Enums that list the valid names.
Range checks (``train.lr=-1``) live in ``__post_init__``; checks that join two groups (heads that
must divide the hidden size) in ``Config.__post_init__``. All of them run in :func:`to_object`,
before any data work starts.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf

from seq2seq.cpu_load import machine_cores
from seq2seq.errors import ConfigError


class CorpusKind(Enum):
    multi30k = "multi30k"
    custom = "custom"


class SubwordModel(Enum):
    unigram = "unigram"
    bpe = "bpe"


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
    linear = "linear"
    wsd = "wsd"  # warmup, a stable lr, then a decay over the budget's last train.decay_share


class AverageSelect(Enum):
    last = "last"  # the last train.average_checkpoints evaluations
    best = "best"  # the train.average_checkpoints evaluations with the highest val BLEU


class DeviceName(Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


@dataclass(frozen=True)
class Range:
    """The values a number setting may take, as the config, the CLIs and the Translator check
    them: [low, high], or (low, high] when `low_open`."""

    low: float
    high: float
    low_open: bool = False

    def __contains__(self, value: float) -> bool:
        return (self.low < value if self.low_open else self.low <= value) and value <= self.high

    def __str__(self) -> str:
        return f"{'(' if self.low_open else '['}{_shown(self.low)}, {_shown(self.high)}]"

    def refusal(self, value: float) -> str | None:
        """None for an allowed value, else why not (the CLIs and the Translator say it)."""
        return None if value in self else f"must be in {self}, got {_shown(value)}"


def _shown(value: float) -> str:
    """An int in full (10000000, not 1e+07), a float as %g."""
    return str(value) if isinstance(value, int) else f"{value:g}"


# GNMT alpha: 0.6-2 in practice; ((5 + |Y|) / 6) ** alpha overflows past this
LENGTH_PENALTY = Range(0.0, 10.0)
# decoding stops at ratio * source length + offset tokens; a larger ratio only overflows
MAX_LEN_RATIO = Range(0.0, 100.0, low_open=True)
# sentencepiece's trainer refuses a character coverage outside this (trainer_interface.cc)
CHARACTER_COVERAGE = Range(0.98, 1.0)
# Adam's steps are about lr in size: past 10 every step wrecks the weights (1e30 trains on to a
# val loss of 3e32), so no one means it
LEARNING_RATE = Range(0.0, 10.0, low_open=True)
# the seeds NumPy takes too; torch takes up to 2**64 - 1, room for the ranks' seed + rank
SEED = Range(0, 2**32 - 1)
# averaging needs two sets of weights: train.average_checkpoints, and the evaluations a run keeps
MIN_AVERAGED_CHECKPOINTS = 2
# beam sizes that every search takes (translate, evaluate, serve, training's evaluations): a
# sentence decodes beam_size rows at every step, so beam 100000 ran for minutes and 10000000
# failed to allocate
BEAM_SIZE = Range(1, 100)
# torch CPU threads (--threads, train.num_threads): at most THREADS_PER_CORE per core of this
# machine. More threads only wait for a core, and 100000 crashed OpenMP (a segfault).
THREADS_PER_CORE = 4
CPU_THREADS = Range(1, THREADS_PER_CORE * (os.cpu_count() or 1))
DEFAULT_BATCH_SIZE = 128  # sentences per decoding batch in translate, evaluate and serve
QUANTIZATIONS = ("int8",)  # what translate, evaluate and serve accept as --quantize
# data.name and the languages name a folder under data.root: path separators (POSIX, Windows)
# would place it elsewhere, and the OS refuses NUL
UNSAFE_IN_NAMES = ("/", "\\", "\0")


def threads_refusal(threads: int) -> str | None:
    """None for a number of CPU threads this machine takes (CPU_THREADS), else why not.

    It depends on the machine, so it is checked where threads are set (the CLIs, set_threads,
    the train command's config check), never in TrainConfig: a checkpoint trained with 16
    threads must still load on a 2-core laptop.
    """
    refusal = CPU_THREADS.refusal(threads)
    return refusal and f"{refusal} (at most {THREADS_PER_CORE} per core of this machine)"


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: expected {allowed}")


@dataclass
class SamplingConfig:
    """Subword regularization: at every epoch the training pairs are segmented anew by sampling
    from the subword models (unigram: Kudo 2018; BPE: BPE-dropout, Provilkov et al. 2020),
    the same for the same seed and epoch; validation and test keep the best segmentation."""

    enabled: bool = False
    # unigram: sample among the `nbest` best segmentations (-1: among all of them), with
    # probabilities smoothed by `alpha` in (0, 1]. Kudo's l=64, alpha=0.1: on Multi30k 94% of the
    # sentences are segmented otherwise and 11% more subwords; -1 with 0.1 doubles the subwords.
    alpha: float = 0.1
    nbest: int = 64
    dropout: float = 0.1  # BPE: the probability of dropping each merge, in (0, 1)

    def __post_init__(self) -> None:
        _check(0 < self.alpha <= 1, "data.tokenizer.sampling.alpha", self.alpha,
               "a float in (0, 1]")
        _check(self.nbest == -1 or self.nbest >= 2, "data.tokenizer.sampling.nbest", self.nbest,
               "-1 (all segmentations) or an int >= 2")
        _check(0 < self.dropout < 1, "data.tokenizer.sampling.dropout", self.dropout,
               "a float in (0, 1)")


@dataclass
class TokenizerConfig:
    """sentencepiece settings; trained on the training split, cached under data.root."""

    joint: bool = True  # one vocabulary for both languages (needed to tie src/tgt embeddings)
    vocab_size: int = 8000
    model_type: SubwordModel = SubwordModel.unigram
    character_coverage: float = 1.0
    # sentences each model is trained on: a seeded sample of this many when the training split
    # has more (sentencepiece's memory grows with its input: about 1.4 GB per million
    # sentences); Multi30k's 58k all count
    max_sentences: int = 1_000_000
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

    def __post_init__(self) -> None:
        _check(self.vocab_size >= 16, "data.tokenizer.vocab_size", self.vocab_size, "an int >= 16")
        _check(self.max_sentences >= 1, "data.tokenizer.max_sentences", self.max_sentences,
               "an int >= 1")
        _check(self.character_coverage in CHARACTER_COVERAGE, "data.tokenizer.character_coverage",
               self.character_coverage, f"a float in {CHARACTER_COVERAGE}")


@dataclass
class SplitFiles:
    """One split of a custom corpus: two aligned files (plain or .gz) or one TSV file."""

    src: str | None = None
    tgt: str | None = None
    tsv: str | None = None


@dataclass
class HoldoutConfig:
    """A custom corpus's valid or test split without files is held out of its training file."""

    valid: int = 1000  # pairs
    test: int = 1000  # pairs
    seed: int = 1  # which pairs: the same file and seed always hold out the same lines

    def __post_init__(self) -> None:
        for key in ("valid", "test"):
            value = getattr(self, key)
            _check(value >= 1, f"data.holdout.{key}", value, "an int >= 1")


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
    holdout: HoldoutConfig = field(default_factory=HoldoutConfig)
    max_len: int = 100  # training pairs longer than this (in subwords, either side) are dropped
    max_train_pairs: int | None = None  # keep only the first N training pairs (smoke runs)
    max_eval_pairs: int | None = None  # evaluate on the first N val/test pairs (smoke runs)
    # word alignments of the val pairs, one Pharaoh line each (scripts/align.py, or gold links):
    # the final model's attention is scored against them in results.json's valid.alignment
    valid_alignments: str | None = None
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)

    def __post_init__(self) -> None:
        _check(self.max_len >= 1, "data.max_len", self.max_len, "an int >= 1")
        _check(bool(self.root.strip()), "data.root", self.root, "a folder (not empty)")
        for key in ("name", "src_lang", "tgt_lang"):  # they name the prepared-data folder
            value = getattr(self, key)
            _check(value.strip() not in ("", ".", "..") and not set(value) & set(UNSAFE_IN_NAMES),
                   f"data.{key}", value, "a folder name inside data.root: not empty, '.' or "
                   f"'..', and without {', '.join(map(repr, UNSAFE_IN_NAMES))}")
        for key in ("max_train_pairs", "max_eval_pairs"):
            value = getattr(self, key)
            _check(value is None or value >= 1, f"data.{key}", value, "null or an int >= 1")
        _check(self.src_lang != self.tgt_lang, "data.tgt_lang", self.tgt_lang,
               f"a language other than data.src_lang={self.src_lang!r}")


@dataclass
class ModelConfig:
    """Sizes aim at the best quality on a GPU; experiment=cpu40 and debug=smoke shrink them."""

    embedding_size: int = 512
    hidden_size: int = 512
    encoder_layers: int = 1
    decoder_layers: int = 1
    rnn_dropout: float = 0.0  # between stacked GRU layers
    embedding_dropout: float = 0.3  # Multi30k is small: strong dropout on embeddings and outputs
    output_dropout: float = 0.5  # on the combined [h; c] vector before the output layer
    word_dropout: float = 0.0  # whole source and target input tokens (seq2seq/nn/word_dropout.py)
    decoder_style: DecoderStyle = DecoderStyle.luong  # set by the decoder group
    input_feeding: bool = False  # luong only; turns on the per-step training loop
    tie_embeddings: bool = True  # tie target embedding and output projection
    # one embedding table for source and target words (and, tied, the output layer): the joint
    # vocabulary gives a subword one id on both sides (Press and Wolf 2017, three-way tying)
    share_embeddings: bool = False
    encoder_self_attention: bool = False
    self_attention_heads: int = 4

    def __post_init__(self) -> None:
        for key in ("embedding_size", "hidden_size", "encoder_layers", "decoder_layers",
                    "self_attention_heads"):
            value = getattr(self, key)
            _check(isinstance(value, int) and value >= 1, f"model.{key}", value, "an int >= 1")
        for key in ("rnn_dropout", "embedding_dropout", "output_dropout", "word_dropout"):
            value = getattr(self, key)
            _check(0.0 <= value < 1.0, f"model.{key}", value, "a float in [0, 1)")
        _check(
            not (self.input_feeding and self.decoder_style is DecoderStyle.bahdanau),
            "model.input_feeding", self.input_feeding,
            "false with model.decoder_style=bahdanau (input feeding is a luong option)",
        )
        heads = self.self_attention_heads
        _check(not self.encoder_self_attention or (2 * self.hidden_size) % heads == 0,
               "model.self_attention_heads", heads,
               f"a divisor of the encoder state size {2 * self.hidden_size} "
               "(2 * model.hidden_size)")


@dataclass
class AttentionConfig:
    """What every scorer has. Each scorer has its own subclass (ATTENTION_CONFIGS, by name) that
    holds only its own settings, so a key of another scorer fails at once."""

    type: str = MISSING  # the scorer's name, set by its subclass
    dropout: float = 0.0  # dropout on attention weights

    def __post_init__(self) -> None:
        _check(0.0 <= self.dropout < 1.0, "attention.dropout", self.dropout, "a float in [0, 1)")


@dataclass
class AdditiveAttentionConfig(AttentionConfig):
    type: str = "additive"
    attention_size: int | None = None  # default: model.hidden_size

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.attention_size is None or self.attention_size >= 1,
               "attention.attention_size", self.attention_size, "null or an int >= 1")


@dataclass
class DotAttentionConfig(AttentionConfig):
    type: str = "dot"
    scaled: bool = True  # divide scores by sqrt(d)


@dataclass
class GeneralAttentionConfig(AttentionConfig):
    type: str = "general"
    scaled: bool = False  # divide scores by sqrt(d)


@dataclass
class MultiHeadAttentionConfig(AttentionConfig):
    type: str = "multihead"
    dropout: float = 0.1
    num_heads: int = 4
    head_dim: int | None = None  # key/query size per head (default: model.hidden_size / heads)
    value_dim: int | None = None  # value size per head (default: head_dim)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.num_heads >= 1, "attention.num_heads", self.num_heads, "an int >= 1")
        for key in ("head_dim", "value_dim"):
            value = getattr(self, key)
            _check(value is None or value >= 1, f"attention.{key}", value, "null or an int >= 1")


# Scorer name -> its settings, from the subclasses above (their `type`): the name is what
# `attention=NAME` and a checkpoint's config say; seq2seq.nn.attention.build_attention maps each
# settings class to its module, the one registration of a scorer.
ATTENTION_CONFIGS: dict[str, type[AttentionConfig]] = {
    schema.type: schema for schema in AttentionConfig.__subclasses__()}


@dataclass
class GuidedAlignmentConfig:
    """Guided alignment (Chen et al. 2016): a loss that pulls the attention towards given word
    alignments of the training pairs (training/guided_alignment.py says how)."""

    weight: float = 0.0  # of the alignment loss beside the translation loss; 0 is off
    # one Pharaoh line per line of the training files (scripts/align.py writes them)
    file: str | None = None

    def __post_init__(self) -> None:
        _check(0 <= self.weight < math.inf, "train.guided_alignment.weight", self.weight,
               "0 (off) or a finite float > 0")
        _check((self.weight > 0) == (self.file is not None), "train.guided_alignment.file",
               self.file, "a Pharaoh file of the training pairs when train.guided_alignment."
               f"weight > 0 (it is {self.weight}), and null when the weight is 0")

    @property
    def enabled(self) -> bool:
        return self.weight > 0


@dataclass
class TrainConfig:
    batch_tokens: int = 6000  # token budget per batch, padding included
    optimizer: OptimizerName = OptimizerName.adam
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    schedule: Schedule = Schedule.plateau
    warmup_steps: int = 0  # inverse_sqrt / cosine / linear / wsd
    decay_share: float = 0.2  # wsd: the last share of the budget, in which the lr decays
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
    amp: bool = True  # mixed precision on CUDA; the CPU trains in fp32 (trainer.py says why)
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
    # checkpoint averaging: keep the weights of this many evaluations (0: none) and finish by
    # testing their average beside best.pt; the final model is the one with the higher val BLEU,
    # both decoded with the test's beam (train.beam_size)
    average_checkpoints: int = 0
    average_select: AverageSelect = AverageSelect.last
    guided_alignment: GuidedAlignmentConfig = field(default_factory=GuidedAlignmentConfig)

    def __post_init__(self) -> None:
        _check(self.batch_tokens >= 1, "train.batch_tokens", self.batch_tokens, "an int >= 1")
        _check(self.lr in LEARNING_RATE, "train.lr", self.lr, f"a float in {LEARNING_RATE}")
        _check(0 <= self.min_lr <= self.lr, "train.min_lr", self.min_lr,
               f"a float in [0, train.lr={self.lr}]")
        _check(0 <= self.weight_decay < math.inf, "train.weight_decay",
               self.weight_decay, "a finite float >= 0")
        _check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "train.betas",
               self.betas, "two floats in [0, 1)")
        _check(self.warmup_steps >= 0, "train.warmup_steps", self.warmup_steps, "an int >= 0")
        _check(0 < self.decay_share <= 1, "train.decay_share", self.decay_share,
               "a float in (0, 1]")
        _check(0 < self.plateau_factor < 1, "train.plateau_factor", self.plateau_factor,
               "a float in (0, 1)")
        _check(self.plateau_patience >= 0, "train.plateau_patience", self.plateau_patience,
               "an int >= 0")
        _check(0 < self.clip_norm < math.inf, "train.clip_norm", self.clip_norm,
               "a finite float > 0")
        _check(0 <= self.label_smoothing < 1, "train.label_smoothing", self.label_smoothing,
               "a float in [0, 1)")
        _check(self.max_epochs >= 1, "train.max_epochs", self.max_epochs, "an int >= 1")
        _check(self.max_steps is None or self.max_steps >= 1, "train.max_steps", self.max_steps,
               "null or an int >= 1")
        _check(self.max_steps is None or self.warmup_steps < self.max_steps,
               "train.warmup_steps", self.warmup_steps,
               f"an int below train.max_steps={self.max_steps} (the run would end before its "
               "learning rate has warmed up)")
        _check(self.max_minutes is None or 0 < self.max_minutes < math.inf,
               "train.max_minutes", self.max_minutes, "null or a finite float > 0")
        _check(self.eval_every is None or self.eval_every >= 1, "train.eval_every",
               self.eval_every, "null or an int >= 1")
        for key in ("beam_size", "valid_beam_size"):
            value = getattr(self, key)
            _check(value in BEAM_SIZE, f"train.{key}", value, f"an int in {BEAM_SIZE}")
        for key in ("max_nan_steps", "log_every"):
            value = getattr(self, key)
            _check(value >= 1, f"train.{key}", value, "an int >= 1")
        _check(self.patience >= 0, "train.patience", self.patience, "an int >= 0")
        _check(self.num_threads is None or self.num_threads >= 1, "train.num_threads",
               self.num_threads, "null (torch's default) or an int >= 1")
        _check(self.release_memory_every >= 0, "train.release_memory_every",
               self.release_memory_every, "an int >= 0")
        _check(self.num_plot_sentences >= 0, "train.num_plot_sentences", self.num_plot_sentences,
               "an int >= 0")
        _check(self.average_checkpoints == 0
               or self.average_checkpoints >= MIN_AVERAGED_CHECKPOINTS,
               "train.average_checkpoints", self.average_checkpoints,
               f"0 (off) or an int >= {MIN_AVERAGED_CHECKPOINTS}")
        _check(self.length_penalty in LENGTH_PENALTY, "train.length_penalty",
               self.length_penalty, f"a float in {LENGTH_PENALTY}")
        _check(self.max_len_ratio in MAX_LEN_RATIO, "train.max_len_ratio", self.max_len_ratio,
               f"a float in {MAX_LEN_RATIO}")
        _check(self.max_len_offset >= 0, "train.max_len_offset", self.max_len_offset,
               "an int >= 0")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    attention: AttentionConfig = field(default_factory=AttentionConfig)  # a subclass, by type
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 1
    device: DeviceName = DeviceName.auto  # auto picks cuda, then mps, then cpu

    def __post_init__(self) -> None:
        """The root's own settings (seed) and the checks that join two groups; they run with the
        others, before any data work."""
        _check(self.seed in SEED, "seed", self.seed, f"an int in {SEED}")
        attention, hidden = self.attention, self.model.hidden_size
        _check(ATTENTION_CONFIGS.get(attention.type) is type(attention), "attention.type",
               attention.type, f"the scorer of these settings ({type(attention).__name__}): "
               "choose a scorer with attention=NAME, not attention.type")
        _check(not self.model.share_embeddings or self.data.tokenizer.joint,
               "model.share_embeddings", self.model.share_embeddings,
               "false unless data.tokenizer.joint=true (one vocabulary for both languages)")
        _check(not (self.train.guided_alignment.enabled and self.data.tokenizer.sampling.enabled),
               "train.guided_alignment.weight", self.train.guided_alignment.weight,
               "0 with data.tokenizer.sampling (the alignment targets follow one fixed "
               "segmentation of the training pairs)")
        if isinstance(attention, MultiHeadAttentionConfig) and attention.head_dim is None:
            _check(hidden % attention.num_heads == 0, "attention.num_heads", attention.num_heads,
                   f"a divisor of model.hidden_size={hidden} (or set attention.head_dim)")


# Settings that say where things are, not what is trained: left out of a sweep job's folder name
# (conf/config.yaml takes them from here), of the report's settings and of TensorBoard's HParams.
PATH_KEYS = ("data.source", "data.root", "train.resume", "data.train_files", "data.valid_files",
             "data.test_files", "data.valid_alignments", "train.guided_alignment.file")


def is_path_key(key: str) -> bool:
    return any(key == path or key.startswith(f"{path}.") for path in PATH_KEYS)


def override_key(override: str) -> str:
    """The key a Hydra override sets: `+a.b=1`, `~a.b` and `a.b=1` all set `a.b`."""
    return override.split("=", 1)[0].lstrip("+~")


def unnamed_keys() -> list[str]:
    """What a sweep job's folder name leaves out: the experiment (every job has it) and each
    path key as an override spells it (the per-split files by their fields)."""
    split_fields = [f.name for f in dataclasses.fields(SplitFiles)]
    return ["experiment", *(f"{key}.{name}" if key.endswith("_files") else key
                            for key in PATH_KEYS
                            for name in (split_fields if key.endswith("_files") else [""]))]


def default_parallel_jobs() -> int:
    """`hydra/launcher=parallel`'s default n_jobs: one job per GPU on a machine with GPUs (each
    takes its own: cli/launcher_job.py), else one per core, each with one thread (on 2 cores, 2
    jobs of 1 thread trained 1.24x the tokens/s of 1 job of 2, and 4 at once no more:
    docs/results.md#parallel-sweeps)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else machine_cores()


def register_configs() -> None:
    """Register the schemas the YAML files extend: `schema`, the root (first in config.yaml's
    defaults list), and `schema/attention/NAME`, which attention/NAME.yaml names; and the
    resolvers config.yaml names the path keys with and hydra/launcher/parallel.yaml its jobs."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(name="schema", node=Config)
    OmegaConf.register_new_resolver("seq2seq_unnamed_keys", unnamed_keys, replace=True)
    OmegaConf.register_new_resolver("seq2seq_parallel_jobs", default_parallel_jobs, replace=True)
    for name, schema in ATTENTION_CONFIGS.items():
        store.store(group="schema/attention", name=name, node=schema)


def to_object(cfg: DictConfig | dict) -> Config:
    """Validate a composed config (or a plain dict from a checkpoint) into a `Config`.

    The attention settings are checked against the schema of the scorer that their `type` names.
    Raises `ConfigError` with the key, the value and what is allowed. A key that the schema does
    not have, also one added with Hydra's `+key=value`, is an error, never silently dropped.
    """
    from omegaconf.errors import OmegaConfBaseException

    composed = None  # the schema Hydra composed the attention group with, if any
    if isinstance(cfg, DictConfig):
        composed = OmegaConf.get_type(cfg, "attention") if "attention" in cfg else None
        cfg = OmegaConf.to_container(cfg, resolve=True)
    attention = cfg.get("attention")
    name = attention.get("type") if isinstance(attention, dict) else None
    _check(name in ATTENTION_CONFIGS, "attention.type", name,
           f"one of {', '.join(ATTENTION_CONFIGS)}")
    _check(composed in (None, dict, AttentionConfig, ATTENTION_CONFIGS[name]), "attention.type",
           name, "the scorer of the attention group: choose a scorer with attention=NAME")
    try:
        merged = OmegaConf.merge(
            OmegaConf.structured(Config),
            {"attention": OmegaConf.structured(ATTENTION_CONFIGS[name])},
            cfg,
        )
        return OmegaConf.to_object(merged)  # runs every __post_init__
    except OmegaConfBaseException as error:
        raise ConfigError(one_line(error)) from None


def one_line(error: Exception) -> str:
    """An OmegaConf or Hydra error in one line: its first line, with the full key it is about."""
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    full_key = getattr(error, "full_key", None)
    if full_key and full_key not in message:
        message = f"{full_key}: {message}"
    schema = getattr(error, "object_type", None)
    if "not in" in message and dataclasses.is_dataclass(schema):
        message += f"; its keys: {', '.join(f.name for f in dataclasses.fields(schema))}"
    return message


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
