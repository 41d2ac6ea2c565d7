"""What the benchmark sections share: interleaved timing rounds, within-round ratios, FLOP counts.

A comparison on a shared, noisy machine is only trusted as a ratio measured side by side: every
configuration runs in every round, one after the other, and a ratio is the median over rounds of the
ratio *within* a round (both sides saw the same machine conditions).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes (``fn`` must wait for its own result)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


Round = dict[str, float]


def interleaved_rounds(steps: dict[str, Callable[[], object]], *, rounds: int, repeats: int,
                       on_round: Callable[[int, Round], None] | None = None) -> list[Round]:
    """Runs every function of ``steps`` ``repeats`` times per round, in turn, for ``rounds`` rounds;
    returns per round the median seconds of one call of each. ``on_round(i, medians)`` is called
    after each round (for printing as the run goes)."""
    if rounds < 1 or repeats < 1:
        raise ValueError(f"rounds={rounds}, repeats={repeats}: both must be >= 1")
    out = []
    for i in range(rounds):
        medians = {name: statistics.median(timed(fn) for _ in range(repeats)) for name, fn in steps.items()}
        out.append(medians)
        if on_round is not None:
            on_round(i, medians)
    return out


def within_round_ratios(rounds: list[dict[str, float]], num: str, den: str) -> list[float]:
    """``rounds[i][num] / rounds[i][den]`` for every round (of seconds: > 1 means ``num`` is slower)."""
    return [r[num] / r[den] for r in rounds]


def median_ratio(rounds: list[dict[str, float]], num: str, den: str) -> float:
    """Median over rounds of the within-round ratio ``num / den``."""
    return statistics.median(within_round_ratios(rounds, num, den))


def conv2d_flops(out_h: int, out_w: int, kernel_h: int, kernel_w: int, c_in: int, c_out: int,
                 bias: bool = True) -> int:
    """Floating-point operations of one image through a 2D convolution: a multiply and an add per
    weight and output position (2 k_h k_w C_in per output value), plus one add per output for a bias."""
    return out_h * out_w * c_out * (2 * kernel_h * kernel_w * c_in + (1 if bias else 0))


def dense_flops(n_in: int, n_out: int, bias: bool = True) -> int:
    return n_out * (2 * n_in + (1 if bias else 0))


def matmul_flops(n: int, m: int, k: int) -> int:
    return 2 * n * m * k


def model_forward_flops(model) -> dict:
    """Forward FLOPs of one image through a Keras functional model, counted from its layers' shapes:
    ``{"conv", "dense", "total"}``. Convolutions and dense layers only (ReLU, pooling, BatchNorm and the
    input scaling are elementwise or nearly: well under 1 % of a VGG's count); needs static
    spatial shapes."""
    import keras

    conv = dense = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D) and type(layer) is keras.layers.Conv2D:
            _, h, w, c_out = layer.output.shape
            c_in = layer.input.shape[-1]
            if h is None or w is None:
                raise ValueError(f"{layer.name}: needs a static spatial shape to count FLOPs")
            kh, kw = layer.kernel_size
            conv += conv2d_flops(h, w, kh, kw, c_in, c_out, bias=layer.use_bias)
        elif isinstance(layer, keras.layers.Dense):
            dense += dense_flops(layer.input.shape[-1], layer.units, bias=layer.use_bias)
    return {"conv": conv, "dense": dense, "total": conv + dense}
