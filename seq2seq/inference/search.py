"""Batched greedy and beam search over `model.start` and `model.decoder.step`.

Both searches run every sentence of a batch (and every beam of each sentence) as one batch of
decoder rows. Sentences that are done leave the batch through `index_select`, so late steps only
pay for the sentences still searching, and each step synchronises with the device once (to learn
which sentences are done; when some are, their indices are also copied to the host). Nothing
loops over sentences in Python until the results are unpacked.

Conventions shared by both searches:
- The output never contains PAD or BOS (their log-probabilities are set to -inf) and a
  hypothesis's `tokens` hold neither BOS nor EOS.
- A sentence may produce at most `floor(max_len_ratio * src_len) + max_len_offset` tokens, where
  `src_len` is its entry in `src_lengths` (which counts the source EOS). At that step EOS is
  forced, as fairseq does, so every hypothesis ends with EOS, its score is the log-probability of
  a complete sentence, and its attention (when asked for) has one row per token plus one for EOS.
- Attention weights are kept only with `need_attention=True` (plots, the server's page): beam
  search must carry every hypothesis's weights along as it reorders the beam, a copy per step
  that costs more than the attention itself.
- Scores are sums of log-probabilities under the model; beam search divides them by the GNMT
  length penalty (Wu et al. 2016, "Google's Neural Machine Translation System", eq. 14).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seq2seq.config import BEAM_SIZE
from seq2seq.errors import ConfigError
from seq2seq.special_ids import BOS_ID, EOS_ID, PAD_ID


@dataclass
class Hypothesis:
    """One translation: subword ids, its ranking score and its attention over the source."""

    tokens: list[int]  # target ids without BOS and EOS
    score: float  # log-probability (beam search: divided by the length penalty)
    # (heads, len(tokens) + 1, real source length) on the CPU, +1 for EOS; None unless asked for
    attention: torch.Tensor | None


def max_output_lengths(src_lengths: torch.Tensor, ratio: float, offset: int) -> torch.Tensor:
    """The most tokens (EOS excluded) each sentence may produce: floor(ratio * len) + offset."""
    return (src_lengths.double() * ratio).floor().long().add(offset).clamp(min=0)  # (B,)


# Rows per slice of the output layer, softmax and topk on the CPU: 64 x V floats (2 MB at
# V = 8000) stay in the L2/L3 cache; 32 and 128 measured slower on 2 cores.
CPU_OUTPUT_ROWS = 128


def gnmt_length_penalty(length: int, alpha: float) -> float:
    """GNMT length penalty ((5 + length) / 6) ** alpha (Wu et al. 2016, eq. 14).

    Dividing a log-probability by it offsets beam search's bias towards short outputs; alpha 0
    ranks by the plain log-probability. `length` counts the output tokens including EOS.
    """
    return ((5.0 + length) / 6.0) ** alpha


def _top_next_tokens(output_layer: torch.nn.Module, features: torch.Tensor,
                     at_max: torch.Tensor | None, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k most probable next tokens of each row and their log-probabilities: PAD and BOS
    never, only EOS where `at_max`.

    features (N, P) (the decoder's `step_features`), at_max (N,) bool or None (no row at its
    limit) -> log-probabilities (N, k) float32, tokens (N, k), best first. `output_layer` scores
    the pieces of its `ids` (the special ids in their own rows), whose ids the tokens are. The
    log-probabilities are the model's
    own log-probabilities (no renormalisation over the allowed tokens), so scores stay
    log-probabilities under the model.
    On the CPU the rows go through the output layer, the softmax and topk a slice at a time:
    the (slice, K) values then stay in the cache between the three instead of making three
    passes over (N, K) values in memory (measured: 1.4x faster beam search on 2 cores).
    """
    N = features.size(0)
    rows = CPU_OUTPUT_ROWS if features.device.type == "cpu" else N
    scores, tokens = [], []
    for start in range(0, N, rows):
        log_probs = output_layer(features[start:start + rows]).float().log_softmax(dim=-1)
        if at_max is not None:
            eos = log_probs[:, EOS_ID].clone()  # (rows,)
            log_probs.masked_fill_(at_max[start:start + rows, None], float("-inf"))
            log_probs[:, EOS_ID] = eos
        log_probs[:, PAD_ID] = float("-inf")
        log_probs[:, BOS_ID] = float("-inf")
        top_scores, top_rows = log_probs.topk(min(k, log_probs.size(1)), dim=-1)
        scores.append(top_scores)
        tokens.append(output_layer.ids[top_rows])  # rows -> vocabulary ids
    if len(scores) == 1:
        return scores[0], tokens[0]
    return torch.cat(scores), torch.cat(tokens)  # (N, k) each


