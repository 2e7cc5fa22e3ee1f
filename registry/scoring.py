"""Log-likelihoods of token sequences under a recurrent LM, using the state instead of re-computation.

Continuations that share a context: each distinct context runs once, and its state is copied for every
continuation scored after it. Whole documents run in chunks that carry the state, so a document of any length
is scored exactly once, with no windows. Every number equals the plain computation (the sum of log-softmax of
each token given everything before it) up to floating-point summation order.

Rows are padded on the right: a pad follows every real token of its row, so it changes no logit that is read.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import torch

PAD = 0
"""Id used for right padding (its logits are never read)."""


def prefix_token(config, tokenizer) -> int | None:
    """What a document's first token is conditioned on: the config's BOS, else the tokenizer's BOS, else EOS
    (the tokenizer's, then the config's), as lm-eval's `hf` model does; None when there is none."""
    for token in (config.bos_token_id, getattr(tokenizer, "bos_id", None), tokenizer.eos_id, config.eos_token_id):
        if token is not None:
            return token
    return None


def _right_padded(rows: Sequence[Sequence[int]], device) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) ids padded with PAD and the (B, T) mask of real tokens."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), PAD, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        mask[i, : len(row)] = True
    return ids.to(device), mask.to(device)


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def score_continuations(model, requests: Sequence[tuple[Sequence[int], Sequence[int]]], batch_size: int = 32,
                        ) -> list[tuple[float, bool]]:
    """(sum of log p(continuation | context), whether greedy decoding produces it) per (context, continuation)
    pair of token ids; contexts must be non-empty, continuations too.

    Distinct contexts of equal length run together (a recurrent state cannot be read mid-row), each once; the
    last position's log-softmax scores every continuation's first token, and the continuations (all but their
    last token) run from copies of their context's state, right-padded."""
    device = _device(model)
    by_context: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, (context, continuation) in enumerate(requests):
        if not context or not continuation:
            raise ValueError(f"request {i}: context and continuation must both hold tokens")
        by_context[tuple(context)].append(i)
    by_length: dict[int, list[tuple[int, ...]]] = defaultdict(list)
    for context in by_context:
        by_length[len(context)].append(context)
    results: list[tuple[float, bool] | None] = [None] * len(requests)
    for length in sorted(by_length, reverse=True):  # the largest batches first: out of memory fails early
        for contexts in _batches(by_length[length], batch_size):
            ids = torch.tensor(contexts, dtype=torch.long, device=device)
            logits, state = model(ids, logits_to_keep=1)
            last = torch.log_softmax(logits[:, -1].float(), -1)
            members = [(row, i) for row, context in enumerate(contexts) for i in by_context[context]]
            for chunk in _batches(members, batch_size):
                rows = torch.tensor([row for row, _ in chunk], device=device)
                continuations = [requests[i][1] for _, i in chunk]
                scores = _continuation_scores(model, last[rows], state.map(lambda t: t[rows]), continuations)
                for (_, i), score in zip(chunk, scores):
                    results[i] = score
    return results


def _continuation_scores(model, first: torch.Tensor, state, continuations) -> list[tuple[float, bool]]:
    """`first`: (B, V) log-probs of each continuation's first token; `state`: one copy per continuation."""
    targets, mask = _right_padded(continuations, first.device)
    logprobs = first[:, None]
    if targets.shape[1] > 1:
        logits, _ = model(targets[:, :-1], state)
        logprobs = torch.cat([logprobs, torch.log_softmax(logits.float(), -1)], 1)
    picked = logprobs.gather(-1, targets[..., None]).squeeze(-1)
    total = (picked.double() * mask).sum(1)
    greedy = ((logprobs.argmax(-1) == targets) | ~mask).all(1)
    return list(zip(total.tolist(), greedy.tolist()))


@torch.no_grad()
def score_documents(model, documents: Sequence[Sequence[int]], batch_size: int = 8, chunk: int = 1024,
                    ) -> list[float]:
    """Sum of log p(token | all tokens before it) over each document's tokens after the first, in one stateful
    pass: documents sorted by length run right-padded in chunks of `chunk` positions, the state carried
    between chunks, finished rows dropped."""
    for name, size in (("batch_size", batch_size), ("chunk_size", chunk)):
        if size < 1:  # below 1 a batch scored nothing (perplexity 1.0), a chunk broke range()
            raise ValueError(f"{name}: expected an integer >= 1, got {size}")
    device = _device(model)
    order = sorted(range(len(documents)), key=lambda i: -len(documents[i]))
    results = [0.0] * len(documents)
    for group in _batches(order, batch_size):
        ids, mask = _right_padded([documents[i] for i in group], device)
        totals = torch.zeros(len(group), dtype=torch.float64, device=device)
        lengths = mask.sum(1)
        state = None
        for start in range(0, ids.shape[1] - 1, chunk):
            alive = int((lengths > start + 1).sum())  # rows (longest first) with a target in this chunk
            stop = min(start + chunk, ids.shape[1] - 1)
            if state is not None:
                state = state.map(lambda t: t[:alive])
            logits, state = model(ids[:alive, start:stop], state)
            targets = ids[:alive, start + 1 : stop + 1]
            picked = torch.log_softmax(logits.float(), -1).gather(-1, targets[..., None]).squeeze(-1)
            totals[:alive] += (picked.double() * mask[:alive, start + 1 : stop + 1]).sum(1)
        for i, total in zip(group, totals.tolist()):
            results[i] = total
    return results
