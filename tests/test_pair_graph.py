"""The image-pair export form (export.pair_graph): the same function as ProbabilityGraph, for every registry model."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import TINY_CANVAS_PX  # noqa: E402

from retinacli.export.pair_graph import (PairProbabilityGraph, fold_bn, from_pairs, pair_concat_weight,  # noqa: E402
                                         pair_form, pair_weight, to_pairs)
from retinacli.models.normalise import ProbabilityGraph  # noqa: E402
from retinacli.models.registry import MODELS, create_model  # noqa: E402
from retinacli.models.unet import conv_bn_relu  # noqa: E402


def _randomise_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every batch norm non-trivial statistics, so folding them is really tested."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.6 - 0.3)
    return model.eval()


def test_fold_bn_equals_conv_then_batch_norm():
    torch.manual_seed(0)
    seq = _randomise_bn(conv_bn_relu(3, 5))
    w, b = fold_bn(seq)
    x = torch.randn(2, 3, 9, 9)
    with torch.no_grad():
        ref = seq[1](seq[0](x))
        got = torch.nn.functional.conv2d(x, w, b, padding=1)
    assert torch.allclose(ref, got, atol=1e-5)


def test_pairs_are_a_reshape_and_block_diagonal_weights_keep_images_apart():
    torch.manual_seed(1)
    x = torch.randn(4, 3, 8, 8)
    assert torch.equal(from_pairs(to_pairs(x)), x)
    assert torch.equal(to_pairs(x)[1, 3:], x[3])  # pair 1 = images 2 and 3 side by side
    w = torch.randn(5, 3, 3, 3)
    per_image = torch.nn.functional.conv2d(x, w, padding=1)
    paired = from_pairs(torch.nn.functional.conv2d(to_pairs(x), pair_weight(w), padding=1))
    assert torch.allclose(per_image, paired, atol=1e-5)
    # a concatenation of two parts, each laid out as pairs
    y = torch.randn(4, 2, 8, 8)
    w2 = torch.randn(5, 5, 3, 3)
    ref = torch.nn.functional.conv2d(torch.cat([x, y], 1), w2, padding=1)
    got = torch.nn.functional.conv2d(torch.cat([to_pairs(x), to_pairs(y)], 1), pair_concat_weight(w2, [3, 2]),
                                     padding=1)
    assert torch.allclose(ref, from_pairs(got), atol=1e-5)
    with pytest.raises(ValueError, match="add up"):
        pair_concat_weight(w2, [3, 3])


# identity shortcuts too: a first level as wide as its input (vessels 3, haemorrhage 1 = green, A/V stream 2: 3 + 1)
ARCHITECTURES = [(name, {"channels": (4, 8, 16)}) for name in sorted(MODELS)] + [
    ("vessel_unet", {"channels": (3, 6)}), ("hemorrhage_unet", {"channels": (1, 4)}),
    ("av_seqnet", {"channels": (4, 8), "av_channels": (4, 8)})]


@pytest.mark.parametrize("name,kwargs", ARCHITECTURES)
@pytest.mark.parametrize("batch", [1, 2, 3])
def test_pair_graph_equals_the_probability_graph(name, kwargs, batch):
    torch.manual_seed(2)
    model = _randomise_bn(create_model(name, **kwargs), seed=3)
    image = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8)
    image[:, :, :4] = 0  # a black border, as outside the FOV
    with torch.no_grad():
        ref = ProbabilityGraph(model).eval()(image)
        got = PairProbabilityGraph(model).eval()(image)
    assert got.shape == ref.shape
    assert float((got - ref).abs().max()) < 1e-5


def test_pair_form_refuses_an_unknown_model():
    with pytest.raises(ValueError, match="no pair form"):
        pair_form(torch.nn.Conv2d(3, 1, 1))


def test_the_exported_pair_graph_takes_odd_batches_in_onnx_runtime(tiny_model_dir):
    from retinacli.runtime.onnxruntime_backend import OnnxRuntimeBackend

    plain = OnnxRuntimeBackend(tiny_model_dir / "model.onnx", threads=1)
    pairs = OnnxRuntimeBackend(tiny_model_dir / "model.avx512.onnx", threads=1)
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 5):
        batch = rng.integers(0, 256, (n, 3, TINY_CANVAS_PX, TINY_CANVAS_PX), dtype=np.uint8)
        a, b = plain.run(batch), pairs.run(batch)
        assert b.shape == a.shape == (n, 1, TINY_CANVAS_PX, TINY_CANVAS_PX)
        assert float(np.abs(a - b).max()) < 1e-5
