"""Finite-difference check of image gradients, shared by the identity-network tests."""

from __future__ import annotations

from typing import Callable, Iterable

import torch


def assert_pixel_gradients_match(loss: Callable[[torch.Tensor], torch.Tensor], pixels: torch.Tensor,
                                 positions: Iterable[tuple[int, int, int]], step: float = 1e-6,
                                 rtol: float = 1e-3, atol: float = 1e-9) -> torch.Tensor:
    """Autograd's gradient of a scalar ``loss`` at (1, 3, H, W) float64 ``pixels`` against
    central differences at each (channel, row, column); every checked entry must be
    non-zero. Returns the analytic gradient for further checks."""
    (gradient,) = torch.autograd.grad(loss(pixels), pixels)
    for channel, row, column in positions:
        bump = torch.zeros_like(pixels)
        bump[0, channel, row, column] = step
        with torch.no_grad():
            numeric = float((loss(pixels + bump) - loss(pixels - bump)) / (2 * step))
        analytic = float(gradient[0, channel, row, column])
        assert analytic != 0.0
        assert abs(analytic - numeric) <= atol + rtol * abs(numeric), (channel, row, column, analytic, numeric)
    return gradient