def _hypothesis(tokens: torch.Tensor, score: float, attention: torch.Tensor | None,
                src_len: int) -> Hypothesis:
    """Cut one finished row: tokens (T,) ending in EOS then PAD; attention (T, heads, S)."""
    length = int((tokens == EOS_ID).int().argmax())  # the first EOS; every row has one
    if attention is not None:
        attention = attention[: length + 1, :, :src_len].permute(1, 0, 2).float().contiguous()
    return Hypothesis(tokens=tokens[:length].tolist(), score=score, attention=attention)


def check_beam(beam_size: int, nbest: int) -> None:
    """A beam in BEAM_SIZE that holds the `nbest` hypotheses asked for; every search (the CLIs,
    the server, training's evaluations) is checked here."""
    if refusal := BEAM_SIZE.refusal(beam_size):
        raise ConfigError(f"beam_size {refusal}")
    if not 1 <= nbest <= beam_size:
        raise ConfigError(f"nbest must be in [1, beam_size={beam_size}], got {nbest}")


def _start(model: torch.nn.Module, src: torch.Tensor, src_lengths: torch.Tensor,
           max_len_ratio: float, max_len_offset: int):
    """What greedy and beam search start from: the encoded source and the decoder's first
    state, each sentence's output length limit (B,) on the device and on the host, and the
    number of steps that the longest limit allows."""
    memory, state = model.start(src, src_lengths)
    max_lens = max_output_lengths(src_lengths, max_len_ratio, max_len_offset)  # (B,)
    # The active sentences' limits, also on the host: EOS is forced (a pass over (N, V)) only
    # in the steps where some sentence reaches its limit.
    host_lens = max_lens.cpu()  # (A,)
    steps = int(host_lens.max()) + 1  # + 1 for the EOS
    return memory, state, max_lens, host_lens, steps


@torch.inference_mode()
def greedy(
    model: torch.nn.Module,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    max_len_ratio: float = 1.5,
    max_len_offset: int = 10,
    need_attention: bool = False,
) -> list[Hypothesis]:
    """Pick the most probable token at every step; one hypothesis per sentence, in input order.

    src (B, S) long with EOS and right padding; src_lengths (B,). Call `model.eval()` first.
    The score is the plain log-probability of the output (EOS included).
    """
    B, S = src.shape
    device = src.device
    memory, state, max_lens, host_lens, steps = _start(model, src, src_lengths, max_len_ratio,
                                                       max_len_offset)

    tokens = torch.full((B, steps), PAD_ID, dtype=torch.long, device=device)
    scores = torch.zeros(B, device=device)
    attention: torch.Tensor | None = None  # (B, steps, heads, S), allocated once heads is known
    active = torch.arange(B, device=device)  # (A,) the sentences still decoding
    prev = torch.full((B,), BOS_ID, dtype=torch.long, device=device)
    for t in range(steps):
        features, state, weights = model.decoder.step_features(  # (A, P), (A, heads, S) or None
            prev, state, memory, need_weights=need_attention)
        at_max = max_lens[active] <= t if t >= int(host_lens.min()) else None  # (A,)
        best, prev = (x.squeeze(1) for x in _top_next_tokens(  # (A,), (A,)
            model.decoder.output_layer, features, at_max, 1))
        scores.index_add_(0, active, best)
        tokens[active, t] = prev
        if weights is not None:
            if attention is None:
                attention = weights.new_zeros(B, steps, weights.size(1), S)
            attention[active, t] = weights

        keep = (prev != EOS_ID).nonzero().squeeze(1)  # the one host sync of the step
        if keep.numel() == 0:
            break
        if keep.numel() < prev.numel():  # drop the finished sentences from the batch
            active, prev, host_lens = active[keep], prev[keep], host_lens[keep.cpu()]
            memory, state = memory.select(keep), state.select(keep)

    tokens, scores = tokens.cpu(), scores.cpu()
    attention = None if attention is None else attention.cpu()
    src_lengths = src_lengths.tolist()
    return [_hypothesis(tokens[b], float(scores[b]), None if attention is None else attention[b],
                        src_lengths[b]) for b in range(B)]


