"""The memory check of a config, before any data work: a model that cannot train here is refused
in one line that names its size settings, the estimate and the machine's memory."""

from __future__ import annotations

import pytest

from seq2seq.errors import ConfigError
from seq2seq.nn.size import parameter_counts
from seq2seq.training.footprint import (
    TRAINING_BYTES_PER_PARAMETER,
    check_fits_in_memory,
    machine_memory,
)


def test_the_machine_says_how_much_memory_it_has():
    memory = machine_memory()
    assert memory is not None and 2**28 < memory < 2**50  # Linux and macOS: 256 MB to 1 PB


def test_a_billion_decoder_layers_are_refused_with_the_estimate_and_the_memory(compose):
    cfg = compose(["debug=smoke", "model.decoder_layers=1000000000"])
    with pytest.raises(ConfigError) as error:
        check_fits_in_memory(cfg, machine_memory())
    message = str(error.value)
    assert message.startswith("the model of model.embedding_size=64, model.hidden_size=64, "
                              "model.encoder_layers=1, model.decoder_layers=1000000000 and "
                              "data.tokenizer.vocab_size=1000 has 3.32e+13 parameters (the "
                              "decoder 2.5e+13): training it needs at least 531.5 TB")
    assert "of memory; make it smaller" in message and "\n" not in message


def test_the_bound_is_the_training_state_of_every_parameter(compose):
    cfg = compose(["debug=smoke"])
    total = parameter_counts(cfg.model, cfg.attention, 1000, 1000)["total"]
    needed = total * TRAINING_BYTES_PER_PARAMETER
    check_fits_in_memory(cfg, needed)
    check_fits_in_memory(cfg, None)  # memory unknown: nothing to check
    with pytest.raises(ConfigError, match="more than this machine's .* of memory"):
        check_fits_in_memory(cfg, needed - 1)
