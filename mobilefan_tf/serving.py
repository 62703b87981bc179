"""TF Serving's REST predict contract, in-process, for testing exported SavedModels.

TF Serving itself cannot be installed here, so this module implements the
part of its REST API that clients of `export_saved_model` use, on top of
`tf.saved_model.load`:

* ``POST /v1/models/<name>[/versions/<v>]:predict`` with
  ``{"signature_name": "serving_default" | "serving_bytes", "instances": [...]}``
  (row format; one instance per image: a [S, S, 3] nested list of RGB
  0..255 for ``serving_default``, ``{"b64": "<base64 JPEG/PNG>"}`` for
  ``serving_bytes``; or a dict naming the input) answers
  ``{"predictions": [{"landmarks": [[x, y], ...], "scores": [...]}, ...]}``.
* ``{"inputs": ...}`` (columnar format) answers ``{"outputs": {...}}``.
* ``GET /v1/models/<name>`` answers the model status.

Errors answer ``{"error": "..."}`` with HTTP 400 (404 for unknown paths).
"""

from __future__ import annotations

import base64
import http.server
import json
import re

import numpy as np
import tensorflow as tf

_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)(/versions/\d+)?(?P<verb>:predict)?$")


class RequestError(ValueError):
    """A client error: answered with HTTP 400 and ``{"error": message}``."""


def _unb64(value):
    """Replaces every ``{"b64": s}`` in a JSON value by the decoded bytes."""
    if isinstance(value, dict):
        if set(value) == {"b64"}:
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (ValueError, TypeError) as err:
                raise RequestError(f"bad base64 value: {err}") from None
        return {k: _unb64(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unb64(v) for v in value]
    return value


def _tensor(value, spec: tf.TensorSpec, what: str) -> tf.Tensor:
    try:
        if spec.dtype == tf.string:
            return tf.constant(value, tf.string)
        return tf.constant(np.asarray(value, spec.dtype.as_numpy_dtype))
    except (ValueError, TypeError) as err:
        raise RequestError(f"{what}: cannot convert to a {spec.dtype.name} tensor ({err})") from None


def predict_json(loaded, body: dict) -> dict:
    """Answers one REST predict request body with a loaded SavedModel.

    Args:
        loaded: The result of `tf.saved_model.load`.
        body: The parsed JSON request (see the module docstring).

    Returns:
        The JSON response body (a dict).

    Raises:
        RequestError: for malformed requests or inputs the signature rejects.
    """
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object")
    name = body.get("signature_name", "serving_default")
    if name not in loaded.signatures:
        raise RequestError(f"unknown signature_name {name!r} (have {sorted(loaded.signatures)})")
    signature = loaded.signatures[name]
    specs = signature.structured_input_signature[1]
    if ("instances" in body) == ("inputs" in body):
        raise RequestError('request needs exactly one of "instances" (row format) or "inputs" (columnar)')
    row = "instances" in body
    data = _unb64(body["instances"] if row else body["inputs"])
    if row:
        if not isinstance(data, list) or not data:
            raise RequestError('"instances" must be a non-empty list')
        if all(isinstance(d, dict) for d in data):
            columns = {k: [d.get(k) for d in data] for k in specs}
        elif len(specs) == 1:
            columns = {next(iter(specs)): data}
        else:
            raise RequestError(f"instances must be objects with keys {sorted(specs)}")
    else:
        columns = data if isinstance(data, dict) else {next(iter(specs)): data}
    missing = set(specs) - set(columns)
    if missing:
        raise RequestError(f"missing input(s) {sorted(missing)}")
    inputs = {k: _tensor(columns[k], spec, k) for k, spec in specs.items()}
    for k, spec in specs.items():
        if not spec.shape.is_compatible_with(inputs[k].shape):
            raise RequestError(f"input {k!r} has shape {inputs[k].shape.as_list()}, signature wants {spec.shape}")
    try:
        outputs = {k: v.numpy() for k, v in signature(**inputs).items()}
    except (tf.errors.InvalidArgumentError, ValueError) as err:
        raise RequestError(str(err).strip().splitlines()[0]) from None
    if not row:
        return {"outputs": {k: v.tolist() for k, v in outputs.items()}}
    count = len(next(iter(outputs.values())))
    return {"predictions": [{k: v[i].tolist() for k, v in outputs.items()} for i in range(count)]}


def make_server(
    model_dir: str, model_name: str = "mobilefan", host: str = "127.0.0.1", port: int = 0
) -> http.server.HTTPServer:
    """A TF-Serving-like REST server for one SavedModel (port 0: an ephemeral port).

    Serve with ``server.handle_request()`` (one request) or
    ``server.serve_forever()``; ``server.server_address`` has the port.
    """
    loaded = tf.saved_model.load(model_dir)

    class Handler(http.server.BaseHTTPRequestHandler):
        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self) -> re.Match | None:
            match = _PATH.match(self.path)
            if not match or match["name"] != model_name:
                self._send(404, {"error": f"unknown path {self.path}"})
                return None
            return match

        def do_GET(self):  # noqa: N802 - http.server's naming
            match = self._route()
            if match:
                version = {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
                self._send(200, {"model_version_status": [version]})

        def do_POST(self):  # noqa: N802
            match = self._route()
            if not match:
                return
            if not match["verb"]:
                self._send(404, {"error": "POST needs :predict"})
                return
            try:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"null")
                self._send(200, predict_json(loaded, body))
            except json.JSONDecodeError as err:
                self._send(400, {"error": f"malformed JSON: {err}"})
            except RequestError as err:
                self._send(400, {"error": str(err)})

        def log_message(self, format, *args):  # noqa: A002 - keep tests quiet
            pass

    server = http.server.HTTPServer((host, port), Handler)
    server.loaded = loaded
    return server
