"""Malformed and unusable model files raise ModelError with a clear message."""

import json

import pytest

import dashgc
from conftest import REPO


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, payload) -> bytes:
    """One protobuf field: an int (varint) or bytes/str/nested message (length-delimited)."""
    if isinstance(payload, int):
        return varint(number << 3) + varint(payload)
    if isinstance(payload, str):
        payload = payload.encode()
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def onnx_with_node(op_type: str, node_name: str) -> bytes:
    """A minimal ONNX model (opset 13): input x of shape (1, 4), one node x -> y."""
    dims = field(1, field(1, 1)) + field(1, field(1, 4))
    tensor_type = field(1, 1) + field(2, dims)  # elem_type FLOAT, shape
    value_x = field(1, "x") + field(2, field(1, tensor_type))
    value_y = field(1, "y")
    node = field(1, "x") + field(2, "y") + field(3, node_name) + field(4, op_type)
    graph = field(1, node) + field(2, "g") + field(11, value_x) + field(12, value_y)
    return field(1, 8) + field(8, field(1, "") + field(2, 13)) + field(7, graph)


def test_unsupported_operator_names_node_and_operator(tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(onnx_with_node("Softsign", "my_softsign"))
    with pytest.raises(dashgc.ModelError) as info:
        dashgc.Model.load(path)
    err = info.value
    assert isinstance(err, dashgc.Error)
    assert err.node == "my_softsign" and err.op == "Softsign"
    assert "my_softsign" in str(err) and "Softsign" in str(err) and str(path) in str(err)


def test_valid_minimal_onnx_is_accepted(tmp_path):
    # The same hand-made model with a supported operator loads: the
    # failures above come from the operator, not from the encoding.
    path = tmp_path / "relu.onnx"
    path.write_bytes(onnx_with_node("Relu", "r"))
    try:
        dashgc.Model.load(path)
    except dashgc.ModelError as e:
        # A graph with no linear layer may be refused later (quantisation,
        # planning), but never at the node.
        assert e.node is None and "Relu" not in str(e), str(e)


def test_garbage_and_truncated_onnx(tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\xff\xfe this is not a protobuf \x00\x01" * 10)
    with pytest.raises(dashgc.ModelError, match="not an ONNX model") as info:
        dashgc.Model.load(garbage)
    assert info.value.node is None and info.value.op is None

    whole = (REPO / "models" / "deepsecure_cnn.onnx").read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(dashgc.ModelError, match="truncated.onnx"):
        dashgc.Model.load(truncated)


def test_malformed_json_models(tmp_path):
    cases = {
        "syntax.json": ("{ not json", "malformed model file"),
        "other_format.json": (json.dumps({"format": "keras", "version": 1}), "model format is \"keras\""),
        "no_version.json": (json.dumps({"format": "dash-model"}), "version|format"),
    }
    for name, (text, match) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(dashgc.ModelError, match=match) as info:
            dashgc.Model.load(path)
        assert name in str(info.value)
        assert info.value.node is None


def test_json_layer_error_is_clear(tmp_path):
    model = json.loads((REPO / "models" / "secureml_mlp.json").read_text())
    dense = next(layer for layer in model["layers"] if "weights" in layer or "w" in layer)
    key = "weights" if "weights" in dense else "w"
    dense[key] = dense[key][:-1]  # one row short
    path = tmp_path / "short.json"
    path.write_text(json.dumps(model))
    with pytest.raises(dashgc.ModelError, match="layer 0"):
        dashgc.Model.load(path)


def test_missing_file_and_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError):
        dashgc.Model.load(tmp_path / "nope.onnx")
    onnx = REPO / "models" / "deepsecure_cnn.onnx"
    with pytest.raises(ValueError, match="input_scale"):
        dashgc.Model.load(onnx, input_scale=0.0)
    with pytest.raises(ValueError, match="input_range"):
        dashgc.Model.load(onnx, input_range=(255, 0))


def test_corrupted_models_raise_model_error_never_a_panic(tmp_path):
    # Random byte flips in a real model: each load either succeeds or raises
    # ModelError. A Rust panic would surface as pyo3's PanicException (a
    # BaseException, not caught by the except clause below) and fail the test.
    rng = __import__("random").Random(20)
    for name in ("deepsecure_cnn.onnx", "secureml_mlp.json"):
        original = (REPO / "models" / name).read_bytes()
        refused = 0
        for i in range(40):
            data = bytearray(original)
            for _ in range(rng.choice([1, 4, 32])):
                data[rng.randrange(min(len(data), 4096))] = rng.randrange(256)
            path = tmp_path / f"{i}_{name}"
            path.write_bytes(bytes(data))
            try:
                dashgc.Model.load(path)
            except dashgc.ModelError as e:
                refused += 1
                assert str(e), "a ModelError without a message"
        assert refused > 0, f"no corruption of {name} was refused"
