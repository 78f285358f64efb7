import numpy as np
import pytest
import torch
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from remixformer.data.transforms import (
    RandomRotationSteps,
    build_image_transform,
    denormalize,
    resize_uint8,
    to_model_tensor,
)


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))


def test_eval_only_resizes_and_normalises(image):
    x = build_image_transform(32, train=False)(image)
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float(),
        size=(32, 32),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )[0]
    ref = (
        ref.round().clamp(0, 255) / 255 - torch.tensor(IMAGENET_DEFAULT_MEAN).view(3, 1, 1)
    ) / torch.tensor(IMAGENET_DEFAULT_STD).view(3, 1, 1)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert torch.allclose(x, ref, atol=0.02)
    assert torch.equal(build_image_transform(32, train=False)(image), x)  # deterministic


def test_train_pipeline_is_random_but_seedable(image):
    tf = build_image_transform(32, train=True)
    torch.manual_seed(1)
    a = tf(image)
    torch.manual_seed(1)
    b = tf(image)
    torch.manual_seed(2)
    c = tf(image)
    assert a.shape == (3, 32, 32) and torch.equal(a, b) and not torch.equal(a, c)


def test_train_pipeline_has_the_papers_steps():
    names = [type(t).__name__ for t in build_image_transform(32, train=True).transforms]
    assert names == [
        "ToImage",
        "RandomResizedCrop",
        "RandomHorizontalFlip",
        "RandomVerticalFlip",
        "RandomRotationSteps",
        "RandomAffine",
        "ColorJitter",
        "ToDtype",
        "Normalize",
    ]
    t = build_image_transform(32, train=True).transforms
    assert t[1].scale == (0.65, 1.0)
    assert tuple(t[5].translate) == (0.15, 0.15) and list(t[5].shear) == [-10.0, 10.0, -10.0, 10.0]
    assert t[6].brightness == t[6].contrast == t[6].saturation == (0.5, 1.5)


def test_rotation_angles_are_multiples_of_ten_up_to_180():
    rot = RandomRotationSteps()
    torch.manual_seed(0)
    angles = {rot.make_params([])["angle"] for _ in range(600)}
    assert angles == {float(a) for a in range(0, 181, 10)}


def test_rotation_by_180_flips_the_image():
    x = torch.arange(16, dtype=torch.uint8).view(1, 4, 4).repeat(3, 1, 1)
    out = RandomRotationSteps().transform(x, {"angle": 180.0})
    assert torch.equal(out, x.flip(-1).flip(-2))


def test_to_model_tensor_and_cache_match_eval(image):
    x = to_model_tensor(image, 16)
    assert type(x) is torch.Tensor and x.shape == (3, 16, 16)
    cached = resize_uint8(image, 16)
    assert cached.dtype == torch.uint8 and torch.equal(build_image_transform(16, False)(cached), x)
    assert denormalize(x).min() >= 0 and denormalize(x).max() <= 1


def test_light_policy_keeps_pixels_on_the_grid():
    tf = build_image_transform(8, train=True, policy="light")
    names = [type(t).__name__ for t in tf.transforms]
    assert "RandomResizedCrop" not in names and "RandomAffine" not in names
    rot = next(t for t in tf.transforms if isinstance(t, RandomRotationSteps))
    torch.manual_seed(0)
    assert {rot.make_params([])["angle"] for _ in range(200)} == {0.0, 90.0, 180.0, 270.0}
    x = torch.arange(64, dtype=torch.uint8).view(1, 8, 8).repeat(3, 1, 1)
    assert torch.equal(rot.transform(x, {"angle": 90.0}), torch.rot90(x, 1, dims=(-2, -1)))
    assert torch.equal(build_image_transform(8, True, "none")(x), build_image_transform(8, False)(x))
    with pytest.raises(ValueError, match="augmentation policy"):
        build_image_transform(8, True, "heavy")


def test_flips_policy_is_light_without_the_colour_jitter():
    light = [type(t).__name__ for t in build_image_transform(8, True, "light").transforms]
    flips = [type(t).__name__ for t in build_image_transform(8, True, "flips").transforms]
    assert "ColorJitter" in light and flips == [n for n in light if n != "ColorJitter"]
    # every pixel keeps its colour: a flipped or turned copy of the evaluation tensor
    x = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8)
    ref = build_image_transform(8, False)(x)
    variants = [ref]
    for k in range(4):
        variants += [torch.rot90(ref, k, (-2, -1)), torch.rot90(ref.flip(-1), k, (-2, -1))]
    tf = build_image_transform(8, True, "flips")
    torch.manual_seed(0)
    for _ in range(20):
        y = tf(x)
        assert any(torch.equal(y, v) for v in variants)


def test_the_model_normalises_uint8_images_exactly_as_the_float_transform_does(image):
    from remixformer.layers.imaging import MEAN, STD, normalize_images

    assert (MEAN, STD) == (tuple(IMAGENET_DEFAULT_MEAN), tuple(IMAGENET_DEFAULT_STD))
    for train, policy in ((False, "paper"), (True, "light")):
        torch.manual_seed(0)
        as_float = build_image_transform(32, train=train, policy=policy)(image)
        torch.manual_seed(0)
        as_uint8 = build_image_transform(32, train=train, policy=policy, normalize=False)(image)
        assert as_uint8.dtype == torch.uint8
        assert torch.equal(normalize_images(as_uint8[None])[0], as_float.as_subclass(torch.Tensor))
    x = torch.randn(2, 3, 8, 8)
    assert normalize_images(x) is x  # a float batch is taken as normalised already
    with pytest.raises(ValueError, match="uint8 .* or normalised floats, got dtype torch.int64"):
        normalize_images(torch.zeros(1, 3, 8, 8, dtype=torch.int64))
