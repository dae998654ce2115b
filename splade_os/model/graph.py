"""What an ONNX file holds, read from its protobuf encoding directly: inputs, outputs, op types, weight types.

Enough to tell masked-LM logits from pooled weights and fp32 from int8 without the onnx package (an export
dependency, never loaded to encode) and without building an onnxruntime session. Weight bytes are skipped, not
read, so a large file costs one pass over its headers.
"""

from __future__ import annotations

import mmap
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from splade_os.errors import ModelError

# onnx.TensorProto.DataType values
FLOAT, UINT8, INT8, FLOAT16, BFLOAT16 = 1, 2, 3, 10, 16
FLOAT_TYPES = (FLOAT, FLOAT16, BFLOAT16)
# Operators that only quantized graphs contain.
QUANTIZED_OPS = frozenset(
    {
        "MatMulInteger",
        "MatMulIntegerToFloat",
        "QLinearMatMul",
        "DynamicQuantizeLinear",
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeMatMul",
        "QAttention",
        "QGemm",
        "ConvInteger",
        "QLinearConv",
    }
)

Dim = int | str  # a fixed size, or the name of a dynamic axis ("batch", "sequence_length", "?")


@dataclass(frozen=True)
class Tensor:
    name: str
    elem_type: int
    shape: tuple[Dim, ...]


@dataclass
class Graph:
    inputs: list[Tensor] = field(default_factory=list)
    outputs: list[Tensor] = field(default_factory=list)
    op_types: set[str] = field(default_factory=set)
    initializer_types: Counter[int] = field(default_factory=Counter)
    initializer_names: set[str] = field(default_factory=set)

    @property
    def precision(self) -> str:
        """int8 when the graph quantizes, else the floating type most of its weights have."""
        if self.op_types & QUANTIZED_OPS or self.initializer_types[INT8] + self.initializer_types[UINT8]:
            return "int8"
        floats = {name: self.initializer_types[t] for name, t in (("fp16", FLOAT16), ("bf16", BFLOAT16))}
        best = max(floats, key=lambda name: floats[name])
        return best if floats[best] > self.initializer_types[FLOAT] else "fp32"

    @property
    def feeds(self) -> list[Tensor]:
        """The inputs a caller must feed (old exports also list their weights as inputs)."""
        return [t for t in self.inputs if t.name not in self.initializer_names]


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(field number, varint value or 0, start, end of a length-delimited value) for each field in [start, end)."""
    out = []
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            out.append((number, value, pos, pos))
        elif wire == 2:
            length, pos = _varint(buf, pos)
            out.append((number, 0, pos, pos + length))
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    if pos != end:
        raise ValueError("truncated protobuf field")
    return out


def _text(buf: memoryview, start: int, end: int) -> str:
    return bytes(buf[start:end]).decode("utf-8", errors="replace")


def _value_info(buf: memoryview, start: int, end: int) -> Tensor:
    """ValueInfoProto: name (1), type (2) -> TypeProto.tensor_type (1) -> elem_type (1), shape (2) -> dim (1)."""
    name, elem_type, dims = "", 0, []
    for number, _, s, e in _fields(buf, start, end):
        if number == 1:
            name = _text(buf, s, e)
        elif number == 2:
            for tn, _, ts, te in _fields(buf, s, e):
                if tn != 1:
                    continue
                for kn, kv, ks, ke in _fields(buf, ts, te):
                    if kn == 1:
                        elem_type = kv
                    elif kn == 2:
                        for dn, _, ds, de in _fields(buf, ks, ke):
                            if dn != 1:
                                continue
                            dim: Dim = "?"
                            for vn, vv, vs, ve in _fields(buf, ds, de):
                                dim = vv if vn == 1 else _text(buf, vs, ve) if vn == 2 else dim
                            dims.append(dim)
    return Tensor(name, elem_type, tuple(dims))


def _graph(buf: memoryview, start: int, end: int) -> Graph:
    """GraphProto: node (1: op_type 4), initializer (5: data_type 2, name 8), input (11), output (12)."""
    graph = Graph()
    for number, _, s, e in _fields(buf, start, end):
        if number == 1:
            graph.op_types.update(_text(buf, fs, fe) for fn, _, fs, fe in _fields(buf, s, e) if fn == 4)
        elif number == 5:
            for fn, fv, fs, fe in _fields(buf, s, e):
                if fn == 2:
                    graph.initializer_types[fv] += 1
                elif fn == 8:
                    graph.initializer_names.add(_text(buf, fs, fe))
        elif number in (11, 12):
            (graph.inputs if number == 11 else graph.outputs).append(_value_info(buf, s, e))
    return graph


def read_graph(path: Path) -> Graph:
    """The graph of the ONNX file at `path`; ModelError when it is not one."""
    try:
        with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            buf = memoryview(mapped)
            try:
                graphs = [(s, e) for n, _, s, e in _fields(buf, 0, len(buf)) if n == 7]  # ModelProto.graph
                graph = _graph(buf, *graphs[0]) if len(graphs) == 1 else None
            finally:
                buf.release()
    except OSError as err:
        raise ModelError(f"cannot read {path} ({err.strerror or err}); check the file and its permissions") from err
    except (ValueError, IndexError) as err:  # not protobuf, or cut short
        raise ModelError(f"{path} is not an ONNX model ({err}); fetch or export it again") from err
    if graph is None or not graph.outputs:
        raise ModelError(f"{path} is not an ONNX model (no graph with outputs); fetch or export it again")
    return graph
