"""Both model families: forward/backward, state passing, step vs chunkwise, init and weight-decay rules."""

import copy
import math

import pytest
import torch

from xlstm_zoo import build_model, param_groups
from xlstm_zoo.xlstm.large import set_weight_mode

NEURIPS = dict(kind="xlstm-lm", vocab_size=50, embedding_dim=32, num_blocks=3, mlstm_block={"mlstm": {"num_heads": 2}},
               slstm_block={"slstm": {"num_heads": 2}}, slstm_at=[1], kernels={"chunk_size": 4})
LARGE = dict(kind="xlstm-large-lm", vocab_size=50, embedding_dim=32, num_blocks=2, num_heads=2,
             kernels={"chunk_size": 4})


def model(config: dict, **kernels):
    torch.manual_seed(0)
    config = {**config, "kernels": {**config["kernels"], **kernels}}
    m = build_model({"model": config})
    # random gate biases so the test is not at the init's special point
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "gate" in name and name.endswith("bias"):
                p.normal_()
    return m


@pytest.fixture(params=["neurips", "large"])
def family(request):
    return NEURIPS if request.param == "neurips" else LARGE


def ids(S=11, B=2, seed=1):
    return torch.randint(0, 50, (B, S), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("mode", ["train", "inference"])
def test_pieces_and_steps_equal_whole(family, mode):
    m = model(family, mode=mode)
    x = ids()
    whole = m(x).logits
    first = m(x[:, :5])
    second = m(x[:, 5:], first.state)
    torch.testing.assert_close(torch.cat([first.logits, second.logits], 1), whole, atol=2e-5, rtol=1e-4)
    state, steps = None, []
    for t in range(x.shape[1]):
        out = m(x[:, t:t + 1], state)
        state = out.state
        steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, 1), whole, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(state.blocks[0].c if hasattr(state.blocks[0], "c") else state.blocks[0].cell.c,
                               (second.state.blocks[0].c if hasattr(second.state.blocks[0], "c")
                                else second.state.blocks[0].cell.c), atol=1e-5, rtol=1e-4)


def test_parallel_and_chunkwise_kernels_agree(family):
    x = ids(S=13)
    chunk = model(family, chunkwise_kernel="chunkwise--native")(x).logits
    parallel = model(family, chunkwise_kernel="parallel--native_stablef_autograd")(x).logits
    torch.testing.assert_close(parallel, chunk, atol=2e-5, rtol=1e-4)


def test_state_is_not_modified_in_place(family):
    m = model(family)
    state = m(ids(S=6)).state
    before = [t.clone() for t in state.tensors()]
    m(ids(S=5, seed=2), state)
    for a, b in zip(before, state.tensors()):
        assert torch.equal(a, b)


def test_backward_reaches_every_parameter(family):
    m = model(family)
    out = m(ids(S=9))
    loss = torch.nn.functional.cross_entropy(out.logits.flatten(0, 1), ids(S=9, seed=3).flatten())
    loss.backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing
    # gradients flow through a carried state into the previous window, and detach() cuts them
    m.zero_grad()
    s = m(ids(S=4)).state
    m(ids(S=4, seed=4), s).logits.sum().backward()
    assert m.lm_head.weight.grad is not None
    with torch.no_grad():
        s2 = m(ids(S=4)).state
    assert all(not t.requires_grad for t in s2.detach().tensors())


def test_any_length_including_one(family):
    m = model(family)
    for S in (1, 3, 4, 7):
        assert torch.isfinite(m(ids(S=S)).logits).all()


def test_reference_init_values():
    m = build_model({"model": {**NEURIPS, "num_blocks": 4, "slstm_at": [1, 3]}})
    stack = m.xlstm_block_stack.blocks
    torch.testing.assert_close(stack[0].xlstm.mlstm_cell.fgate.bias, torch.linspace(3.0, 6.0, 2))
    assert torch.all(stack[0].xlstm.mlstm_cell.igate.weight == 0)
    assert torch.all(stack[0].xlstm_norm.weight == 0)  # offset norm: scale 1
    std = stack[0].xlstm.proj_up.weight.std().item()
    assert abs(std - math.sqrt(2 / (5 * 32))) < 0.15 * math.sqrt(2 / (5 * 32))
    # power-law forget bias: +5 at the first unit of each head, -7 at the last, depends on the block index
    for idx in (1, 3):
        bias = stack[idx].xlstm.slstm_cell.bias
        r = idx / 3
        dh = 16
        expected = -(-5 + 12 * (torch.arange(dh, dtype=torch.float64) / (dh - 1)) ** (0.3 + 1.3 * r))
        torch.testing.assert_close(bias[:, 1], expected.float().expand(2, dh))
        assert torch.all(bias[:, [0, 2, 3]] == 0)
    large = build_model({"model": LARGE})
    layer = large.backbone.blocks[0].mlstm_layer
    assert torch.all(layer.igate_preact.bias == -10.0)
    assert torch.all(layer.ogate_preact.weight == 0)
    torch.testing.assert_close(layer.fgate_preact.bias, torch.linspace(3.0, 6.0, 2))
    wang = 2 / 2 / math.sqrt(32)
    assert abs(layer.out_proj.weight.std().item() - wang) < 0.15 * wang


