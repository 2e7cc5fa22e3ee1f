"""Vision-LSTM: exact parameter counts of the published sizes, forward shapes, the reference fixture (a tiny
VisionLSTM2 checkpoint with NX-AI/vision-lstm's logits) through `convert --from vil` and through the torch hub
cache, and config errors that name the key."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from xlstm_zoo import build_model
from xlstm_zoo.registry.checkpoints import CheckpointError
from xlstm_zoo.registry.checkpoints.convert import main as convert_main
from xlstm_zoo.registry.checkpoints.vil import infer_vil_config, read_vil
from xlstm_zoo.schemas import ConfigError

FIXTURE = Path(__file__).parent / "fixtures" / "vil"
WEIGHTS = FIXTURE / "vil2_tiny_fixture.th"
# float32 reference vs float32 ours (parallel form there, chunkwise here; stabiliser conventions differ only in
# where the 1e-6 eps enters): rounding-level differences, far below 1e-4 relative.
RTOL = 1e-4


@pytest.fixture(scope="module")
def reference():
    return torch.load(FIXTURE / "reference_io.pt", weights_only=True)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("name,count", [("vil-tiny", 6_391_528), ("vil-small", 23_398_696), ("vil-base", 89_263_528)])
def test_published_sizes_have_the_reference_parameter_counts(name, count):
    model = build_model(name, device="meta")
    assert sum(p.numel() for p in model.parameters()) == count


@pytest.mark.parametrize("name,overrides", [("vil-tiny", {"model.depth": 2}), ("vil-small", {"model.depth": 1}),
                                            ("vil-base", {"model.depth": 1})])
def test_forward_on_imagenet_shapes(name, overrides):
    """Full width at 224x224, with one or two of the 12 block pairs to keep the CPU cost down."""
    torch.manual_seed(0)
    model = build_model(name, overrides=overrides).eval()
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        out = model(images)
    assert out.logits.shape == (2, 1000) and out.features.shape == (2, 2 * model.config.dim)
    assert torch.isfinite(out.logits).all() and not torch.allclose(out.logits[0], out.logits[1])
    with pytest.raises(ValueError, match=r"\(batch, 3, 224, 224\)"):
        model(torch.randn(2, 3, 32, 32))


def test_shapes_give_the_reference_architecture():
    config = infer_vil_config(read_vil(WEIGHTS))
    ctor = json.loads((FIXTURE / "README.json").read_text())["ctor_kwargs"]
    assert (config.dim, config.depth, config.patch_size, list(config.image_shape), config.num_classes) == (
        ctor["dim"], ctor["depth"], ctor["patch_size"], ctor["input_shape"], ctor["output_shape"][0])
    assert config.pooling == ctor["pooling"] and config.legacy_norm is ctor["legacy_norm"]


def test_convert_matches_the_reference_logits(tmp_path, reference, capsys):
    out = tmp_path / "vil"
    assert convert_main(["--from", "vil", "--weights", str(WEIGHTS), "--out", str(out)]) == 0
    model = build_model(f"local-dir:{out}")
    assert sum(p.numel() for p in model.parameters()) == 135_658  # README.json's count of the reference
    with torch.no_grad():
        logits = model(reference["input"]).logits
    assert relative_error(logits, reference["logits"]) < RTOL


def test_pretrained_reads_the_torch_hub_cache(tmp_path, monkeypatch, reference):
    """vil-tiny's weights file name, holding the fixture; the overrides make vil-tiny the fixture's shape."""
    shrink = {"model.dim": 64, "model.depth": 2, "model.patch_size": 4, "model.image_shape": [3, 32, 32],
              "model.num_classes": 10}
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(CheckpointError, match=rf"vil2_tiny16_e800_in1k.th .*looked in {tmp_path}/hub/checkpoints"):
        build_model("vil-tiny", pretrained=True, overrides=shrink)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    shutil.copy(WEIGHTS, tmp_path / "hub" / "checkpoints" / "vil2_tiny16_e800_in1k.th")
    model = build_model("vil-tiny", pretrained=True, overrides=shrink)
    with torch.no_grad():
        assert relative_error(model(reference["input"]).logits, reference["logits"]) < RTOL
    with pytest.raises(CheckpointError, match="does not fit"):  # the real vil-tiny is larger than the fixture
        build_model("vil-tiny", pretrained=True)


def test_training_reaches_every_parameter_and_drop_path_only_in_training():
    torch.manual_seed(0)
    model = build_model("vil-digits", overrides={"model.drop_path_rate": 0.5, "model.depth": 1,
                                                 "model.conv_kind": "causal1d", "model.pooling": "bilateral_avg"})
    images = torch.rand(8, 1, 8, 8)
    model(images).logits.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(images).logits, model(images).logits)
    model.train()
    with torch.no_grad():
        runs = torch.stack([model(images).logits for _ in range(4)])
    assert not torch.allclose(runs[0], runs[1:])  # a drop rate of 0.5 changes the output between calls


def test_bad_configs_name_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("kind: vil\ndim: 64\ndepth: 2\npatch_size: 3\nimage_shape: [1, 8, 8]\nconv_kernel_size: 4\n")
    with pytest.raises(ConfigError) as e:
        build_model(str(path), device="meta")
    text = str(e.value)
    assert f"{path}:4:13: model.patch_size: expected a divisor of the image height 8 and width 8, got 3" in text
    assert f"{path}:6:19: model.conv_kernel_size" in text


def test_convert_refuses_what_is_not_a_vil(tmp_path, capsys):
    path = tmp_path / "other.th"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(2, 2), "post_blocks_norm.weight": torch.zeros(2)}}, path)
    assert convert_main(["--from", "vil", "--weights", str(path), "--out", str(tmp_path / "out")]) == 1
    assert "not a Vision-LSTM (VisionLSTM2) checkpoint: no tensor 'patch_embed.proj.weight'" in capsys.readouterr().err
