from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import transforms

from clipadapt.backbones import load_backbone
from clipadapt.data import DEFAULT_TEMPLATES, open_source
from clipadapt.errors import ClipAdaptError
from clipadapt.features import FeatureStore, extract
from helpers import make_image_folder, write_corrupt


class CountingBackbone:
    """Wraps a backbone, counting encoded images and optionally failing after some batches."""

    def __init__(self, inner, fail_after_batches: int | None = None) -> None:
        self.inner = inner
        self.images = 0
        self.batches = 0
        self.fail_after = fail_after_batches

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise KeyboardInterrupt
        self.batches += 1
        self.images += len(pixels)
        return self.inner.encode_images(pixels)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def test_extract_then_reuse_cache(tiny_backbone, image_folder: Path, tmp_path: Path) -> None:
    source = open_source(str(image_folder))
    store = FeatureStore(tmp_path / "store")
    counting = CountingBackbone(tiny_backbone)
    first = store.extract(counting, source, batch_size=4, num_workers=0)
    assert counting.images == 18 and first.features.shape == (18, 32) and first.valid.all()
    second = store.extract(counting, source, batch_size=4, num_workers=0)
    assert counting.images == 18, "a second run reads the cache"
    assert torch.equal(first.features, second.features)


def test_cache_features_match_direct_encoding(tiny_backbone, image_folder: Path, tmp_path: Path) -> None:
    source = open_source(str(image_folder))
    cached = FeatureStore(tmp_path / "s").extract(tiny_backbone, source, batch_size=5, num_workers=1)
    direct = tiny_backbone.encode_images(torch.stack([tiny_backbone.preprocess(source.load(i)) for i in range(18)]))
    assert torch.allclose(cached.features, direct, atol=1e-5)


def test_interrupted_extraction_resumes_where_it_stopped(tiny_backbone, image_folder: Path, tmp_path: Path) -> None:
    source = open_source(str(image_folder))
    store = FeatureStore(tmp_path / "store")
    interrupted = CountingBackbone(tiny_backbone, fail_after_batches=3)
    with pytest.raises(KeyboardInterrupt):
        store.extract(interrupted, source, batch_size=2, num_workers=0, chunk_size=4)
    entry = next((tmp_path / "store").iterdir())
    assert sorted(p.name for p in entry.glob("chunk-*.npz")) == ["chunk-00000.npz"]  # one full chunk of 4 kept
    assert not list(entry.glob(".*tmp*")), "no half-written files are left behind"
    resumed = CountingBackbone(tiny_backbone)
    result = store.extract(resumed, source, batch_size=2, num_workers=0, chunk_size=4)
    assert resumed.images == 14, "only the images of unfinished chunks are encoded again"
    fresh = FeatureStore(tmp_path / "fresh").extract(tiny_backbone, source, batch_size=2, num_workers=0)
    assert torch.allclose(result.features, fresh.features, atol=1e-6)


def test_cache_key_changes_with_model_weights_transform_and_data(
    tiny_openclip: str, tiny_backbone, image_folder: Path, tmp_path: Path
) -> None:
    source = open_source(str(image_folder))
    key = FeatureStore.key
    base = key(FeatureStore.key_fields(tiny_backbone, source, tiny_backbone.preprocess))
    assert base == key(FeatureStore.key_fields(tiny_backbone, open_source(str(image_folder)), tiny_backbone.preprocess))
    other_transform = transforms.Compose([transforms.Resize(32), transforms.CenterCrop(32), transforms.ToTensor()])
    assert base != key(FeatureStore.key_fields(tiny_backbone, source, other_transform))
    checkpoint = tmp_path / "w.pt"
    torch.save(tiny_backbone.model.state_dict(), checkpoint)
    from_file = load_backbone(tiny_openclip, str(checkpoint), device="cpu")
    assert base != key(FeatureStore.key_fields(from_file, source, from_file.preprocess))
    (image_folder / "red" / "000.png").write_bytes((image_folder / "blue" / "000.png").read_bytes())
    changed = open_source(str(image_folder))
    assert base != key(FeatureStore.key_fields(tiny_backbone, changed, tiny_backbone.preprocess))


