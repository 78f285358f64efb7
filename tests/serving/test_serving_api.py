"""The web service through FastAPI's test client: endpoints, partial inputs, and every kind of bad
input answered with a 4xx JSON error that names what was wrong."""

import io
import tempfile

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from serving_helpers import TASKS, png_bytes

from remixformer.serving import Predictor
from remixformer.serving.app import create_app


@pytest.fixture(scope="module")
def client(predictor):
    app = create_app(predictor, max_upload_bytes=64 * 1024, max_image_pixels=400 * 400)
    with TestClient(app) as c:
        yield c


def post(client, files=None, data=None, **kw):
    files = {k: (f"{k}.png", v, "image/png") for k, v in (files or {}).items()}
    return client.post("/predict", files=files or None, data=data, **kw)


def error_of(response, status):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def test_health(client):
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and len(body["model"]) == 64
    assert body["pool"]["workers"] == 1


def test_health_reports_a_model_that_cannot_predict(make_checkpoint):
    broken = Predictor.from_checkpoint(make_checkpoint("CDM"))
    with torch.no_grad():  # as if NaN weights had been loaded
        list(broken.model.parameters())[-1].fill_(float("nan"))  # a head: every answer
    with TestClient(create_app(broken)) as c:
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "failing"
        assert "self-check failed" in r.json()["detail"] and "not finite" in r.json()["detail"]
        r = post(c, {}, {"sex": "male"})
        assert r.status_code == 500 and "NaN" not in r.text  # never a NaN probability in an answer


def test_health_turns_failing_after_consecutive_internal_errors_and_recovers(predictor):
    class Flaky:
        fail = True

        def __getattr__(self, name):
            return getattr(predictor, name)

        def predict(self, *a, **k):
            if self.fail:
                raise RuntimeError("simulated bug")
            return predictor.predict(*a, **k)

    flaky = Flaky()
    with TestClient(create_app(flaky)) as c:
        assert c.get("/health").json()["status"] == "ok"
        for n in (1, 2, 3):
            assert post(c, {}, {"sex": "male"}).status_code == 500
            assert c.get("/health").json()["consecutive_failures"] == n
        r = c.get("/health")
        assert r.status_code == 503 and "last 3 predictions failed" in r.json()["detail"]
        assert post(c, {}, {"sex": ""}).status_code == 400  # a bad request is not the model's fault
        assert c.get("/health").status_code == 503
        flaky.fail = False
        assert post(c, {}, {"sex": "male"}).status_code == 200
        r = c.get("/health")
        assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["internal_errors"] == 3


def test_model_description(client):
    body = client.get("/model").json()
    assert body["diagnosis_classes"] == TASKS["diag"]
    assert body["image_fields"] == ["clinical", "dermoscopy"]
    assert body["input_sizes"] == {"clinical": 64, "dermoscopy": 64}
    assert {f["name"] for f in body["metadata_fields"]} == {"age", "sex", "location", "changed"}
    assert body["metadata_schema"]["fields"][0]["name"] == "age"
    assert body["limits"]["max_upload_bytes"] == 64 * 1024
    assert body["limits"]["max_image_pixels"] == 160_000
    assert body["checkpoint"]["file"] == "tiny_CDM.safetensors"
    assert "not a medical device" in body["disclaimer"]