def test_user_init_rules_override_the_preset():
    rules = [{"params": "*.mlstm_layer.igate_preact.bias", "init": {"kind": "constant", "value": -3.0}}]
    m = build_model({"model": {**LARGE, "init": {"rules": rules}}})
    assert torch.all(m.backbone.blocks[1].mlstm_layer.igate_preact.bias == -3.0)


def test_weight_decay_groups():
    m = build_model({"model": NEURIPS})
    decay, no_decay = param_groups(m, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    d, nd = set(decay["param_names"]), set(no_decay["param_names"])
    assert "xlstm_block_stack.blocks.0.xlstm.mlstm_cell.igate.weight" in d
    assert "xlstm_block_stack.blocks.1.xlstm.slstm_cell.recurrent_kernel" in nd
    assert "xlstm_block_stack.blocks.0.xlstm.learnable_skip" in nd
    assert "token_embedding.weight" in nd and "lm_head.weight" in d
    assert not any("norm" in n for n in d)
    assert len(d) + len(nd) == len(list(m.parameters()))
    torch.optim.AdamW(param_groups(m, 0.1), lr=1e-3)  # usable as is
    large = build_model({"model": LARGE})
    d, nd = (set(g["param_names"]) for g in param_groups(large, 0.1))
    assert "backbone.blocks.0.mlstm_layer.igate_preact.weight" in d and "lm_head.weight" in d
    assert "backbone.embeddings.weight" in nd and "backbone.blocks.0.mlstm_layer.igate_preact.bias" in nd


def test_fused_build_starts_from_the_single_init():
    """The init rules address q, k, v, o and each gate by name: a fused build is initialised like a single
    one (gate biases -10 / linspace, output gate zero), then stacked."""
    torch.manual_seed(3)
    single = build_model({"model": LARGE})
    torch.manual_seed(3)
    fused = build_model({"model": {**LARGE, "weight_mode": "fused"}})
    stacked = set_weight_mode(single, "fused").state_dict()
    assert all(torch.equal(stacked[k], v) for k, v in fused.state_dict().items())
    bias = fused.backbone.blocks[0].mlstm_layer.ifgate_preact.bias
    assert torch.all(bias[: LARGE["num_heads"]] == -10.0) and bias[LARGE["num_heads"]:].min() >= 3.0


def test_fused_and_single_weight_modes_agree():
    single = build_model({"model": LARGE})
    fused = build_model({"model": {**LARGE, "weight_mode": "fused"}})
    sd = single.state_dict()
    fsd = dict(sd)
    for j in range(2):
        p = f"backbone.blocks.{j}."
        layer = p + "mlstm_layer."
        fsd[layer + "qkv_opreact.weight"] = torch.cat([sd[layer + n + ".weight"] for n in ("q", "k", "v", "ogate_preact")])
        fsd[layer + "ifgate_preact.weight"] = torch.cat([sd[layer + "igate_preact.weight"], sd[layer + "fgate_preact.weight"]])
        fsd[layer + "ifgate_preact.bias"] = torch.cat([sd[layer + "igate_preact.bias"], sd[layer + "fgate_preact.bias"]])
        fsd[p + "ffn.proj_up_gate_z.weight"] = torch.cat([sd[p + "ffn.proj_up_gate.weight"], sd[p + "ffn.proj_up.weight"]])
    fused.load_state_dict({k: v for k, v in fsd.items() if k in fused.state_dict()})
    x = ids()
    torch.testing.assert_close(fused(x).logits, single(x).logits)
    # set_weight_mode converts in place to exactly these tensors, and back
    converted = set_weight_mode(copy.deepcopy(single), "fused")
    assert converted.config.weight_mode == "fused"
    assert {k: v.tolist() for k, v in converted.state_dict().items()} == \
        {k: v.tolist() for k, v in fused.state_dict().items()}
    back = set_weight_mode(converted, "single").state_dict()
    assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)


def test_bfloat16_and_autocast():
    m = build_model({"model": LARGE}, dtype=torch.bfloat16)
    assert m.lm_head.weight.dtype == torch.bfloat16
    logits = m(ids()).logits
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    m32 = build_model({"model": NEURIPS})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m32(ids())
    ref = m32(ids()).logits
    assert (out.logits - ref).abs().max() < 0.1 * ref.abs().max()


def test_generation_stops_at_the_configs_eos():
    m = model(LARGE)
    prompt = ids(S=4)
    free = m.generate(prompt, max_new_tokens=6)
    eos = int(free[0, 5])  # the second generated token of row 0
    m.config.eos_token_id = eos
    stopped = m.generate(prompt, max_new_tokens=6)
    assert torch.equal(stopped[0, :6], free[0, :6])
    assert torch.all(stopped[0, 6:] == eos)  # row 0 is filled with eos after it appeared


def test_neurips_ffn_bias_and_dropout_come_from_its_own_config():
    cfg = {**NEURIPS, "slstm_block": {"slstm": {"num_heads": 2}, "feedforward": {"bias": True, "dropout": 0.5}}}
    ffn = build_model({"model": cfg}).xlstm_block_stack.blocks[1].ffn
    assert ffn.proj_up.bias is not None and ffn.dropout.p == 0.5
