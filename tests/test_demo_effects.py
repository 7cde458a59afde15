"""The demo table's verdicts (experiments/demo_effects.py): shown only beyond two standard
errors in the paper's direction, otherwise within noise or opposite."""

from __future__ import annotations

import math

import pytest

from experiments.demo_effects import Effect, accuracy_se, effects_table, proportion_se


def test_standard_errors_by_hand():
    assert accuracy_se(0.5, 0.5, 200) == pytest.approx(math.sqrt(2 * 0.25 / 200))   # 0.05
    assert proportion_se(0.8, 100, 0.5, 25) == pytest.approx(math.sqrt(0.0016 + 0.01))


@pytest.mark.parametrize("base,value,direction,verdict", [
    (0.40, 0.55, +1, "shown"),          # +0.15 > 2 x 0.0495
    (0.40, 0.48, +1, "within noise"),   # +0.08 < 2 x 0.0496
    (0.40, 0.25, +1, "opposite"),
    (0.95, 0.20, -1, "shown"),          # CUDA: lower is the paper's effect
    (0.20, 0.95, -1, "opposite"),
])
def test_verdict(base, value, direction, verdict):
    e = Effect("p", "b", "v", "m", base, value, accuracy_se(base, value), direction)
    assert e.verdict == verdict


def test_table_prints_every_row_with_its_verdict():
    rows = [Effect("CUDA", "clean", "poisoned", "top-1", 0.95, 0.2, 0.03, -1),
            Effect("RDED", "random", "rded", "top-1", 0.68, 0.61, 0.048, +1)]
    text = effects_table(rows, seed=2)
    assert "seed 2" in text and "| CUDA | clean | poisoned | top-1 | 0.950 | 0.200 |" in text
    assert "-0.750 (SE 0.030) | shown |" in text and "| within noise |" in text