def test_predict_full_case_with_overlays(client):
    r = post(
        client,
        {"clinical": png_bytes(120, 90, seed=1), "dermoscopy": png_bytes(70, 70, seed=2)},
        {"sex": "female", "age": "47", "location": "trunk", "explain": "true", "top_k": "2"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["modalities_used"] == "CDM"
    assert body["metadata_used"] == {"age": "40-50", "sex": "female", "location": "trunk", "changed": None}
    assert len(body["top_k"]) == 2 and body["diagnosis"] == body["top_k"][0]["class"]
    assert set(body["probabilities"]) == {"diag", "pn"}
    assert sum(body["probabilities"]["diag"].values()) == pytest.approx(1.0, abs=1e-5)
    assert [o["name"] for o in body["overlays"]] == ["lsm", "region", "window"]
    assert all(o["image"].startswith("data:image/png;base64,") for o in body["overlays"])
    assert body["model"]["preset"] == "remixformer_tiny"
    assert "not a medical device" in body["disclaimer"]


@pytest.mark.parametrize(
    "files, data, used",
    [
        ({"clinical": png_bytes()}, {}, "C"),
        ({"dermoscopy": png_bytes(fmt="JPEG")}, {}, "D"),
        ({}, {"sex": "male", "changed": "no"}, "M"),
        ({"dermoscopy": png_bytes()}, {"sex": "", "location": ""}, "D"),
        ({"clinical": png_bytes(), "dermoscopy": png_bytes(seed=4)}, {}, "CD"),
    ],
)
def test_predict_partial_inputs(client, files, data, used):
    r = post(client, files, data)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["modalities_used"] == used
    assert "overlays" not in body


def test_metadata_only_as_a_urlencoded_form(client):
    r = client.post("/predict", data={"age": "70-80", "location": "acral"})
    assert r.status_code == 200, r.text
    assert r.json()["modalities_used"] == "M"


def test_explain_as_a_query_parameter(client):
    r = post(client, {"dermoscopy": png_bytes()}, params={"explain": "1"})
    assert [o["name"] for o in r.json()["overlays"]] == ["region", "window"]


def test_an_empty_file_input_of_a_browser_form_is_no_file(client):
    boundary = "----browser"
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="clinical"; filename=""\r\n'
        "Content-Type: application/octet-stream\r\n\r\n\r\n"
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="sex"\r\n\r\nmale\r\n'
        f"--{boundary}--\r\n"
    ).encode()
    r = client.post(
        "/predict", content=body, headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["modalities_used"] == "M"
    # what httpx sends for an empty file name: a blank field of that name, also no file
    r = client.post(
        "/predict", files={"clinical": ("", b"", "application/octet-stream"), "sex": (None, "male")}
    )
    assert r.status_code == 200, r.text


# --- bad input ---------------------------------------------------------------------------------------
def test_upload_over_the_size_limit(client):
    big = png_bytes(600, 600, seed=9)  # random pixels do not compress: ~1 MB
    assert len(big) > 64 * 1024
    body = error_of(post(client, {"dermoscopy": big}), 413)
    assert body["field"] == "dermoscopy" and "upload limit" in body["detail"]


def test_size_limit_holds_whatever_content_length_says(client):
    big = png_bytes(600, 600, seed=9)

    def chunks():  # streamed body: no Content-Length at all
        boundary = b"xyz123"
        yield (
            b"--" + boundary + b'\r\nContent-Disposition: form-data; name="dermoscopy"; filename="a.png"\r\n'
        )
        yield b"Content-Type: image/png\r\n\r\n"
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]
        yield b"\r\n--" + boundary + b"--\r\n"

    r = client.post(
        "/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=xyz123"}
    )
    assert error_of(r, 413)["field"] == "dermoscopy"


def test_image_over_the_pixel_limit(client):
    flat = io.BytesIO()
    Image.new("RGB", (500, 500), (200, 150, 120)).save(flat, format="PNG")  # small file, many pixels
    assert len(flat.getvalue()) < 64 * 1024
    body = error_of(post(client, {"clinical": flat.getvalue()}), 413)
    assert body["field"] == "clinical" and "500x500" in body["detail"] and "pixel" in body["detail"]


def test_tall_thin_image_is_refused_before_it_is_decoded(predictor):
    tall = io.BytesIO()
    Image.new("RGB", (1, 2_000_000)).save(tall, format="PNG")  # 2 M pixels (within the limit) in 4 KB
    assert len(tall.getvalue()) < 64 * 1024
    with TestClient(create_app(predictor)) as c:  # the default limits
        body = error_of(post(c, {"dermoscopy": tall.getvalue()}), 413)
    assert body["field"] == "dermoscopy" and "2,000,000 times longer than wide" in body["detail"]


def test_a_pixel_limit_above_pillows_own_is_honoured_end_to_end(predictor, monkeypatch):
    # Pillow refuses images above 2 x Image.MAX_IMAGE_PIXELS by itself (179 M pixels by default);
    # with its limit shrunk, a 100x50 image stands for one between Pillow's limit and the service's
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    flat = io.BytesIO()
    Image.new("RGB", (100, 50), (200, 150, 120)).save(flat, format="PNG")
    with TestClient(create_app(predictor, max_image_pixels=6000)) as c:
        assert c.get("/model").json()["limits"]["max_image_pixels"] == 6000
        assert post(c, {"dermoscopy": flat.getvalue()}).status_code == 200


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"this is a text file, not an image", "not a decodable image"),
        (png_bytes()[:300], "not a decodable image"),  # truncated
        (b"", "empty"),
    ],
)
def test_files_that_are_not_decodable_images(client, payload, reason):
    body = error_of(client.post("/predict", files={"dermoscopy": ("scan.png", payload, "image/png")}), 415)
    assert body["field"] == "dermoscopy" and reason in body["detail"]


def test_unknown_metadata_field(client):
    body = error_of(post(client, {"dermoscopy": png_bytes()}, {"colour": "red"}), 422)
    assert body["field"] == "colour" and "unknown field" in body["detail"] and "'sex'" in body["detail"]


def test_unknown_metadata_value(client):
    body = error_of(post(client, {}, {"sex": "female", "location": "moon"}), 422)
    assert body["field"] == "location"
    assert "'moon' is not allowed" in body["detail"] and "acral" in body["detail"]


@pytest.mark.parametrize("age", ["-5", "1e308", "1_000", "nan", "inf", "121"])
def test_numbers_outside_the_fields_range_or_not_plain_are_refused(client, age):
    for form in ({"data": {"age": age}}, {"files": {"age": (None, age)}}):  # url-encoded and multipart
        body = error_of(client.post("/predict", **form), 422)
        assert body["field"] == "age" and "a number from 0 to 120" in body["detail"], body


