"""The server's limits and batching settings, apart from the server so that the serve command's
`--help` shows their defaults without importing torch or FastAPI."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; larger requests are refused with 413 or 422."""

    max_lines: int = 64
    max_chars: int = 1000  # per line
    max_beam: int = 16

    @property
    def max_body_bytes(self) -> int:
        """Room for max_lines lines of max_chars 4-byte characters, escaped, plus the rest."""
        return self.max_lines * (self.max_chars * 12 + 16) + 4096


@dataclass(frozen=True)
class Batching:
    """How concurrent requests are gathered into one decoding batch."""

    window_ms: float = 10.0  # the longest a request waits for others to join its batch
    max_batch_tokens: int = 2000  # source subwords per batch (beam x this many in memory)
    max_queued_lines: int = 2048  # lines waiting to be decoded; past it new requests get 503