def test_changed_images_are_never_served_stale(tiny_backbone, image_folder: Path, tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "store")
    before = store.extract(tiny_backbone, open_source(str(image_folder)), num_workers=0).features
    make_image_folder(image_folder, seed=99)  # same paths, new pixels
    after = store.extract(tiny_backbone, open_source(str(image_folder)), num_workers=0).features
    assert not torch.allclose(before, after)


def test_corrupt_images_are_skipped_and_counted(tiny_backbone, image_folder: Path, tmp_path: Path) -> None:
    write_corrupt(image_folder / "red" / "zzz-broken.png")
    (image_folder / "green" / "zzz-empty.jpg").write_bytes(b"")
    source = open_source(str(image_folder))
    features = extract(tiny_backbone, source, DEFAULT_TEMPLATES, FeatureStore(tmp_path / "s"), num_workers=0)
    assert len(features) == 18 and features.extra["skipped"] == 2
    assert not any("zzz" in p for p in features.paths)
    assert features.text_all.shape == (len(DEFAULT_TEMPLATES), 3, 32)
    assert torch.allclose(features.text_features.norm(dim=-1), torch.ones(3))


def test_all_images_unreadable_is_an_error(tiny_backbone, tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_corrupt(tmp_path / "bad" / name / "x.png")
    source = open_source(str(tmp_path / "bad"))
    with pytest.raises(ClipAdaptError, match="none of the 2 images could be read"):
        extract(tiny_backbone, source, DEFAULT_TEMPLATES, FeatureStore(tmp_path / "s"), num_workers=0)


def test_descriptions_give_prototypes_without_text_all(tiny_backbone, image_folder: Path, tmp_path: Path) -> None:
    source = open_source(str(image_folder))
    prompts = {"blue": ["sky coloured"], "green": ["grass coloured", "leafy"], "red": ["blood coloured"]}
    features = extract(tiny_backbone, source, prompts, FeatureStore(tmp_path / "s"), num_workers=0)
    assert features.text_all is None and features.text_features.shape == (3, 32)
    assert np.isfinite(features.text_features.numpy()).all()


def test_views_are_seeded_crops_extracted_once(tiny_backbone, image_folder: Path, tmp_path: Path) -> None:
    from PIL import Image

    from clipadapt.features.views import RandomCropView, crop_box
    from clipadapt.runtime import hash_seed

    store = FeatureStore(tmp_path / "store")
    source = open_source(str(image_folder))
    first = extract(tiny_backbone, source, DEFAULT_TEMPLATES[:1], store, batch_size=4, num_workers=0, views=2)
    assert first.view_features is not None and first.view_features.shape == (18, 2, 32)
    assert not torch.allclose(first.view_features[:, 0], first.view_features[:, 1]), "two different crops"
    counting = CountingBackbone(tiny_backbone)
    again = extract(counting, source, DEFAULT_TEMPLATES[:1], store, batch_size=4, num_workers=0, views=2)
    assert counting.images == 0 and torch.equal(first.view_features, again.view_features), "read from the cache"
    image = Image.effect_noise((64, 48), 60).convert("RGB")
    view = RandomCropView(lambda im: torch.from_numpy(np.asarray(im).copy()), view=0, size=20, seed=0)
    crop = view(image, 3)
    assert torch.equal(crop, view(image, 3)) and crop.shape == (20, 20, 3), "seeded, and squeezed to the input size"
    box = crop_box(64, 48, torch.Generator().manual_seed(hash_seed(0, 0, 3)), (0.6, 0.8), (3 / 4, 4 / 3))
    whole_box = np.asarray(image.crop(box).resize((20, 20), Image.Resampling.BILINEAR))
    assert np.abs(crop.numpy().astype(int) - whole_box.astype(int)).max() <= 1, "the whole box, as RandomResizedCrop"


def test_flip_view_is_the_mirror_image_and_travels_in_feature_files(
    tiny_backbone, image_folder: Path, tmp_path: Path
) -> None:
    from PIL import ImageOps

    from clipadapt.features import load_feature_file, save_feature_file
    from clipadapt.methods.supervised import augmentation

    source = open_source(str(image_folder))
    store = FeatureStore(tmp_path / "store")
    with pytest.raises(ClipAdaptError, match="use --views 1"):
        extract(tiny_backbone, source, DEFAULT_TEMPLATES[:1], store, num_workers=0, views=2, view_augment="flip")
    features = extract(tiny_backbone, source, DEFAULT_TEMPLATES[:1], store, num_workers=0, views=1, view_augment="flip")
    assert features.view_features is not None and features.view_features.shape == (18, 1, 32)
    pixels = torch.stack([tiny_backbone.preprocess(ImageOps.mirror(source.load(i))) for i in range(4)])
    mirrored = tiny_backbone.encode_images(pixels).cpu()
    assert torch.allclose(features.view_features[:4, 0], mirrored, atol=1e-5)
    assert not torch.allclose(features.view_features[:4, 0], features.image_features[:4], atol=1e-3)
    assert augmentation(features) == "1 view(s) per image (flip)"
    save_feature_file(features, tmp_path / "f.npz")
    assert load_feature_file(tmp_path / "f.npz").view_augment == "flip"


def _jpegs(root: Path, n: int = 6, size: tuple[int, int] = (500, 375)) -> Path:
    """Real-size JPEGs (photo-like gradients and noise) in two class folders."""
    from PIL import Image

    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, size[0])[None, :, None]
    for i in range(n):
        pixels = np.clip(ramp * rng.uniform(0.3, 1, 3) + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255)
        folder = root / ("things", "stuff")[i % 2]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.jpg", quality=90)
    return root


