"""Whether the model that a config describes can train on this machine, decided from the config
alone, before any data work: otherwise a model too large for any memory (say
`model.decoder_layers=1000000000`) is found out only once the corpus is read and the tokenizer
trained, as a traceback about a 32 TB allocation.

No torch here: the train command checks this before torch is first imported.
"""

from __future__ import annotations

import os

from seq2seq.config import Config
from seq2seq.errors import ConfigError
from seq2seq.nn.size import parameter_counts

# what training holds per parameter at least: fp32 weights, their gradients and Adam's two
# moments (4 + 4 + 8 bytes); activations come on top
TRAINING_BYTES_PER_PARAMETER = 16


def machine_memory() -> int | None:
    """This machine's physical memory in bytes; None where the OS does not say (os.sysconf is
    Linux's and macOS's)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_fits_in_memory(cfg: Config, memory: int | None) -> None:
    """A ConfigError when training the model of `cfg` needs more than `memory` bytes (None: not
    known, nothing to check); the message names the size settings, the estimate and the memory."""
    vocab = cfg.data.tokenizer.vocab_size  # each side's, or the joint one: exact, or refused
    counts = parameter_counts(cfg.model, cfg.attention, vocab, vocab)
    needed = counts["total"] * TRAINING_BYTES_PER_PARAMETER
    if memory is None or needed <= memory:
        return
    largest = max((part for part in counts if part != "total"), key=counts.get)
    model = cfg.model
    raise ConfigError(
        f"the model of model.embedding_size={model.embedding_size}, model.hidden_size="
        f"{model.hidden_size}, model.encoder_layers={model.encoder_layers}, model.decoder_layers="
        f"{model.decoder_layers} and data.tokenizer.vocab_size={vocab} has "
        f"{counts['total']:.3g} parameters (the {largest} {counts[largest]:.3g}): training it "
        f"needs at least {_bytes(needed)} ({TRAINING_BYTES_PER_PARAMETER} bytes a parameter: "
        f"weights, gradients and Adam's two moments), more than this machine's "
        f"{_bytes(memory)} of memory; make it smaller")


def _bytes(size: int) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"
