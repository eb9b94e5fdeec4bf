"""The model: attention (one class per scorer), the bidirectional GRU encoder, the attention
decoder, word dropout and `Seq2Seq`, which joins them; `size` counts a configured model's
parameters from the settings alone, without torch.

Imports only the shared ground (``seq2seq.config``, ``seq2seq.special_ids``, ...) and torch:
nothing here knows about corpora, search, training or serving.
"""