@pytest.mark.parametrize("model", ["toyclip", "open_clip"])
def test_split_preprocessing_gives_the_reference_pixels_bit_for_bit(model: str, tiny_openclip, tmp_path: Path) -> None:
    """Loaders send uint8 pixels and the device normalises them: exactly ToTensor + Normalize."""
    from clipadapt.features.pixels import split_transform

    backbone = load_backbone("toyclip", device="cpu") if model == "toyclip" else load_backbone(tiny_openclip, "random")
    source = open_source(str(_jpegs(tmp_path / "jpegs")))
    host, to_device = split_transform(backbone.preprocess)
    images = [source.load(i) for i in range(len(source))]
    sent = torch.stack([host(image) for image in images])
    assert sent.dtype == torch.uint8, "a quarter of float32's bytes through shared and pinned memory"
    reference = torch.stack([backbone.preprocess(image) for image in images])
    assert torch.equal(to_device(sent, torch.device("cpu")), reference)
    features = FeatureStore(tmp_path / "store").extract(backbone, source, batch_size=3, num_workers=0).features
    assert torch.allclose(features, backbone.encode_images(reference), atol=1e-6)


def test_transforms_that_do_not_end_in_to_tensor_and_normalize_run_whole(tiny_hf_dir: Path) -> None:
    from clipadapt.features.pixels import split_transform
    from clipadapt.features.views import FlipView

    hf = load_backbone(f"hf:{tiny_hf_dir}", device="cpu")
    assert split_transform(hf.preprocess) is None  # a Hugging Face image processor
    assert split_transform(FlipView(hf.preprocess)) is None
    assert split_transform(transforms.Compose([transforms.ToTensor()])) is None


@pytest.mark.parametrize(
    "options",
    [{"quality": 90}, {"quality": 90, "subsampling": 0}, {"quality": 75, "subsampling": 1},
     {"quality": 85, "progressive": True}, {"quality": 90, "mode": "L"}, {"quality": 90, "mode": "CMYK"}],
)  # fmt: skip
def test_jpegs_decode_to_the_pixels_pillow_gives(options: dict, tmp_path: Path) -> None:
    """open_image decodes JPEGs with torchvision (twice as fast): the pixels must be Pillow's, bit for bit."""
    from PIL import Image

    from clipadapt.data.sources import open_image

    mode = options.pop("mode", "RGB")
    yy, xx = np.mgrid[0:75, 0:100] / 100
    pixels = np.stack([128 + 100 * np.sin(8 * xx + 3 * yy), 128 + 100 * np.cos(5 * yy), 200 * xx * yy], -1)
    path = tmp_path / "photo.jpg"
    Image.fromarray(pixels.astype(np.uint8)).convert(mode).save(path, **options)
    with Image.open(path) as reference:
        assert np.array_equal(np.asarray(open_image(path)), np.asarray(reference.convert("RGB")))