class _FinishedPool:
    """Per sentence, up to K finished hypotheses, kept on the device in fixed-size tensors.

    Slot K of each sentence is a spare that absorbs every write that is not a new hypothesis, so
    adding hypotheses needs no data-dependent shapes (and no host sync).
    """

    def __init__(self, batch_size: int, beam_size: int, steps: int, device: torch.device):
        self.beam_size = beam_size
        self.steps = steps
        self.count = torch.zeros(batch_size, dtype=torch.long, device=device)  # (B,)
        self.scores = torch.full((batch_size, beam_size + 1), float("-inf"), device=device)
        self.tokens = torch.full((batch_size, beam_size + 1, steps), PAD_ID, dtype=torch.long,
                                 device=device)
        self.attention: torch.Tensor | None = None  # (B, K + 1, steps, heads, S)

    def add(self, sentences: torch.Tensor, finish: torch.Tensor, scores: torch.Tensor,
            tokens: torch.Tensor, attention: torch.Tensor | None) -> None:
        """Store the candidates marked in `finish`, best first, while slots are free.

        sentences (A,), finish (A, K) bool, scores (A, K), tokens (A, K, t + 1),
        attention (A, K, t + 1, heads, S) or None.
        """
        K, length = self.beam_size, tokens.size(2)
        if attention is not None and self.attention is None:
            B, heads, S = self.count.numel(), attention.size(3), attention.size(4)
            self.attention = attention.new_zeros(B, K + 1, self.steps, heads, S)
        slot = self.count[sentences, None] + finish.long().cumsum(dim=1) - 1  # (A, K)
        slot = torch.where(finish & (slot < K), slot, K)
        rows = sentences[:, None].expand_as(slot)  # (A, K)
        self.scores[rows, slot] = scores
        self.tokens[rows, slot, :length] = tokens
        if attention is not None:
            self.attention[rows, slot, :length] = attention
        self.count.index_add_(0, sentences, finish.long().sum(dim=1))


