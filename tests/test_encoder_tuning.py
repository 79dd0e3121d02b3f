"""ReCLIP self-training and FAIR: their pure pieces by hand, and end-to-end runs on real architectures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clipadapt.errors import MethodUnavailable
from clipadapt.evaluation.runner import fit_and_predict, run_method
from clipadapt.kernels.crops import random_crops
from clipadapt.methods import build_method
from clipadapt.methods.encoder import layernorm_names, tuned
from clipadapt.methods.fair import (
    adaptive_weight,
    alignment_scores,
    crop_weights,
    fairness_loss,
    moving_average,
)
from clipadapt.methods.reclip import masked_cross_entropy, shared_labels

# -- pure pieces ----------------------------------------------------------------------------------------


def test_label_sharing_keeps_exactly_the_agreed_samples():
    vision = torch.tensor([0, 1, 2, 2, 1, 0])
    text = torch.tensor([0, 2, 2, 1, 1, 1])
    assert shared_labels(vision, text).nonzero().squeeze(1).tolist() == [0, 2, 4]
    assert shared_labels(vision, text, sharing=False).all()


def test_masked_cross_entropy_is_plain_cross_entropy_over_the_agreed_rows():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, -1.0]])
    labels = torch.tensor([0, 0, 1])
    mask = torch.tensor([True, False, True])
    expected = torch.nn.functional.cross_entropy(logits[mask], labels[mask])
    assert torch.isclose(masked_cross_entropy(logits, labels, mask), expected), "no extra 1/B on either side"


def test_adaptive_weight_matches_hand_computed_cases():
    scores = torch.tensor([[0.30, 0.31, 0.29], [0.2, 0.2, 0.1]])
    # probabilities softmax(100 ψ) = softmax([30, 31, 29]) ∝ (e⁻¹, 1, e⁻²): S1 = 1/Z, S2 = e⁻¹/Z; a tie gives 0
    z = 1 + math.exp(-1) + math.exp(-2)
    assert torch.allclose(adaptive_weight(scores), torch.tensor([(1 / z) * (1 - math.exp(-1)) / z, 0.0]))
    # the other readings of "the top-2 logits": 100 ψ, or ψ itself (S1 = 0.31, S2 = 0.30)
    assert torch.allclose(adaptive_weight(scores, "logits"), torch.tensor([31.0, 0.0]))
    assert torch.allclose(adaptive_weight(scores, "cosines"), torch.tensor([0.31 * 0.01, 0.0]))


def test_adaptive_weight_on_probabilities_is_a_confidence_in_0_1_not_a_vanishing_factor():
    g = torch.Generator().manual_seed(0)
    scores = 0.25 + 0.02 * torch.randn(256, 10, generator=g)  # crop-weighted cosines: small top-2 gaps
    gamma = adaptive_weight(scores)
    assert gamma.min() >= 0 and gamma.max() <= 1
    assert gamma.mean() > 0.1, "the self-training term must not be switched off"
    assert adaptive_weight(scores, "cosines").mean() < 0.01, "the raw-cosine reading is of order 1e-3"
    certain = torch.tensor([[0.9, 0.1, 0.1]])
    assert torch.allclose(adaptive_weight(certain), torch.ones(1))


def test_fairness_average_moves_halfway_and_only_the_batch_gets_gradients():
    past = torch.tensor([0.6, 0.4], requires_grad=True)
    batch = torch.tensor([0.2, 0.8], requires_grad=True)
    mean = moving_average(past, batch, 0.5)
    assert torch.allclose(mean, torch.tensor([0.4, 0.6]))
    mean.sum().backward()
    assert past.grad is None and torch.allclose(batch.grad, torch.full((2,), 0.5))
    assert moving_average(None, batch, 0.5) is batch, "each epoch starts from its first batch"


def test_crop_weights_are_cosines_over_their_sum_not_a_softmax():
    cls = torch.tensor([[1.0, 0.0]])
    crop_cls = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [3.0, 1.0]]])  # cosines 1, 1/√2, 0, 3/√10
    cos = torch.tensor([1.0, 2**-0.5, 0.0, 3 / 10**0.5])
    weights = crop_weights(cls, crop_cls)
    assert torch.allclose(weights[0], cos / cos.sum())
    assert not torch.allclose(weights[0], cos.softmax(0))
    assert math.isclose(float(weights.sum()), 1.0, rel_tol=1e-6)


def test_alignment_score_keeps_only_the_top_k_crops():
    weights = torch.tensor([[0.4, 0.1, 0.3, 0.2]])
    anchors = torch.eye(3)
    crops = torch.tensor([[[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0], [1.0, 0, 0]]])  # crop 1 alone points to class 2
    scores = alignment_scores(crops, anchors, weights, k=2)  # keeps crops 0 and 2
    assert torch.allclose(scores, torch.tensor([[0.4, 0.3, 0.0]]))
    changed = crops.clone()
    changed[0, 1] = torch.tensor([0.0, 1.0, 0.0])  # a dropped crop does not matter
    assert torch.allclose(alignment_scores(changed, anchors, weights, k=2), scores)
    assert torch.allclose(alignment_scores(crops, anchors, weights, k=4), torch.tensor([[0.6, 0.3, 0.1]]))


def test_fairness_term_matches_its_formula():
    mean_probs = torch.tensor([0.5, 0.25, 0.25])
    expected = -(math.log(0.5) + 2 * math.log(0.25)) / 3
    assert math.isclose(float(fairness_loss(mean_probs)), expected, rel_tol=1e-6)
    assert fairness_loss(torch.full((4,), 0.25)) < fairness_loss(torch.tensor([0.7, 0.1, 0.1, 0.1]))


def test_random_crops_have_the_input_size_and_follow_the_generator():
    pixels = torch.randn(2, 3, 16, 16)
    a = random_crops(pixels, 5, (0.5, 0.9), torch.Generator().manual_seed(0))
    b = random_crops(pixels, 5, (0.5, 0.9), torch.Generator().manual_seed(0))
    assert a.shape == (2, 5, 3, 16, 16) and torch.equal(a, b)


# -- end to end on real architectures -------------------------------------------------------------------


def _features(backbone, folder):
    from clipadapt.data import open_source
    from clipadapt.features import extract

    return extract(backbone, open_source(str(folder)), ["a photo of a {c}."], batch_size=8, num_workers=0)


def _snapshot(backbone) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in backbone.model.named_parameters()}


@pytest.fixture(params=["toyclip", "open_clip", "transformers"])
def backbone(request, tiny_openclip, tiny_hf_dir):
    from clipadapt.backbones import load_backbone

    if request.param == "toyclip":
        return load_backbone("toyclip", device="cpu")
    if request.param == "open_clip":
        return load_backbone(tiny_openclip, "random", device="cpu")
    return load_backbone(f"hf:{tiny_hf_dir}", device="cpu")


@pytest.mark.parametrize(
    ("method", "hparams", "towers"),
    [
        ("reclip", {"epochs": 1, "k": 3}, ["vision", "text"]),
        ("fair", {"epochs": 1, "crops": 3, "top_k": 2, "batch_size": 8, "lr": 1e-2}, ["vision"]),
    ],
)
def test_one_epoch_changes_only_layernorms(backbone, image_folder, method, hparams, towers):
    features = _features(backbone, image_folder)
    before = _snapshot(backbone)
    fit = build_method(method, hparams).fit(features.without_labels())
    after = _snapshot(backbone)
    assert all(torch.equal(before[n], after[n]) for n in before), "the backbone must be left as it was"

    state = fit.classifier.layernorm_state
    assert sorted(state) == sorted(layernorm_names(backbone, towers)) and state
    assert any(not torch.equal(state[n], before[n]) for n in state), "adaptation moved no LayerNorm"
    with tuned(backbone, state):
        loaded = _snapshot(backbone)
    changed = {n for n in before if not torch.equal(before[n], loaded[n])}
    assert changed and changed <= set(state)  # every other parameter is bit-identical
    assert all(torch.equal(before[n], v) for n, v in _snapshot(backbone).items())  # restored after use
    assert fit.target_logits is not None and fit.target_logits.shape == (len(features), features.num_classes)


@pytest.mark.parametrize(
    ("method", "hparams"), [("reclip", {"epochs": 1, "k": 3}), ("fair", {"epochs": 1, "crops": 3})]
)
def test_the_tuned_classifier_saves_reloads_and_reproduces_its_target_logits(image_folder, tmp_path, method, hparams):
    from clipadapt.artifact import load_classifier, save_classifier
    from clipadapt.backbones import load_backbone

    backbone = load_backbone("toyclip", device="cpu")
    features = _features(backbone, image_folder)
    fit = build_method(method, hparams).fit(features.without_labels())
    reloaded = load_classifier(save_classifier(fit.classifier, tmp_path / "artifact"))
    assert type(reloaded) is type(fit.classifier)
    assert all(torch.equal(v, fit.classifier.layernorm_state[k]) for k, v in reloaded.layernorm_state.items())
    again = reloaded.image_logits(features.encoder, features.normalised()[0])
    assert torch.allclose(again, fit.target_logits, atol=1e-4)


def test_fair_history_has_both_loss_terms_and_gamma_for_every_epoch(image_folder):
    from clipadapt.backbones import load_backbone

    features = _features(load_backbone("toyclip", device="cpu"), image_folder)
    record = run_method(features, "fair", hparams={"epochs": 2, "crops": 3, "batch_size": 8})
    history = record["history"]
    assert len(history["loss_self_training"]) == len(history["loss_fairness"]) == len(history["gamma_mean"]) == 2
    for st, fair, total in zip(history["loss_self_training"], history["loss_fairness"], history["loss"], strict=True):
        assert st > 0 and fair > 0 and math.isclose(st + fair, total, rel_tol=1e-5)
    assert all(0 < g <= 1 for g in history["gamma_mean"])


def test_per_epoch_histories_score_the_model_and_measure_how_far_the_layernorms_move(image_folder):
    """Both methods record each epoch's model predictions (scored as epoch_acc1 when labels exist) and the
    relative shift of their tuned parameters, 0 before any step; ReCLIP's last predictions are its output."""
    from clipadapt.backbones import load_backbone

    features = _features(load_backbone("toyclip", device="cpu"), image_folder)
    for name, hp, epochs in (
        ("reclip", {"epochs": 2, "k": 3}, 3),
        ("fair", {"epochs": 2, "crops": 3, "batch_size": 8}, 2),
    ):
        prediction = fit_and_predict(features, build_method(name, hp))
        record = run_method(features, name, hparams=hp)
        shift, acc = record["history"]["layernorm_shift"], record["history"]["epoch_acc1"]
        assert len(shift) == len(acc) == epochs and all(0 <= a <= 1 for a in acc)
        assert shift[-1] > 0 and (name == "fair" or shift[0] == 0)
        assert acc[-1] == pytest.approx(float((prediction.logits.argmax(1) == features.labels).float().mean()))


