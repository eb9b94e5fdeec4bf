"""int8 CPU decoding: dynamic quantization of a trained model's Linear and GRU layers.

Weights are stored as int8 and activations are quantized on the fly at each matrix product
(PyTorch's dynamic quantization: Jacob et al. 2018), so no calibration data is needed and the
checkpoint stays fp32; embeddings and attention scores stay fp32. This is the path for GRUs on the
CPU: CTranslate2, the usual fast CPU runtime, has no GRU decoder. The speed-up and the BLEU cost
on Multi30k are measured in docs/results.md (int8 on the CPU).
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from seq2seq.config import QUANTIZATIONS
from seq2seq.nn.output_layer import OutputLayer

# Layers whose weight the model reads as a tensor (additive attention's energy vector v): they
# stay fp32. With one output each, they cost nothing worth quantizing.
KEEP_FP32 = ("energy_layer",)


def quantize(model: nn.Module, kind: str) -> nn.Module:
    """A copy of `model` (in eval mode, on the CPU) with int8 Linear and GRU layers; a tied
    output layer gets an int8 copy of its rows of the embedding table.

    Sets PyTorch's quantized engine for the process (`choose_engine`): the weights are packed
    for it.
    """
    if kind not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {kind!r}; choose from {', '.join(QUANTIZATIONS)}")
    torch.backends.quantized.engine = choose_engine()
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, whose int8 CPU kernels cover
        # Linear layers only (not GRUs) and need torch.compile to be fast; this API still works.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        qconfig = torch.ao.quantization.default_dynamic_qconfig
        model = copy.deepcopy(model).cpu().eval()
        for module in model.modules():
            if isinstance(module, OutputLayer):
                module.untie()  # a Linear of its own, which becomes an int8 one
        layers = {name: qconfig for name, module in model.named_modules()
                  if type(module) in (nn.Linear, nn.GRU)
                  and name.rsplit(".", 1)[-1] not in KEEP_FP32}
        return torch.ao.quantization.quantize_dynamic(model, layers, dtype=torch.qint8,
                                                      inplace=True)


def choose_engine() -> str:
    """oneDNN's int8 kernels where the CPU has AMX tiles (they use them: measured 2.4x faster
    than fbgemm's for the output layer, 1.25x for beam search, on a 2-core Xeon with AMX);
    elsewhere PyTorch's own choice."""
    has_amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    if has_amx and "onednn" in torch.backends.quantized.supported_engines:
        return "onednn"
    return torch.backends.quantized.engine