def test_non_utf8_values_are_400_however_the_form_is_encoded(client):
    r = client.post(
        "/predict", content=b"sex=%FF", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert "not valid UTF-8" in error_of(r, 400)["detail"] and "\ufffd" not in r.text
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="sex"\r\n\r\n'.encode()
        + b"\xff\r\n"
        + f"--{boundary}--\r\n".encode()
    )
    r = client.post(
        "/predict", content=body, headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    assert "not valid UTF-8" in error_of(r, 400)["detail"]


def test_unknown_file_field(client):
    body = error_of(post(client, {"photo": png_bytes()}), 422)
    assert body["field"] == "photo" and "clinical" in body["detail"]


def test_image_field_sent_as_text(client):
    body = error_of(client.post("/predict", data={"clinical": "photo.jpg"}), 422)
    assert body["field"] == "clinical" and "file upload" in body["detail"]


def test_repeated_field(client):
    r = client.post("/predict", files=[("sex", (None, "male")), ("sex", (None, "female"))])
    assert "more than once" in error_of(r, 422)["detail"]


@pytest.mark.parametrize(
    "data, field", [({"top_k": "0"}, "top_k"), ({"top_k": "x"}, "top_k"), ({"explain": "maybe"}, "explain")]
)
def test_bad_options(client, data, field):
    assert error_of(post(client, {"dermoscopy": png_bytes()}, data), 422)["field"] == field


def test_unknown_query_parameter(client):
    assert (
        "unknown query"
        in error_of(post(client, {"dermoscopy": png_bytes()}, params={"x": "1"}), 422)["detail"]
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"data": {"sex": "", "age": ""}},
        {"files": [("explain", (None, "true"))]},
    ],
)
def test_empty_request(client, kwargs):
    body = error_of(client.post("/predict", **kwargs), 400)
    assert "empty request" in body["detail"] and "clinical, dermoscopy, metadata" in body["detail"]


def test_not_multipart(client):
    r = client.post("/predict", content=b'{"sex": "male"}', headers={"content-type": "application/json"})
    assert "multipart/form-data" in error_of(r, 415)["detail"]


def test_malformed_multipart(client):
    r = client.post(
        "/predict", content=b"garbage", headers={"content-type": "multipart/form-data; boundary=abc"}
    )
    assert error_of(r, 400)


def _multipart(boundary, parts):
    out = b""
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
    return out


@pytest.mark.parametrize(
    "ending",
    [
        b"",  # the image part is cut off before its boundary
        b"\r\n--b0undary",  # the closing boundary without its final "--"
    ],
)
def test_a_body_without_its_closing_boundary_is_refused(client, ending):
    image = png_bytes()
    complete = _multipart("b0undary", [("sex", b"male", None), ("dermoscopy", image, "d.png")])
    headers = {"content-type": "multipart/form-data; boundary=b0undary"}
    assert client.post("/predict", content=complete + b"--b0undary--\r\n", headers=headers).status_code == 200
    cut = complete[: -len(image) // 2 - 2] if not ending else complete[:-2] + ending
    body = error_of(client.post("/predict", content=cut, headers=headers), 400)
    assert "closing boundary" in body["detail"]  # not an answer from the metadata alone


def test_modality_the_model_was_not_trained_with(make_checkpoint):
    app = create_app(Predictor.from_checkpoint(make_checkpoint("D")))
    with TestClient(app) as c:
        assert c.get("/model").json()["image_fields"] == ["dermoscopy"]
        body = error_of(post(c, {"clinical": png_bytes(), "dermoscopy": png_bytes()}), 422)
        assert body["field"] == "clinical" and "trained without clinical" in body["detail"]
        body = error_of(post(c, {"dermoscopy": png_bytes()}, {"sex": "male"}), 422)
        assert "trained without metadata" in body["detail"]
        assert post(c, {"dermoscopy": png_bytes()}).json()["modalities_used"] == "D"


def test_client_file_names_are_never_paths(client, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # anything spooled would land here
    hostile = "../../../../tmp/evil.png"
    r = client.post("/predict", files={"dermoscopy": (hostile, png_bytes(), "image/png")})
    assert r.status_code == 200
    assert "evil" not in r.text
    r = client.post("/predict", files={"dermoscopy": (hostile, b"junk", "image/png")})
    assert r.status_code == 415 and "evil" not in r.text
    assert list(tmp_path.iterdir()) == []


def test_limits_are_checked_when_the_app_is_made(predictor):
    with pytest.raises(ValueError, match="max_upload_bytes"):
        create_app(predictor, max_upload_bytes=0)
    with pytest.raises(ValueError, match="max_image_pixels"):
        create_app(predictor, max_image_pixels=predictor.max_image_pixels + 1)
    with pytest.raises(ValueError, match="workers"):
        create_app(predictor, workers=0)


def test_openapi_docs_and_page(client):
    spec = client.get("/openapi.json").json()
    assert {"/health", "/model", "/predict"} <= set(spec["paths"])
    form = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["clinical"]["format"] == "binary"
    assert form["properties"]["sex"]["enum"] == ["female", "male"]
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "not a medical device" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    assert client.get("/static/../app.py").status_code == 404
