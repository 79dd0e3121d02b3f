"""Math kernels shared by methods: pure functions on tensors, shapes in their docstrings."""

from clipadapt.kernels.graph import conjugate_gradient, knn, knn_graph, propagate_labels, to_csr
from clipadapt.kernels.sinkhorn import sinkhorn_balance

__all__ = ["conjugate_gradient", "knn", "knn_graph", "propagate_labels", "sinkhorn_balance", "to_csr"]