def test_a_broken_jpeg_is_unreadable_with_pillows_reason(tmp_path: Path) -> None:
    from clipadapt.data.sources import UnreadableImage, open_image

    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 4)
    with pytest.raises(UnreadableImage, match=r"^truncated or corrupt JPEG file \(.+\)$"):
        open_image(path)


def _photo(width: int, height: int, seed: int):
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    pixels = np.stack([128 + 120 * np.sin(13 * xx + 7 * yy), 128 + 120 * np.cos(27 * xx * yy), 255 * (xx > 0.5)], -1)
    return Image.fromarray(np.clip(pixels + rng.normal(0, 30, pixels.shape), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("size", [224, 64])
def test_resizing_on_the_device_gives_pillows_pixels_bit_for_bit(size: int) -> None:
    """Resize(S, bicubic) + CenterCrop(S) computed as matrix products must equal Pillow's fixed-point filter:
    landscape, portrait (where newer Pillow runs the vertical pass first), upscaled, unchanged sides."""
    from torchvision.transforms.functional import pil_to_tensor

    from clipadapt.features.pixels import PillowResizeCrop, pillow_pass_order

    assert pillow_pass_order() is not None, "the installed Pillow's pass order was recognised"
    reference = transforms.Compose([transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC),
                                    transforms.CenterCrop(size)])  # fmt: skip
    rng = np.random.default_rng(size)
    shapes = [
        (size, 2 * size),
        (2 * size, size),
        (size, size),
        (size + 1, size),
        (294 * size // 224, 650 * size // 224),
    ]
    shapes += [(int(w), int(h)) for w, h in rng.integers(size // 2, 3 * size, (20, 2))]
    images = [_photo(w, h, i) for i, (w, h) in enumerate(shapes)]
    resized = PillowResizeCrop(size)([pil_to_tensor(image) for image in images], torch.device("cpu"))
    for image, ours in zip(images, resized, strict=True):
        assert torch.equal(ours, pil_to_tensor(reference(image))), image.size


def test_extraction_resizing_on_the_device_gives_the_reference_features(tiny_openclip, tmp_path: Path) -> None:
    from clipadapt.features.pixels import DeviceResizeNormalize, split_transform

    backbone = load_backbone(tiny_openclip, "random", device="cpu")
    assert isinstance(split_transform(backbone.preprocess, resize_on_device=True)[1], DeviceResizeNormalize)
    for i, (w, h) in enumerate([(50, 40), (40, 50), (33, 90), (64, 64), (50, 40), (120, 31)]):
        root = tmp_path / "mixed" / ("things", "stuff")[i % 2]
        root.mkdir(parents=True, exist_ok=True)
        _photo(w, h, i).save(root / f"{i}.jpg", quality=92)
    source = open_source(str(tmp_path / "mixed"))
    on_device = FeatureStore(tmp_path / "a", resize_on_device=True).extract(backbone, source, batch_size=4)
    in_loaders = FeatureStore(tmp_path / "b", resize_on_device=False).extract(backbone, source, batch_size=4)
    assert torch.equal(on_device.features, in_loaders.features)


def test_only_a_bicubic_resize_and_a_centre_crop_of_one_size_move_to_the_device() -> None:
    from clipadapt.features.pixels import DeviceNormalize, split_transform

    tail = [transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.25,) * 3)]
    bicubic, bilinear = transforms.InterpolationMode.BICUBIC, transforms.InterpolationMode.BILINEAR
    for head in ([transforms.Resize(32, interpolation=bilinear), transforms.CenterCrop(32)],
                 [transforms.Resize(32, interpolation=bicubic), transforms.CenterCrop(28)],
                 [transforms.Resize((32, 32), interpolation=bicubic), transforms.CenterCrop(32)],
                 [transforms.Resize(32, interpolation=bicubic, max_size=40), transforms.CenterCrop(32)]):  # fmt: skip
        assert isinstance(
            split_transform(transforms.Compose([*head, *tail]), resize_on_device=True)[1], DeviceNormalize
        )
