import io

import numpy as np
import pytest
from PIL import Image

from remixformer.data.images import BadImageError, image_size, load_image


def _png(path, img):
    img.save(path, format="PNG")
    return path


def test_missing_file_names_file_and_case(tmp_path):
    with pytest.raises(BadImageError, match=r"nope\.png \(case 'c1'\): file not found") as e:
        load_image(tmp_path / "nope.png", case_id="c1")
    assert e.value.case_id == "c1" and e.value.path.endswith("nope.png")


def test_missing_file_mentions_a_letter_case_twin(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "Nel026.jpg")
    with pytest.raises(BadImageError, match="differing only in letter case exists: Nel026.jpg"):
        load_image(tmp_path / "NEL026.jpg")


def test_corrupt_file(tmp_path):
    p = tmp_path / "bad.jpg"
    p.write_bytes(b"this is not an image")
    with pytest.raises(BadImageError, match=r"bad\.jpg \(case 'x'\): not a readable image"):
        load_image(p, case_id="x")


def test_truncated_file(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    p = tmp_path / "trunc.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(BadImageError, match=r"trunc\.jpg \(case 'y'\): truncated file"):
        load_image(p, case_id="y")


def test_pixel_limit_guards_against_decompression_bombs(tmp_path):
    p = _png(tmp_path / "big.png", Image.new("RGB", (100, 50)))
    assert load_image(p, max_pixels=5000).size == (100, 50)
    with pytest.raises(BadImageError, match=r"100x50 = 5,000 pixels exceeds the limit of 4,999"):
        load_image(p, max_pixels=4999, case_id="z")


def test_elongated_images_are_refused_from_the_header(tmp_path, monkeypatch):
    from PIL import ImageFile

    from remixformer.data.images import ImageTooLargeError

    ok = _png(tmp_path / "ok.png", Image.new("RGB", (20, 1)))
    assert load_image(ok).size == (20, 1)  # 20:1 is the most elongated shape accepted
    tall = _png(tmp_path / "tall.png", Image.new("RGB", (1, 2_000_000)))  # 2 M pixels, a few KB
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(1))
    with pytest.raises(ImageTooLargeError, match=r"1x2000000 is 2,000,000 times longer than wide"):
        load_image(tall, case_id="t")
    with pytest.raises(ImageTooLargeError, match=r"21x1 is 21 times"):
        load_image(_png(tmp_path / "wide.png", Image.new("RGB", (21, 1))))
    assert decoded == []  # refused before any pixel was decoded


def test_a_pixel_limit_above_pillows_own_is_honoured(tmp_path, monkeypatch):
    # Pillow refuses images above 2 x Image.MAX_IMAGE_PIXELS (179 M pixels by default) by itself;
    # shrink its limit so that a small image stands for one between Pillow's limit and ours
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    p = _png(tmp_path / "mid.png", Image.new("RGB", (100, 50)))  # 5,000 > 2 x 1,000
    assert load_image(p, max_pixels=6000).size == (100, 50)
    assert Image.MAX_IMAGE_PIXELS == 6000  # raised to ours, never lowered
    load_image(p, max_pixels=5000)
    assert Image.MAX_IMAGE_PIXELS == 6000


def test_rgba_drops_alpha_keeping_colours(tmp_path):
    arr = np.zeros((3, 5, 4), dtype=np.uint8)
    arr[..., 0], arr[..., 3] = 200, 0  # fully transparent red
    img = load_image(_png(tmp_path / "a.png", Image.fromarray(arr)))
    assert img.mode == "RGB" and np.asarray(img)[0, 0].tolist() == [200, 0, 0]


def test_palette_with_transparency_and_la_and_gray(tmp_path):
    pal = Image.new("P", (4, 4), 1)
    pal.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    pal.info["transparency"] = 0
    assert np.asarray(load_image(_png(tmp_path / "p.png", pal)))[0, 0].tolist() == [10, 20, 30]
    la = Image.merge("LA", [Image.new("L", (4, 4), 77), Image.new("L", (4, 4), 5)])
    assert np.asarray(load_image(_png(tmp_path / "la.png", la)))[0, 0].tolist() == [77, 77, 77]
    assert np.asarray(load_image(_png(tmp_path / "l.png", Image.new("L", (4, 4), 9))))[1, 1].tolist() == [
        9,
        9,
        9,
    ]


def test_16_bit_grayscale_is_scaled_to_8_bit(tmp_path):
    arr = np.array([[0, 257, 65535, 32896]], dtype=np.uint16)
    p = tmp_path / "g16.png"
    Image.fromarray(arr).save(p)
    assert Image.open(p).mode.startswith("I")
    out = np.asarray(load_image(p))
    assert out.dtype == np.uint8 and out[0, :, 0].tolist() == [0, 1, 255, 128]


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((10, 20, 3), dtype=np.uint8)
    arr[:, :10] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    p = tmp_path / "rot.jpg"
    Image.fromarray(arr).save(p, exif=exif.tobytes(), quality=95)
    img = load_image(p)
    assert img.size == (10, 20)  # portrait after applying the tag
    out = np.asarray(img).mean(axis=(1, 2))
    assert out[:8].mean() > 200 and out[-8:].mean() < 50  # white half now on top
    assert image_size(p) == (20, 10)  # the header alone is unrotated


def test_bytes_input(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (7, 3), (1, 2, 3)).save(buf, "PNG")
    assert np.asarray(load_image(buf.getvalue()))[0, 0].tolist() == [1, 2, 3]
    with pytest.raises(BadImageError, match=r"<5 bytes> \(case 'b'\)"):
        load_image(b"hello", case_id="b")
