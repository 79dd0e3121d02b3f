"""Every method on the user's device: placement, no host round trips in inner loops, the precision policy.

Without a GPU the inner loops run on torch's ``meta`` device, which stands in for an accelerator: its
tensors have shapes but no data, so a CPU tensor mixed into the computation raises an error (as on CUDA),
and so does reading a value back on the host (``float()``, ``.item()``, ``.tolist()``, a boolean mask's
selection): exactly the two faults that make GPU code wrong or slow. On a machine with CUDA the
comparisons at the end also run on the real device.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from clipadapt.errors import ClipAdaptError
from clipadapt.runtime import float32_matmuls, gradient_scaler, optimiser_step, precision_policy, seeded_randomness
from conftest import whurs19_files

CUDA = torch.cuda.is_available()
DEVICE = "meta"  # the accelerator stand-in


def on_device(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A tensor of ``shape`` on the stand-in device (no data)."""
    return torch.empty(*shape, dtype=dtype, device=DEVICE)


def test_a_cpu_tensor_in_a_device_computation_and_a_host_read_are_both_caught() -> None:
    """The two faults the tests below rule out are really raised on the stand-in device."""
    x = on_device(4, 3)
    with pytest.raises((RuntimeError, NotImplementedError), match="device"):
        _ = x + torch.ones(4, 3)
    with pytest.raises((RuntimeError, NotImplementedError)):
        float(x.sum())
    with pytest.raises((RuntimeError, NotImplementedError)):
        x[x[:, 0] > 0]  # a boolean mask: its size must be read back


def test_inmap_official_solver_and_sinkhorn_stay_on_the_device_without_waiting() -> None:
    from clipadapt.methods.inmap import harden, learn_vision_proxies, pseudo_labels

    x, text = on_device(50, 8), on_device(4, 8)
    labels, hard = harden(pseudo_labels(x, text, 0.01, 20), 0.6)
    proxies, _ = learn_vision_proxies(x, text, labels, steps=30)
    assert labels.device.type == hard.device.type == proxies.device.type == DEVICE


def test_graph_kernels_stay_on_the_device_without_waiting() -> None:
    from clipadapt.kernels import conjugate_gradient, knn
    from clipadapt.methods.reclip_lp import class_centres, text_basis

    x = on_device(40, 8)
    sims, idx = knn(x, 3, block=16)
    _, shot_idx = knn(x, 3, queries=on_device(5, 8))
    dense = x @ x.T / 40  # CG on a dense SPD-like operator: the loop itself is what is checked
    z = conjugate_gradient(lambda p, out: torch.addmm(p, dense, p, alpha=-0.5, out=out), on_device(40, 3), 20)
    basis = text_basis(on_device(4, 8))
    centres = class_centres(x, on_device(40, dtype=torch.long), on_device(4, 8))
    assert {t.device.type for t in (sims, idx, shot_idx, z, basis, centres)} == {DEVICE}


def test_transclip_solver_stays_on_the_device_without_waiting() -> None:
    from clipadapt.methods.transclip import initial_means, shot_means, solve

    x, text = on_device(30, 8), on_device(3, 8)
    log_zeroshot = torch.log_softmax(100 * x @ text.T, dim=1)
    graph = x @ x.T / 6  # the solver's graph is sparse CSR; a dense one checks the rest of the loop
    means, variance = initial_means(x, log_zeroshot.exp()), x.new_full((8,), 1 / 8)
    shots = (on_device(6, 8), F.one_hot(on_device(6, dtype=torch.long), 3).float())
    z, means, variance, predictions = solve(x, 50 * text, graph, log_zeroshot.exp(), means, variance, 3, 2,
                                            prior=log_zeroshot, shots=shots)  # fmt: skip
    assert z.device.type == means.device.type == predictions[-1].device.type == DEVICE
    assert shot_means(shots[0], on_device(6, dtype=torch.long), 3).device.type == DEVICE


