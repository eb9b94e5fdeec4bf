"""How training computes: full precision on the CPU, bf16 or fp16 autocast on a GPU."""

from __future__ import annotations

import torch

from seq2seq.config import Config


def training_autocast_dtype(cfg: Config, device: torch.device) -> torch.dtype | None:
    """bf16 where the GPU has it, else fp16 with loss scaling. Full precision on the CPU: bf16
    autocast there, even with AMX, costs 1.4-2.5 times the memory for at most 24% more tokens/s,
    and nothing with the recipe's per-step memory release (docs/results.md)."""
    if not cfg.train.amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def precision_name(autocast_dtype: torch.dtype | None) -> str:
    """How training computes, for the log and results.json: fp32, or bf16/fp16 autocast."""
    if autocast_dtype is None:
        return "fp32"
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}[autocast_dtype] + " autocast"
