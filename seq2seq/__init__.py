"""seq2seq: attentional GRU neural machine translation.

Folders by concern, each a layer that imports only the layers below it (pyproject.toml's
import-linter contract checks it in CI), bottom to top:

- shared ground, in this folder: ``config`` (typed settings), ``errors``, ``special_ids``,
  ``files`` (atomic writes, line reading), ``cpu_load`` (other processes' CPU use),
  ``runtime`` (device, threads, seeds, signals) and
  ``checkpoint`` (the checkpoint file: save, load, resolve);
- ``nn`` (the model) and ``data`` (corpora to batches), which do not import each other;
- ``inference``: search, the translator, decoding settings and scores, ensembles, int8;
- ``analysis``: the report over run directories, attention plots;
- ``training`` and ``serving``, which do not import each other;
- ``cli``: the entry points.
"""

__version__ = "0.1.0"