def test_clip_enhance_distillation_stays_on_the_device_without_waiting() -> None:
    from clipadapt.methods.clip_enhance import CLIPEnhance, ensemble_log_probs

    method = CLIPEnhance(epochs=2, batch_size=16, views_per_epoch=4)
    x, text, views = on_device(40, 64), on_device(3, 64), on_device(40, 6, 64).half()
    teacher, losses = method._distil(3000.0 * text, x, views)
    log_probs = ensemble_log_probs(teacher, x, views, block=16)
    assert teacher.device.type == losses.device.type == log_probs.device.type == DEVICE


def test_few_shot_training_loops_stay_on_the_device_without_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    import clipadapt.methods.cmm as cmm
    from clipadapt.methods.linear_probe import GridAdamW
    from clipadapt.methods.tip_adapter import TipAdapterF, grid_accuracies

    adamw = torch.optim.AdamW  # CMM asks for the fused kernel, which the stand-in device does not have
    monkeypatch.setattr(torch.optim, "AdamW", lambda *a, fused=None, **k: adamw(*a, **k))
    x, y, text = on_device(24, 8), on_device(24, dtype=torch.long), on_device(3, 8)
    mapping, texts, losses = cmm.CMM(iterations=20, batch_size=4).train(x, y, text)
    assert mapping.device.type == texts.device.type == losses.device.type == DEVICE
    accuracies = grid_accuracies(x, y, text, on_device(6, 8), on_device(6, dtype=torch.long), [0.5, 1.0], [1.0, 2.0])
    assert accuracies.shape == (2, 2) and accuracies.device.type == DEVICE
    heads = on_device(2, 3, 8)
    stepped = GridAdamW(heads).step(heads, on_device(2, 3, 8), on_device(2), on_device(2))
    assert stepped.device.type == DEVICE
    keys = TipAdapterF(epochs=2, batch_size=8).train_keys(_support(x, y, text))
    assert keys.device.type == DEVICE


def _support(x: torch.Tensor, y: torch.Tensor, text: torch.Tensor):
    from clipadapt.features.featureset import FeatureSet

    return FeatureSet(x, text, y)


def test_the_precision_policy_and_its_tf32_switch() -> None:
    cpu = torch.device("cpu")
    assert precision_policy(cpu).record() == {"precision": "auto", "autocast": "off", "tf32": False}
    assert precision_policy(cpu, "bf16").autocast == "bf16"
    strict = precision_policy(torch.device("cuda"), "fp32")
    assert strict.autocast == "off" and strict.tf32 is False
    assert precision_policy(torch.device("cuda"), "bf16").tf32 is True
    with pytest.raises(ClipAdaptError, match="unknown precision"):
        precision_policy(cpu, "fp8")
    with float32_matmuls(cpu, "auto") as policy:  # nothing to switch on the CPU
        assert policy.tf32 is False


def test_encoder_tuning_scales_gradients_under_fp16_autocast_only() -> None:
    """fp16 autocast (CUDA without bf16) underflows small LayerNorm gradients without a gradient scaler."""
    cpu = torch.device("cpu")
    assert gradient_scaler(cpu, "fp16").is_enabled()
    assert not any(gradient_scaler(cpu, p).is_enabled() for p in ("bf16", "fp32", "auto"))
    layer = torch.nn.LayerNorm(4)
    optimiser = torch.optim.SGD(layer.parameters(), lr=0.1)
    for precision in ("fp16", "fp32"):
        before = layer.weight.detach().clone()
        optimiser_step((layer(torch.randn(8, 4)) * torch.randn(8, 4)).sum(), optimiser, gradient_scaler(cpu, precision))
        assert not torch.equal(before, layer.weight), f"the step was taken under {precision}"


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_tf32_is_switched_for_the_block_and_restored() -> None:
    before = torch.backends.cuda.matmul.fp32_precision
    with float32_matmuls(torch.device("cuda"), "fp32"):
        assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    with float32_matmuls(torch.device("cuda"), "auto"):
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    assert torch.backends.cuda.matmul.fp32_precision == before