@torch.inference_mode()
def beam_search(
    model: torch.nn.Module,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    beam_size: int = 5,
    length_penalty: float = 1.0,
    max_len_ratio: float = 1.5,
    max_len_offset: int = 10,
    nbest: int = 1,
    need_attention: bool = False,
) -> list[list[Hypothesis]]:
    """Beam search; for each sentence (in input order) its `nbest` best hypotheses, best first.

    src (B, S) long with EOS and right padding; src_lengths (B,). Call `model.eval()` first.
    `length_penalty` is the GNMT alpha (0 ranks by log-probability). A sentence may return fewer
    than `nbest` hypotheses only when its vocabulary cannot fill the beam.

    As in fairseq, each step takes the 2K best of the K x V extensions with one `topk`: an EOS
    among the best K finishes a hypothesis, and the K best that do not end keep the beam full. A
    sentence is done when it has K finished hypotheses or reaches its length limit, so beam 1
    takes the same path as greedy search.
    """
    check_beam(beam_size, nbest)
    B, S = src.shape
    K = beam_size
    device = src.device
    memory, state, max_lens, host_lens, steps = _start(model, src, src_lengths, max_len_ratio,
                                                       max_len_offset)
    finished = _FinishedPool(B, K, steps, device)

    # Rows are sentence-major: row a * K + k is beam k of active sentence a. The memory keeps
    # one row per sentence, which its K beams share (see Decoder.step).
    state = state.select(torch.arange(B, device=device).repeat_interleave(K))  # (B * K, ...)
    active = torch.arange(B, device=device)  # (A,) the sentences still searching
    # Only beam 0 is live at first, so the first step fills the beam with K distinct tokens.
    beam_scores = torch.full((B, K), float("-inf"), device=device)  # (A, K) log-probabilities
    beam_scores[:, 0] = 0.0
    prev = torch.full((B * K,), BOS_ID, dtype=torch.long, device=device)  # (A * K,)
    history = torch.empty(B * K, 0, dtype=torch.long, device=device)  # (A * K, t)
    history_attention: torch.Tensor | None = None  # (A * K, t, heads, S) with need_attention

    for t in range(steps):
        A = active.numel()
        features, state, weights = model.decoder.step_features(  # (A*K, P), (A*K, h, S)|None
            prev, state, memory, need_weights=need_attention)
        at_max = max_lens[active] <= t if t >= int(host_lens.min()) else None  # (A,)
        # The 2K best extensions of a sentence are among its beams' 2K best tokens each: one
        # topk per row, then one over the K x 2K candidates of each sentence.
        row_scores, row_tokens = _top_next_tokens(  # (A * K, C), C = min(2K, V)
            model.decoder.output_layer, features,
            None if at_max is None else at_max.repeat_interleave(K), 2 * K)
        C = row_tokens.size(1)
        if weights is not None and history_attention is None:
            history_attention = weights.new_zeros(A * K, 0, weights.size(1), S)
        candidates = (row_scores + beam_scores.view(A * K, 1)).view(A, K * C)
        top_scores, top_index = candidates.topk(2 * K, dim=1)  # (A, 2K), best first
        token = row_tokens.view(A, K * C).gather(1, top_index)  # (A, 2K)
        parent = top_index // C + torch.arange(A, device=device)[:, None] * K  # (A, 2K) rows
        parent_rows = parent.view(-1)
        cand_tokens = torch.cat([history[parent_rows], token.view(-1, 1)], dim=1)
        cand_tokens = cand_tokens.view(A, 2 * K, t + 1)
        cand_attention = None
        if history_attention is not None:
            cand_attention = torch.cat([history_attention[parent_rows],
                                        weights[parent_rows].unsqueeze(1)], dim=1)
            cand_attention = cand_attention.view(A, 2 * K, t + 1, *weights.shape[1:])

        # EOS among the best K finishes a hypothesis (ranked with the length penalty).
        ends = token == EOS_ID  # (A, 2K)
        finish = ends[:, :K] & top_scores[:, :K].isfinite()
        penalty = gnmt_length_penalty(t + 1, length_penalty)
        finished.add(active, finish, top_scores[:, :K] / penalty, cand_tokens[:, :K],
                     None if cand_attention is None else cand_attention[:, :K])
        done = finished.count[active] >= K  # (A,)
        if at_max is not None:
            done |= at_max

        # The K best candidates that do not end form the next beam (a stable sort keeps order).
        survivors = ends.to(torch.uint8).sort(dim=1, stable=True).indices[:, :K]  # (A, K)
        beam_scores = top_scores.gather(1, survivors)  # (A, K)
        flat = (survivors + torch.arange(A, device=device)[:, None] * 2 * K).view(-1)  # (A * K,)
        prev = token.view(-1)[flat]
        parent_rows = parent_rows[flat]
        history = cand_tokens.view(A * 2 * K, t + 1)[flat]
        if cand_attention is not None:
            history_attention = cand_attention.view(A * 2 * K, *cand_attention.shape[2:])[flat]

        keep = (~done).nonzero().squeeze(1)  # the one host sync of the step
        if keep.numel() == 0:
            break
        if keep.numel() < A:  # drop the done sentences from the batch
            keep_rows = (keep[:, None] * K + torch.arange(K, device=device)).view(-1)
            active, beam_scores = active[keep], beam_scores[keep]
            host_lens = host_lens[keep.cpu()]
            prev, parent_rows = prev[keep_rows], parent_rows[keep_rows]
            history = history[keep_rows]
            if history_attention is not None:
                history_attention = history_attention[keep_rows]
            memory = memory.select(keep)  # one row per sentence
        state = state.select(parent_rows)

    return _best_finished(finished, src_lengths, nbest)


def _best_finished(finished: _FinishedPool, src_lengths: torch.Tensor,
                   nbest: int) -> list[list[Hypothesis]]:
    """Unpack the pool on the CPU: per sentence the `nbest` best finite-scored hypotheses."""
    K = finished.beam_size
    scores = finished.scores[:, :K].cpu()  # (B, K)
    tokens = finished.tokens.cpu()
    attention = None if finished.attention is None else finished.attention.cpu()
    order = scores.argsort(dim=1, descending=True, stable=True)[:, :nbest]  # (B, nbest)
    results: list[list[Hypothesis]] = []
    for b, src_len in enumerate(src_lengths.tolist()):
        results.append([_hypothesis(tokens[b, k], float(scores[b, k]),
                                    None if attention is None else attention[b, k], src_len)
                        for k in order[b].tolist() if scores[b, k].isfinite()])
    return results
