"""From raw parallel text to batches: corpus catalogue and readers, the sentencepiece tokenizer,
held-out splits, training pairs, the memory-mapped encoded cache, token-budget batching, and
`prepare` (the one orchestrator, read top to bottom).

Imports only the shared ground; never the model (``seq2seq.nn``) or anything above.
"""
