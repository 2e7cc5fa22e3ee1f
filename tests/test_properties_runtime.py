"""Property-based: any arguments to `forward` and `generate` either run, or raise a ValueError/TypeError that
names a wrong argument before any kernel runs (the embedding lookup is the first: a hook watches it).

Seeds: derandomized (examples follow from the test's name); example counts and deadlines are below
(deadlines are hang guards, loose for a loaded 2-core CI machine: an example takes milliseconds).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from xlstm_zoo.registry.builder import build_model

PROFILE = dict(derandomize=True, database=None, deadline=30000,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
VOCAB = 11
CONFIGS = {
    "neurips": {"kind": "xlstm-lm", "vocab_size": VOCAB, "embedding_dim": 16, "num_blocks": 2, "slstm_at": [1],
                "mlstm_block": {"mlstm": {"num_heads": 2}}, "slstm_block": {"slstm": {"num_heads": 2}}},
    "large": {"kind": "xlstm-large-lm", "vocab_size": VOCAB, "embedding_dim": 32, "num_heads": 2, "num_blocks": 2},
    "other": {"kind": "xlstm-large-lm", "vocab_size": VOCAB, "embedding_dim": 32, "num_heads": 4, "num_blocks": 2},
}
DTYPES = [torch.long, torch.int32, torch.int16, torch.uint8, torch.bool, torch.float32, torch.float16]


class Models(dict):
    def __repr__(self) -> str:
        return f"Models({sorted(self)})"


@pytest.fixture(scope="module")
def models():
    """Tiny models, run on one thread (a thread pool costs more than these matrices; restored after)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield Models({name: build_model({"model": config}).eval() for name, config in CONFIGS.items()})
    torch.set_num_threads(threads)


class Embedding:
    """Counts the calls of a model's embedding (the first module of its forward)."""

    def __init__(self, model):
        self.calls = 0
        emb = model.backbone.embeddings if hasattr(model, "backbone") else model.token_embedding
        self.handle = emb.register_forward_pre_hook(lambda *a: setattr(self, "calls", self.calls + 1))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def pick(data, valid: list, wrong: list, label: str):
    """Mostly a valid value (so that most examples run), sometimes a wrong one."""
    return data.draw(st.sampled_from(valid) if data.draw(st.sampled_from([True] * 4 + [False])) else
                     st.sampled_from(wrong), label=label)


def ids(data):
    shape = pick(data, [(2, 3), (1, 1), (3, 2)], [(2,), (), (2, 3, 1), (2, 0), (0, 3)], "shape")
    dtype = pick(data, [torch.long, torch.int32], [torch.int16, torch.uint8, torch.bool, torch.float32], "dtype")
    low, high = pick(data, [(0, VOCAB - 1)], [(-2, VOCAB + 2)], "range")
    values = torch.tensor(data.draw(st.lists(st.integers(low, high), min_size=math.prod(shape),
                                             max_size=math.prod(shape))), dtype=torch.long).reshape(shape)
    return values.to(dtype).to(pick(data, ["cpu"], ["meta"], "device"))


def ids_problem(x: torch.Tensor):
    """Why these ids are wrong, or None: dtype, shape, device, values (the order the checks go in)."""
    if x.dtype not in (torch.long, torch.int32):
        return TypeError
    if x.dim() != 2 or x.numel() == 0 or x.device.type != "cpu":
        return ValueError
    return ValueError if x.min() < 0 or x.max() >= VOCAB else None


def expect(problem, argument: str, call, watch):
    """Run `call`; if `problem` it must raise that, naming the argument, before the embedding runs."""
    with watch:
        if problem is None:
            return call()
        with pytest.raises(problem) as e:
            call()
        assert watch.calls == 0, "the error came after the model started computing"
    assert argument in str(e.value), f"{argument!r} not named in: {e.value}"


