"""Math kernels shared by methods: pure functions on tensors, shapes in their docstrings."""

from clipadapt.kernels.sinkhorn import sinkhorn_balance

__all__ = ["sinkhorn_balance"]
