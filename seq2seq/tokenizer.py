"""sentencepiece subword models for the source and target side (joint or separate)."""

from __future__ import annotations

# Fixed ids in every model this project trains: padding is 0 so that `ne(0)` finds real tokens.
PAD_ID = 0
UNK_ID = 1
BOS_ID = 2
EOS_ID = 3
