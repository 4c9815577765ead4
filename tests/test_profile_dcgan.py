"""benchmarks.profile_dcgan: ops go to the right category by the ops they run inside."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from benchmarks.profile_dcgan import CATEGORIES, LOOP, OUTSIDE, category, main


def _chain(*names: str, transposed: bool = False) -> list:
    inputs = [None] * 7 + [transposed]
    return [SimpleNamespace(name=n, concrete_inputs=inputs if n == "aten::convolution_backward" else []) for n in names]


def test_categories_follow_the_enclosing_op():
    assert category(_chain("aten::mkldnn_convolution", "aten::_convolution", "aten::conv2d")) == "conv fwd (D)"
    assert category(_chain("aten::_convolution", "aten::conv_transpose2d")) == "conv-transpose fwd (G)"
    assert category(_chain("aten::empty", "aten::convolution_backward", transposed=True)) == "conv-transpose bwd (G)"
    assert category(_chain("aten::convolution_backward")) == "conv bwd (D)"
    assert category(_chain("aten::_fused_adam_", "Optimizer.step#Adam.step")) == "optimizer step"
    assert category(_chain("aten::leaky_relu_backward", "LeakyReluBackward0")) == "activations fwd+bwd"
    assert category(_chain("aten::native_batch_norm", "aten::batch_norm")) == "batch norm fwd"
    assert category(_chain("aten::mm", "aten::matmul")).startswith("matrix products")
    assert category(_chain("aten::empty")) == "allocation"
    assert category(_chain("aten::something_new")) == "other torch ops"


@pytest.mark.slow
def test_profile_runs_and_its_parts_add_up(capsys):
    out = main(["--steps", "2", "--warmup", "1"])
    for side in ("plain-loop", "sozo"):
        parts = {k: v for k, v in out[side].items() if k in CATEGORIES}
        assert parts["conv bwd (D)"] > 0 and parts[OUTSIDE] >= 0 and parts[LOOP] >= 0
    assert "| category | ms/step | share |" in capsys.readouterr().out
