"""Fixed ids of the special tokens in every subword model this project trains.

Padding is 0 so that ``ne(PAD_ID)`` finds real tokens. The model, batching, loss and search use
these without importing sentencepiece; ``seq2seq.data.tokenizer`` trains its models with them.
"""

PAD_ID = 0
UNK_ID = 1
BOS_ID = 2
EOS_ID = 3
FIRST_PIECE_ID = 4  # the ids below are the special tokens above
