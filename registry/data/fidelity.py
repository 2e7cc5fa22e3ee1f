"""Sample quality in a classifier's feature space: KID and precision/recall as torch-fidelity defines them.

The features are an image classifier's penultimate (pooled) features instead of Inception's (whose weights
would need the network). With torch-fidelity installed (`pip install 'xlstm-zoo[fidelity]'`) the scores come
from `torch_fidelity.calculate_metrics` with that classifier registered as its feature extractor; without it,
from the same computation written here (its subset sampling, polynomial kernel and k-NN balls), which
tests/test_vil_digits.py checks against torch-fidelity's own numbers recorded in a fixture.

torch-fidelity imports torchvision; PyPI's torchvision wheels are CUDA builds whose operators do not load
beside a CPU-only torch, and `import torchvision` then fails on registering `torchvision::nms`. None of
torchvision's operators are used here, so when they are missing their two schemas are declared first.
"""

from __future__ import annotations

import importlib.util
import sys
from functools import lru_cache

import numpy as np
import torch

EXTRACTOR = "xlstm-zoo-classifier"
FEATURES = "penultimate"
KID_SUBSETS = 100


@lru_cache(maxsize=4)
def classifier(spec: str) -> torch.nn.Module:
    """The feature extractor: a zoo entry's model with its default weights, or a checkpoint directory."""
    from ..builder import build_model

    pretrained = not spec.startswith(("local-dir:", "hf-hub:", "zoo-data:"))
    return build_model(spec, pretrained=pretrained).eval().requires_grad_(False)


def to_uint8(levels: torch.Tensor, max_level: int = 16) -> torch.Tensor:
    """Gray levels (N, H, W) -> uint8 images (N, 1, H, W), the input form torch-fidelity passes around."""
    return ((levels.long() * 255 + max_level // 2) // max_level).to(torch.uint8).unsqueeze(1)


@torch.no_grad()
def features(spec: str, images: torch.Tensor) -> torch.Tensor:
    """Penultimate features of uint8 images (N, 1, H, W); the classifier reads them scaled to [0, 1]."""
    return classifier(spec)(images.float() / 255).features.float()


def kid(f_generated: torch.Tensor, f_real: torch.Tensor, subset_size: int, seed: int) -> tuple[float, float]:
    """Kernel inception distance (mean, std over subsets): unbiased MMD^2 with the kernel (x.y / d + 1)^3."""
    x, y = f_generated.numpy(), f_real.numpy()
    rng = np.random.RandomState(seed)
    mmds = np.zeros(KID_SUBSETS)
    for i in range(KID_SUBSETS):
        a = x[rng.choice(len(x), subset_size, replace=False)]
        b = y[rng.choice(len(y), subset_size, replace=False)]
        kernel = lambda u, v: (u @ v.T / u.shape[1] + 1) ** 3  # noqa: E731
        k_aa, k_bb, k_ab = kernel(a, a), kernel(b, b), kernel(a, b)
        m = subset_size
        mmds[i] = ((k_aa.sum() - np.trace(k_aa) + k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
                   - 2 * k_ab.sum() / (m * m))
    return float(mmds.mean()), float(mmds.std())


def precision_recall(f_generated: torch.Tensor, f_real: torch.Tensor, neighborhood: int) -> tuple[float, float]:
    """Precision: share of generated samples inside some real sample's k-NN ball; recall: the converse."""
    radius_generated = torch.cdist(f_generated, f_generated).kthvalue(neighborhood + 1).values
    radius_real = torch.cdist(f_real, f_real).kthvalue(neighborhood + 1).values
    real_to_generated = torch.cdist(f_real, f_generated)
    recall = (real_to_generated <= radius_generated).any(1).float().mean().item()
    precision = (real_to_generated.T <= radius_real).any(1).float().mean().item()
    return precision, recall


def score_images(generated: torch.Tensor, real: torch.Tensor, *, extractor: str, kid_subset_size: int,
                 neighborhood: int, seed: int) -> dict[str, float]:
    """kid, kid_std, precision, recall of gray-level images (N, H, W) against real ones (M, H, W)."""
    size = min(kid_subset_size, len(generated), len(real))
    a, b = to_uint8(generated), to_uint8(real)
    fidelity = torch_fidelity()
    if fidelity is not None:
        return _with_torch_fidelity(fidelity, a, b, extractor, size, neighborhood, seed)
    f_a, f_b = features(extractor, a), features(extractor, b)
    mean, std = kid(f_a, f_b, size, seed)
    precision, recall = precision_recall(f_a, f_b, neighborhood)
    return {"kid": mean, "kid_std": std, "precision": precision, "recall": recall}


def torch_fidelity():
    """The torch_fidelity module, or None when it is not installed."""
    if importlib.util.find_spec("torch_fidelity") is None:
        return None
    if importlib.util.find_spec("torchvision") is not None and not _torchvision_ops_load():
        _declare_torchvision_ops()
    import torch_fidelity

    return torch_fidelity


def _torchvision_ops_load() -> bool:
    import ctypes
    from pathlib import Path

    library = next(Path(importlib.util.find_spec("torchvision").origin).parent.glob("_C*.so"), None)
    try:
        return library is not None and bool(ctypes.CDLL(str(library)))
    except OSError:
        return False


@lru_cache(maxsize=1)
def _declare_torchvision_ops() -> None:
    """The schemas torchvision's import registers fake kernels for; their kernels are never called here."""
    library = torch.library.Library("torchvision", "DEF")
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
    sys.modules[__name__]._torchvision_library = library  # keep the definitions alive


def _with_torch_fidelity(fidelity, generated, real, extractor: str, size: int, neighborhood: int, seed: int):
    from torch.utils.data import Dataset

    class Images(Dataset):
        def __init__(self, images):
            self.images = images

        def __len__(self):
            return len(self.images)

        def __getitem__(self, i):
            return self.images[i]

    if EXTRACTOR not in fidelity.registry.FEATURE_EXTRACTORS_REGISTRY:
        fidelity.register_feature_extractor(EXTRACTOR, _extractor_class(fidelity))
    metrics = fidelity.calculate_metrics(
        input1=Images(generated), input2=Images(real), cuda=False, kid=True, prc=True, feature_extractor=EXTRACTOR,
        feature_extractor_weights_path=extractor, kid_subsets=KID_SUBSETS, kid_subset_size=size,
        prc_neighborhood=neighborhood, rng_seed=seed, cache=False, verbose=False, save_cpu_ram=True)
    return {"kid": metrics["kernel_inception_distance_mean"], "kid_std": metrics["kernel_inception_distance_std"],
            "precision": metrics["precision"], "recall": metrics["recall"]}


def _extractor_class(fidelity):
    """torch-fidelity's feature extractor for our classifiers (the spec comes as feature_extractor_weights_path)."""

    class ClassifierFeatures(fidelity.FeatureExtractorBase):
        def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
            super().__init__(name, features_list)
            self.spec = feature_extractor_weights_path

        @staticmethod
        def get_provided_features_list():
            return (FEATURES,)

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return FEATURES

        @staticmethod
        def can_be_compiled():
            return False

        @staticmethod
        def get_dummy_input_for_compile():
            return None

        def forward(self, images):
            return (features(self.spec, images),)

    return ClassifierFeatures
