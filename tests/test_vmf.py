from __future__ import annotations

import mpmath
import pytest
import torch

from clipadapt.kernels.vmf import log_vmf_normaliser

mpmath.mp.dps = 50


def _reference(kappa: float, dim: int) -> tuple[float, float]:
    """log C_d(κ) and its derivative −I_{d/2}(κ)/I_{d/2−1}(κ), to 50 digits."""
    nu = mpmath.mpf(dim) / 2 - 1
    value = (
        nu * mpmath.log(kappa)
        - (mpmath.mpf(dim) / 2) * mpmath.log(2 * mpmath.pi)
        - mpmath.log(mpmath.besseli(nu, kappa))
    )
    return float(value), float(-mpmath.besseli(nu + 1, kappa) / mpmath.besseli(nu, kappa))


@pytest.mark.parametrize("dim", [512, 768, 1024])
def test_log_normaliser_and_gradient_match_high_precision(dim: int) -> None:
    kappas = [1.0, 2.5, 10.0, 100.0, 511.0, 1000.0, 3000.0, 10000.0]
    kappa = torch.tensor(kappas, dtype=torch.float64, requires_grad=True)
    values = log_vmf_normaliser(kappa, dim)
    (grads,) = torch.autograd.grad(values.sum(), kappa)
    for k, value, grad in zip(kappas, values.tolist(), grads.tolist(), strict=True):
        ref_value, ref_grad = _reference(k, dim)
        assert value == pytest.approx(ref_value, rel=1e-12, abs=1e-9), (dim, k)
        assert grad == pytest.approx(ref_grad, rel=1e-10, abs=1e-12), (dim, k)


def test_log_normaliser_is_finite_where_bessel_functions_are_not() -> None:
    kappa = torch.tensor([1e-3, 1.0, 1e5], dtype=torch.float64)
    assert torch.isfinite(log_vmf_normaliser(kappa, 1024)).all()
    assert log_vmf_normaliser(torch.tensor([3000.0]), 1024).dtype == torch.float32
