"""TF Serving's REST contract over an exported SavedModel, served on 127.0.0.1."""

import base64
import io
import json
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from mobilefan_tf.data import synthetic_faces
from mobilefan_tf.export import export_saved_model
from mobilefan_tf.models import build_model
from mobilefan_tf.serving import RequestError, make_server, predict_json


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(base URL, loaded SavedModel, faces) of a server handling requests in a thread."""
    model = build_model("mobilefan_lite", num_keypoints=68)
    path = export_saved_model(model, str(tmp_path_factory.mktemp("serving") / "mobilefan"))
    server = make_server(path, model_name="mobilefan", host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    faces, _ = synthetic_faces(2, image_size=128, seed=5)
    yield f"http://127.0.0.1:{server.server_address[1]}", server.loaded, faces
    server.shutdown()
    server.server_close()


def _call(url: str, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _png(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_row_format_images(served):
    url, loaded, faces = served
    code, body = _call(f"{url}/v1/models/mobilefan:predict", {"instances": faces.astype(float).tolist()})
    assert code == 200 and len(body["predictions"]) == 2
    row = body["predictions"][0]
    assert np.asarray(row["landmarks"]).shape == (68, 2) and np.asarray(row["scores"]).shape == (68,)
    direct = loaded.signatures["serving_default"](images=tf.constant(faces, tf.float32))
    np.testing.assert_allclose(row["landmarks"], direct["landmarks"].numpy()[0], atol=1e-3)


def test_row_format_b64_bytes(served):
    url, loaded, faces = served
    body = {"signature_name": "serving_bytes", "instances": [{"b64": _png(f)} for f in faces]}
    code, out = _call(f"{url}/v1/models/mobilefan/versions/1:predict", body)
    assert code == 200 and len(out["predictions"]) == 2
    assert out["predictions"][1]["image_size"] == [128, 128]
    named = {"signature_name": "serving_bytes", "instances": [{"image_bytes": {"b64": _png(faces[0])}}]}
    code, again = _call(f"{url}/v1/models/mobilefan:predict", named)
    assert code == 200
    np.testing.assert_allclose(again["predictions"][0]["landmarks"], out["predictions"][0]["landmarks"], atol=1e-4)


def test_columnar_format_and_status(served):
    url, _, faces = served
    code, out = _call(f"{url}/v1/models/mobilefan:predict", {"inputs": {"images": faces[:1].astype(float).tolist()}})
    assert code == 200 and np.asarray(out["outputs"]["landmarks"]).shape == (1, 68, 2)
    code, status = _call(f"{url}/v1/models/mobilefan")
    assert code == 200 and status["model_version_status"][0]["state"] == "AVAILABLE"


@pytest.mark.parametrize(
    "body,message",
    [
        ({"instances": [[[0.0]]]}, "shape"),
        ({"signature_name": "nope", "instances": [1]}, "signature_name"),
        ({"signature_name": "serving_bytes", "instances": [{"b64": "%%%"}]}, "base64"),
        ({"signature_name": "serving_bytes", "instances": [{"b64": base64.b64encode(b"junk").decode()}]}, ""),
        ({}, "instances"),
    ],
)
def test_bad_requests_answer_400(served, body, message):
    url, _, _ = served
    code, out = _call(f"{url}/v1/models/mobilefan:predict", body)
    assert code == 400 and message in out["error"]


def test_unknown_model_is_404(served):
    url, _, _ = served
    code, out = _call(f"{url}/v1/models/other:predict", {"instances": [1]})
    assert code == 404 and "error" in out


def test_predict_json_without_http(served):
    _, loaded, faces = served
    out = predict_json(loaded, {"instances": [{"images": faces[0].astype(float).tolist()}]})
    assert len(out["predictions"]) == 1
    with pytest.raises(RequestError):
        predict_json(loaded, [1, 2])


def test_predictor_takes_loaded_saved_model(served):
    from mobilefan_tf.predictor import Predictor

    _, loaded, faces = served
    out = Predictor(loaded).predict(faces[0], boxes=[[20, 20, 100, 100]])
    assert out[0]["landmarks"].shape == (68, 2)