def test_reclip_official_schedule_runs_the_codes_epochs(image_folder):
    """schedule="official": min(100, ⌊N/5000⌋ + 2) epochs, here 2 (the paper's min(50 epochs, 5000 steps)
    is the default)."""
    from clipadapt.backbones import load_backbone

    features = _features(load_backbone("toyclip", device="cpu"), image_folder)
    fit = build_method("reclip", {"schedule": "official", "k": 3}).fit(features.without_labels())
    assert fit.classifier.hparams["epochs_run"] == 2 and len(fit.history["loss"]) == 2


def test_reclip_v_centres_are_mean_original_features_of_every_propagated_node(image_folder):
    """The official cluster centroids: unprojected features of all nodes label propagation assigns to a class,
    the text anchors included, from the last model; inference is the mean of both sides' cosine logits."""
    import torch.nn.functional as F

    from clipadapt.backbones import load_backbone
    from clipadapt.methods.reclip import first_prompts
    from clipadapt.methods.reclip_lp import propagation_scores

    features = _features(load_backbone("toyclip", device="cpu"), image_folder)
    fit = build_method("reclip", {"epochs": 2, "k": 3}).fit(features.without_labels())
    classifier = fit.classifier
    frozen, text0 = features.normalised()
    tuned_x = F.normalize(classifier.tuned_features(features.encoder), dim=-1)
    nodes = propagation_scores(tuned_x, text0, k=3, with_anchors=True).argmax(1)
    points = torch.cat([text0, tuned_x])
    for c in range(features.num_classes):
        members = points[nodes == c]
        expected = F.normalize(members.mean(0), dim=0) if len(members) else text0[c]
        assert torch.allclose(classifier.centres[c], expected, atol=1e-5)
    assert len(first_prompts(features.encoder.sentences)[0]) == 1
    expected_logits = 50.0 * (tuned_x @ classifier.centres.T + frozen @ classifier.weights.T)
    assert torch.allclose(fit.target_logits, expected_logits, atol=1e-4)


