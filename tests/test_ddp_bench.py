"""benchmarks/ddp.py runs (two gloo processes, a few steps) and reports what the docs quote."""
from __future__ import annotations


def test_ddp_benchmark_quick():
    from benchmarks import ddp
    s = ddp.main(["--quick"])
    assert s["bench"] == "ddp-2proc-gloo" and s["device"] == "cpu" and s["processes"] == 2
    for step in ("vae", "critic"):
        for way in ("1proc", "sozo", "ddp"):
            assert s[f"{step}-{way}_per_s"] > 0
        assert s[f"ratio_{step}-sozo"] > 0 and s[f"scaling_{step}-sozo"] > 0 and s[f"scaling_{step}-ddp"] > 0
        assert s[f"{step}_grad_gap"] < 1e-5, step  # sozo's averaged gradients are DDP's
        assert s[f"{step}_buckets"] >= 1
