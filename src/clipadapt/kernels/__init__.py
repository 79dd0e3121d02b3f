"""Math kernels: pure functions on tensors, shapes in their docstrings, shared by the methods, the scoring
and ToyCLIP's training (graphs, balancing, vMF, crops, logistic regression, metrics)."""

from clipadapt.kernels.graph import conjugate_gradient, knn, knn_graph, propagate_labels, to_csr
from clipadapt.kernels.sinkhorn import sinkhorn_balance

__all__ = ["conjugate_gradient", "knn", "knn_graph", "propagate_labels", "sinkhorn_balance", "to_csr"]