def test_encoder_methods_need_images_not_a_feature_file():
    from helpers import as_featureset, make_feature_arrays

    features = as_featureset(make_feature_arrays())
    for name in ("reclip", "fair"):
        with pytest.raises(MethodUnavailable, match="feature file"):
            run_method(features, name)


def test_inductive_adapts_on_train_rows_and_scores_test_rows(image_folder):
    from clipadapt.backbones import load_backbone

    backbone = load_backbone("toyclip", device="cpu")
    features = _features(backbone, image_folder)
    features.split = np.array(["train", "test"] * (len(features) // 2))
    prediction = fit_and_predict(features, build_method("reclip", {"epochs": 1, "k": 3, "inductive": True}))
    assert len(prediction.target) == len(prediction.test) == len(features) // 2
    assert set(prediction.target.encoder.rows.tolist()).isdisjoint(prediction.test.encoder.rows.tolist())
    assert prediction.logits.shape == (len(features) // 2, features.num_classes)


def test_label_free_encoder_methods_ignore_shuffled_labels(image_folder):
    from clipadapt.backbones import load_backbone

    backbone = load_backbone("toyclip", device="cpu")
    features = _features(backbone, image_folder)
    shuffled = features.subset(np.arange(len(features)))
    shuffled.labels = features.labels[torch.randperm(len(features), generator=torch.Generator().manual_seed(1))]
    for name, hp in (("reclip", {"epochs": 2, "k": 3}), ("fair", {"epochs": 1, "crops": 3, "batch_size": 8})):
        a = fit_and_predict(features, build_method(name, hp), seed=3).logits
        b = fit_and_predict(shuffled, build_method(name, hp), seed=3).logits
        assert torch.equal(a, b), name


def test_strong_view_survives_posterize_at_full_magnitude():
    """timm's RandAugment asks for 0 bits at magnitude 10 (reached by its noise); Pillow ≥ 11 refuses that,
    older Pillow gave a black image, and so does FAIR's strong view."""
    from PIL import Image

    from clipadapt.backbones import load_backbone
    from clipadapt.data.augment import posterize
    from clipadapt.methods.fair import strong_augmentation

    strong = strong_augmentation(load_backbone("toyclip", device="cpu"))
    rand_augment = strong.transforms[0].transforms[1].transforms[0]
    assert posterize in [op.aug_fn for op in rand_augment.ops]
    image = Image.new("RGB", (8, 8), (200, 100, 50))
    assert posterize(image, 0).getextrema() == ((0, 0), (0, 0), (0, 0))
    assert posterize(image, 1).getpixel((0, 0)) == (128, 0, 0)


def test_results_do_not_depend_on_the_number_of_loader_workers(image_folder):
    """Each strong view is seeded by its pass and row and the shuffles come from the sampler's own generator,
    so decoding and augmenting in worker processes changes nothing (and no worker count enters the result)."""
    import dataclasses

    from clipadapt.backbones import load_backbone

    features = _features(load_backbone("toyclip", device="cpu"), image_folder)
    in_workers = dataclasses.replace(features, encoder=dataclasses.replace(features.encoder, num_workers=2))
    for name, hp in (("fair", {"epochs": 2, "crops": 3, "batch_size": 8}), ("reclip", {"epochs": 2, "k": 3})):
        main = fit_and_predict(features, build_method(name, hp), seed=5)
        workers = fit_and_predict(in_workers, build_method(name, hp), seed=5)
        assert torch.equal(main.logits, workers.logits), name
        assert main.history["pseudo_labels"] == workers.history["pseudo_labels"], name


def test_reclip_gives_the_same_result_with_its_images_decoded_once_or_every_epoch(image_folder, monkeypatch):
    import clipadapt.features.images as images
    from clipadapt.backbones import load_backbone

    features = _features(load_backbone("toyclip", device="cpu"), image_folder)
    assert features.encoder.decode(features.encoder.backbone.preprocess) is not None
    in_memory = fit_and_predict(features, build_method("reclip", {"epochs": 2, "k": 3}), seed=2)
    monkeypatch.setattr(images, "MEMORY_PIXELS_BYTES", 0)
    assert features.encoder.decode(features.encoder.backbone.preprocess) is None
    decoded = fit_and_predict(features, build_method("reclip", {"epochs": 2, "k": 3}), seed=2)
    assert torch.equal(in_memory.logits, decoded.logits)
