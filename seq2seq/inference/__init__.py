"""Using a trained model: greedy and beam search, decoding settings and batched decoding, the
scores (sacreBLEU), ensembles, int8 quantization, the `Translator` that loads checkpoints, word
alignments from attention, forced decoding of references, and the journalled translation
of a training split for knowledge distillation.

Imports the shared ground, ``seq2seq.nn`` and ``seq2seq.data``; never training, serving,
analysis or the CLI.
"""