@settings(max_examples=300, **PROFILE)
@given(data=st.data())
def test_forward_runs_or_names_the_wrong_argument_before_computing(models, data):
    name = data.draw(st.sampled_from(["neurips", "large"]), label="model")
    model = models[name]
    x = ids(data)
    state_kind = pick(data, ["none", "own"], ["other-batch", "other-model", "object"], "state")
    keep = pick(data, [0, 1, 2], [-1, 1.5, True], "logits_to_keep")
    state, problem, argument = None, ids_problem(x), "input_ids"
    if state_kind != "none":
        batch = x.shape[0] if problem is None else 2
        if state_kind == "object":
            state = data.draw(st.sampled_from([{}, (1, 2), torch.zeros(1)]))
        else:
            source = models["other" if state_kind == "other-model" and name == "large" else
                            "large" if state_kind == "other-model" else name]
            rows = batch + (1 if state_kind == "other-batch" else 0)
            state = source(torch.zeros(rows, 1, dtype=torch.long)).state
        if problem is None:
            problem = TypeError if state_kind == "object" else None if state_kind == "own" else ValueError
            argument = "state"
    if problem is None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 0):
        problem, argument = ValueError, "logits_to_keep"
    out = expect(problem, argument, lambda: model(x, state, logits_to_keep=keep), Embedding(model))
    if out is not None:
        B, S = x.shape
        assert out.logits.shape == (B, min(keep, S) if keep else S, VOCAB) and torch.isfinite(out.logits).all()


@settings(max_examples=300, **PROFILE)
@given(data=st.data())
def test_generate_runs_or_names_the_wrong_argument_before_computing(models, data):
    model = models[data.draw(st.sampled_from(["neurips", "large"]), label="model")]
    x = ids(data)
    args = dict(
        max_new_tokens=pick(data, [0, 1, 3], [-1, 2.0, True, None], "max_new_tokens"),
        do_sample=pick(data, [False, True], [1, None], "do_sample"),
        temperature=pick(data, [1.0, 0.7, 2], [0, -1.0, float("nan"), True], "temperature"),
        top_k=pick(data, [None, 1, 3, VOCAB, VOCAB + 5], [0, -1, 2.5], "top_k"),
        top_p=pick(data, [None, 1, 0.5, 1.0], [0, 1.5, float("nan")], "top_p"),
        eos_token_id=pick(data, [None, 0, VOCAB - 1], [VOCAB, -1, 2**40], "eos_token_id"),
    )
    problem, argument = ids_problem(x), "input_ids"
    checks = [  # (argument, wrong type?, wrong value?) in the order generate checks them
        ("max_new_tokens", isinstance(args["max_new_tokens"], bool) or not isinstance(args["max_new_tokens"], int),
         isinstance(args["max_new_tokens"], int) and args["max_new_tokens"] < 0),
        ("do_sample", not isinstance(args["do_sample"], bool), False),
        ("temperature", False, isinstance(args["temperature"], bool) or not args["temperature"] > 0),
        ("top_k", isinstance(args["top_k"], (bool, float)), isinstance(args["top_k"], int) and args["top_k"] < 1),
        ("top_p", False, args["top_p"] is not None and not 0 < args["top_p"] <= 1),
        ("eos_token_id", False, args["eos_token_id"] is not None and not 0 <= args["eos_token_id"] < VOCAB),
    ]
    for name, wrong_type, wrong_value in checks:
        if problem is None and (wrong_type or wrong_value):
            problem, argument = (TypeError if wrong_type else ValueError), name
    generator = torch.Generator().manual_seed(0)
    out = expect(problem, argument, lambda: model.generate(x, generator=generator, **args), Embedding(model))
    if out is not None:
        assert torch.equal(out[:, :x.shape[1]], x) and x.shape[1] <= out.shape[1] <= x.shape[1] + args["max_new_tokens"]
        assert 0 <= int(out.min()) and int(out.max()) < VOCAB


def test_generate_top_k_above_the_vocabulary_and_top_p_one_keep_every_token(models):
    """The documented edges: top_k >= vocab and top_p = 1 filter nothing (same draws as no filter)."""
    model, x = models["large"], torch.randint(0, VOCAB, (3, 4))
    draw = lambda **kw: model.generate(x, 6, do_sample=True, generator=torch.Generator().manual_seed(5), **kw)  # noqa: E731
    free = draw()
    assert torch.equal(draw(top_k=VOCAB + 5), free) and torch.equal(draw(top_p=1.0), free)