def test_seeded_randomness_repeats_draws_and_restores_the_generators(monkeypatch: pytest.MonkeyPatch) -> None:
    import random

    import numpy as np

    reseeded = []  # the CUDA generators are not restored afterwards, so they must not be reseeded
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: reseeded.append(seed))
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    reseeded.clear()
    with seeded_randomness(7):
        first = (random.random(), float(np.random.rand()), float(torch.rand(())))
    with seeded_randomness(7):
        second = (random.random(), float(np.random.rand()), float(torch.rand(())))
    assert first == second
    assert torch.equal(torch.rand(3), expected), "the surrounding stream is untouched"
    assert reseeded == [], "the accelerators' generators were reseeded"


def test_featureset_and_classifier_move_every_tensor() -> None:
    from clipadapt.methods.base import Classifier
    from clipadapt.methods.encoder import TunedClassifier
    from helpers import as_featureset, make_feature_arrays

    features = as_featureset(make_feature_arrays())
    moved = features.to("meta")
    assert {moved.image_features.device.type, moved.text_features.device.type, moved.labels.device.type} == {"meta"}
    tuned = TunedClassifier(torch.ones(3, 4), ["a", "b", "c"], layernorm_state={"ln.weight": torch.ones(4)})
    on_meta = tuned.to("meta")
    assert on_meta.weights.device.type == on_meta.layernorm_state["ln.weight"].device.type == "meta"
    assert on_meta.classnames == tuned.classnames and isinstance(on_meta, TunedClassifier)
    assert Classifier(torch.eye(3), ["a", "b", "c"]).logits(torch.eye(3)).argmax(1).tolist() == [0, 1, 2]


@pytest.mark.parametrize("method", ["zeroshot", "inmap", "transclip", "reclip-lp"])
def test_the_result_records_where_and_how_precisely_the_method_ran(method: str) -> None:
    from clipadapt.evaluation import run_method
    from helpers import as_featureset, make_modality_gap

    record = run_method(as_featureset(make_modality_gap(n=120)), method, device="cpu", precision="fp32")
    assert record["runtime"] == {"device": "cpu", "precision": "fp32", "autocast": "off", "tf32": False}


FROZEN = ["zeroshot", "inmap", "transclip", "stata", "auto", "reclip-lp", "clip-enhance"]
FEW_SHOT = ["cmm", "tip-adapter", "tip-adapter-f", "linear-probe", "cross-modal-linear-probe", "transclip-fs"]


@pytest.mark.skipif(not CUDA or not whurs19_files(), reason="needs CUDA and the WHU-RS19 features")
@pytest.mark.parametrize("method", FROZEN + FEW_SHOT)
@pytest.mark.parametrize("path", whurs19_files(), ids=lambda p: p.stem)
def test_cpu_and_cuda_predictions_agree_on_every_whurs19_file_in_fp32(path, method: str) -> None:
    """Issue 19: with the same hyperparameters (solver included) and fp32, ≥ 99.5 % of the rows agree."""
    from clipadapt.evaluation import evaluate
    from clipadapt.features import load_feature_file

    features = load_feature_file(path)
    shots = 4 if method in FEW_SHOT else None
    runs = [evaluate(features, method, seed=1, shots=shots, device=d, precision="fp32") for d in ("cpu", "cuda")]
    (cpu_record, on_cpu), (cuda_record, on_cuda) = runs
    assert cpu_record["hparams"].get("solver_used") == cuda_record["hparams"].get("solver_used")
    agreement = float((on_cpu.logits.argmax(1) == on_cuda.logits.argmax(1)).float().mean())
    assert agreement >= 0.995, f"{path.stem} {method}: {agreement:.4f}"


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("method", ["inmap", "transclip", "stata", "auto", "reclip-lp", "clip-enhance"])
def test_cpu_and_cuda_agree_in_fp32(method: str) -> None:
    from clipadapt.evaluation import evaluate
    from helpers import as_featureset, make_modality_gap

    features = as_featureset(make_modality_gap(n=600))
    on_cpu = evaluate(features, method, device="cpu", precision="fp32")[1].logits.argmax(1)
    on_cuda = evaluate(features, method, device="cuda", precision="fp32")[1].logits.argmax(1)
    assert (on_cpu == on_cuda).float().mean() >= 0.995
