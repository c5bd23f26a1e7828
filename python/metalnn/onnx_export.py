"""ONNX export of inference graphs: ``mnn.export_onnx(graph, "model.onnx", input_shape=(1, 1, 28, 28))``.

Each filter node becomes one or a few standard ONNX operators (opset 18), float32:

- ``ConvolutionNode``: Conv (pads from the resolved padding policy), then its descriptor's neuron;
- ``FullyConnectedNode``: Flatten(axis=1) + Gemm(transB=1), then its neuron;
- ``ConvolutionTransposeNode``: ConvTranspose (pads, output_padding), then its neuron;
- ``PoolingMaxNode`` / ``DilatedPoolingMaxNode``: MaxPool (with dilations);
  ``PoolingAverageNode``: AveragePool (count_include_pad kept); ``PoolingL2NormNode``: LpPool(p=2);
- ``Neuron*Node``: Relu, LeakyRelu, Sigmoid, Tanh, Elu, Selu, ... or a short chain of Mul, Add,
  Pow, Exp, Log, Erf for the a, b, c forms; ``NeuronPReLUNode``: PRelu (one slope per channel);
- ``DropoutNode``: Identity (inference); ``SoftmaxNode`` / ``LogSoftmaxNode``: Softmax /
  LogSoftmax over the feature channels (axis 1);
- ``AdditionNode``, ``SubtractionNode``, ``MultiplicationNode``, ``DivisionNode``: Add, Sub, Mul,
  Div (same-rank broadcasting, as in metalnn);
- ``UpsamplingNearestNode`` / ``UpsamplingBilinearNode``: Resize; ``ConcatenationNode``: Concat
  (axis 1); ``ReshapeNode``, ``FlattenNode``, ``ImageToMatrixNode``, ``MatrixToImageNode``: Reshape
  (batch kept); ``PadNode``: Pad (constant / edge / reflect); ``CropNode``: Slice.

Padding is resolved for ``input_shape`` (``"same"`` depends on the input size), so the
exported model has that height and width; the batch dimension is symbolic (``N``) unless
``dynamic_batch=False``. Weights are the graph's current parameters (what it would run
with). Gradient and loss nodes, and node kinds without an ONNX counterpart here, raise
:class:`OnnxExportError` naming the node.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .graph.nodes import (
    AdditionNode,
    ConvolutionNode,
    DropoutNode,
    FilterNode,
    FullyConnectedNode,
    GradientNode,
    ImageNode,
    NeuronNode,
    PoolingAverageNode,
    PoolingMaxNode,
    SoftmaxCrossEntropyLossNode,
    SoftmaxNode,
)

__all__ = ["OnnxExportError", "export_onnx", "OPSET"]

#: The ONNX operator set the exporter writes.
OPSET = 18
_IR_VERSION = 8  # the IR that goes with opset 18; older runtimes load it too

# MPS defaults of the neuron coefficients (see metalnn.ops.neuron).
_DEFAULTS: dict[str, tuple[float, float, float]] = {
    "relu": (0.0, 0.0, 0.0), "leaky_relu": (0.01, 0.0, 0.0), "hard_sigmoid": (0.2, 0.5, 0.0),
    "tanh": (1.0, 1.0, 0.0), "linear": (1.0, 0.0, 0.0), "softplus": (1.0, 1.0, 0.0), "elu": (1.0, 0.0, 0.0),
    "relun": (0.0, 6.0, 0.0), "power": (1.0, 0.0, 2.0), "exponential": (1.0, 0.0, -1.0),
    "logarithm": (1.0, 0.0, -1.0), "selu": (1.6732632, 1.0507010, 0.0),
}


class OnnxExportError(ValueError):
    """A graph (or one of its nodes) that has no ONNX form here."""


def _require_onnx():
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("[export_onnx] needs the 'onnx' package: pip install 'metalnn[onnx]'") from e
    return onnx


class _Builder:
    """Collects ONNX nodes and initializers with unique names."""

    def __init__(self, onnx_module: Any) -> None:
        self.onnx, self.helper = onnx_module, onnx_module.helper
        self.nodes: list = []
        self.initializers: list = []
        self._names: set[str] = set()
        self._count = 0

    def fresh(self, hint: str) -> str:
        self._count += 1
        name = f"{hint}_{self._count}"
        while name in self._names:
            self._count += 1
            name = f"{hint}_{self._count}"
        self._names.add(name)
        return name

    def tensor(self, hint: str, value: np.ndarray) -> str:
        name = self.fresh(hint)
        a = np.ascontiguousarray(value)
        self.initializers.append(self.onnx.numpy_helper.from_array(a, name))
        return name

    def const(self, value: float) -> str:
        return self.tensor("const", np.asarray(value, dtype=np.float32))

    def op(self, op_type: str, inputs: Sequence[str], output: str | None = None, hint: str = "t", **attrs) -> str:
        out = output or self.fresh(hint)
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out], name=self.fresh(op_type), **attrs))
        return out


def _coefficients(kind: str, a, b, c=None) -> tuple[float, float, float]:
    da, db, dc = _DEFAULTS.get(kind, (0.0, 0.0, 0.0))
    return (da if a is None else float(a), db if b is None else float(b), dc if c is None else float(c))


def _affine(bld: _Builder, x: str, a: float, b: float) -> str:
    """a*x + b, skipping the identity parts."""
    if a != 1.0:
        x = bld.op("Mul", [x, bld.const(a)])
    if b != 0.0:
        x = bld.op("Add", [x, bld.const(b)])
    return x


def _neuron(bld: _Builder, x: str, kind: str, a, b, c, out: str, owner: str) -> str:
    """Writes ``out = f(x)`` for a metalnn neuron type with MPS coefficients a, b, c."""
    a, b, c = _coefficients(kind, a, b, c)
    if kind == "none":
        return bld.op("Identity", [x], out)
    if kind in ("relu", "leaky_relu"):
        return bld.op("Relu", [x], out) if a == 0.0 else bld.op("LeakyRelu", [x], out, alpha=a)
    if kind == "sigmoid":
        return bld.op("Sigmoid", [x], out)
    if kind == "hard_sigmoid":
        return bld.op("HardSigmoid", [x], out, alpha=a, beta=b)
    if kind == "tanh":
        t = bld.op("Tanh", [_affine(bld, x, b, 0.0)], None if a != 1.0 else out)
        return bld.op("Mul", [t, bld.const(a)], out) if a != 1.0 else t
    if kind == "linear":
        y = _affine(bld, x, a, b)
        return bld.op("Identity", [y], out)
    if kind == "absolute":
        return bld.op("Abs", [x], out)
    if kind == "softplus":
        t = bld.op("Softplus", [_affine(bld, x, b, 0.0)], None if a != 1.0 else out)
        return bld.op("Mul", [t, bld.const(a)], out) if a != 1.0 else t
    if kind == "elu":
        return bld.op("Elu", [x], out, alpha=a)
    if kind == "relun":
        r = bld.op("Relu", [x]) if a == 0.0 else bld.op("LeakyRelu", [x], alpha=a)
        return bld.op("Min", [r, bld.const(b)], out)
    if kind == "gelu":  # x/2 * (1 + erf(x/sqrt(2))): Gelu itself needs opset 20
        e = bld.op("Erf", [bld.op("Mul", [x, bld.const(1.0 / math.sqrt(2.0))])])
        h = bld.op("Mul", [bld.op("Add", [e, bld.const(1.0)]), bld.const(0.5)])
        return bld.op("Mul", [x, h], out)
    if kind == "softsign":
        return bld.op("Softsign", [x], out)
    if kind == "power":
        return bld.op("Pow", [_affine(bld, x, a, b), bld.const(c)], out)
    if kind == "exponential":
        z = _affine(bld, x, a, b)
        if c != -1.0:
            z = bld.op("Mul", [z, bld.const(math.log(c))])
        return bld.op("Exp", [z], out)
    if kind == "logarithm":
        y = bld.op("Log", [_affine(bld, x, a, b)], None if c != -1.0 else out)
        return bld.op("Mul", [y, bld.const(1.0 / math.log(c))], out) if c != -1.0 else y
    if kind == "silu":
        return bld.op("Mul", [x, bld.op("Sigmoid", [x])], out)
    if kind == "mish":
        return bld.op("Mish", [x], out)
    if kind == "selu":
        return bld.op("Selu", [x], out, alpha=a, gamma=b)
    raise OnnxExportError(f"[export_onnx] node '{owner}': neuron type {kind!r} has no ONNX form here")


def _onnx_pads(pads: Sequence[int]) -> list[int]:
    """metalnn (top, bottom, left, right) -> ONNX (top, left, bottom, right)."""
    top, bottom, left, right = (int(p) for p in pads)
    return [top, left, bottom, right]


def _float32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def _params(graph, node) -> tuple[np.ndarray, np.ndarray | None]:
    from .interop import _host

    w, b = graph._parameters(node)[:2]
    return _float32(_host(w.value)), (None if b is None else _float32(_host(b.value)))


def _layer(bld: _Builder, graph, node, x: str, out: str) -> None:
    """Convolution / fully connected / transposed convolution, bias and the descriptor's neuron."""
    d = node.descriptor()
    w, b = _params(graph, node)
    y = out if not d.neuron else bld.fresh(f"{node.label}.preactivation")
    kind = type(node).__name__
    if isinstance(node, FullyConnectedNode):
        flat = bld.op("Flatten", [x], hint=f"{node.label}.flat", axis=1)
        inputs = [flat, bld.tensor(f"{node.label}.weight", w.reshape(w.shape[0], -1))]
        if b is not None:
            inputs.append(bld.tensor(f"{node.label}.bias", b))
        bld.op("Gemm", inputs, y, transB=1)
    else:
        transpose = kind == "ConvolutionTransposeNode"
        inputs = [x, bld.tensor(f"{node.label}.weight", w)]
        if b is not None:
            inputs.append(bld.tensor(f"{node.label}.bias", b))
        attrs: dict[str, Any] = dict(kernel_shape=[d.kernel_h, d.kernel_w], strides=[d.stride_h, d.stride_w],
                                     dilations=[d.dilation_h, d.dilation_w], group=d.groups,
                                     pads=_onnx_pads(node.resolved_padding))
        if transpose:
            attrs["output_padding"] = list(node.resolved_output_padding)
        bld.op("ConvTranspose" if transpose else "Conv", inputs, y, **attrs)
    if d.neuron:
        _neuron(bld, y, d.neuron, d.neuron_a, d.neuron_b, None, out, node.label)


def _pool(bld: _Builder, node, x: str, out: str) -> None:
    kind = type(node).__name__
    attrs: dict[str, Any] = dict(kernel_shape=list(node.kernel), strides=list(node.stride),
                                 pads=_onnx_pads(node.resolved_padding))
    if isinstance(node, PoolingMaxNode):
        bld.op("MaxPool", [x], out, **attrs)
    elif isinstance(node, PoolingAverageNode):
        bld.op("AveragePool", [x], out, count_include_pad=int(node.count_include_pad), **attrs)
    elif kind == "DilatedPoolingMaxNode":
        bld.op("MaxPool", [x], out, dilations=list(node.dilation), **attrs)
    elif kind == "PoolingL2NormNode":
        bld.op("LpPool", [x], out, p=2, dilations=list(node.dilation), **attrs)
    else:  # pragma: no cover - _emit only routes the kinds above here
        raise OnnxExportError(f"[export_onnx] node '{node.label}' ({kind}) has no ONNX form here")


def _ints64(bld: _Builder, hint: str, values) -> str:
    return bld.tensor(hint, np.asarray(list(values), dtype=np.int64))


def _shape(bld: _Builder, node: Any, ins: list[str], out: str) -> None:
    """Resampling, concatenation, reshape, padding and crop nodes."""
    kind = type(node).__name__
    if kind in ("UpsamplingNearestNode", "UpsamplingBilinearNode"):
        scales = bld.tensor(f"{node.label}.scales", np.asarray([1.0, 1.0, *node.scale], np.float32))
        if kind == "UpsamplingNearestNode":
            attrs = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        else:
            attrs = dict(mode="linear", coordinate_transformation_mode="align_corners" if node.align_corners
                         else "half_pixel")
        bld.op("Resize", [ins[0], "", scales], out, **attrs)
    elif kind == "ConcatenationNode":
        bld.op("Concat", ins, out, axis=1)
    elif kind in ("ReshapeNode", "FlattenNode", "ImageToMatrixNode", "MatrixToImageNode"):
        # 0 copies the batch dimension, so the batch stays symbolic.
        bld.op("Reshape", [ins[0], _ints64(bld, f"{node.label}.shape", [0, *node.shape])], out)
    elif kind == "PadNode":
        (top, bottom, left, right), (front, back) = node.padding, node.channels
        pads = _ints64(bld, f"{node.label}.pads", [0, front, top, left, 0, back, bottom, right])
        mode = {"zero": "constant", "edge": "edge", "reflect": "reflect"}[node.mode]
        bld.op("Pad", [ins[0], pads], out, mode=mode)
    elif kind in ("CropNode", "SliceNode"):
        starts = list(node.offset)
        ends = [o + s for o, s in zip(node.offset, node.size)]
        bld.op("Slice", [ins[0], _ints64(bld, f"{node.label}.starts", starts),
                         _ints64(bld, f"{node.label}.ends", ends), _ints64(bld, f"{node.label}.axes", [1, 2, 3])],
               out)
    else:  # pragma: no cover - _emit only routes the kinds above here
        raise OnnxExportError(f"[export_onnx] node '{node.label}' ({kind}) has no ONNX form here")


_ARITHMETIC_KINDS = ("SubtractionNode", "MultiplicationNode", "DivisionNode")
_SHAPE_KINDS = ("UpsamplingNearestNode", "UpsamplingBilinearNode", "ConcatenationNode", "ReshapeNode", "FlattenNode",
                "ImageToMatrixNode", "MatrixToImageNode", "PadNode", "CropNode", "SliceNode")
_POOL_KINDS = ("PoolingMaxNode", "PoolingAverageNode", "DilatedPoolingMaxNode", "PoolingL2NormNode")


def _refuse_training(node: FilterNode) -> None:
    kind = type(node).__name__
    if isinstance(node, GradientNode):
        raise OnnxExportError(f"[export_onnx] node '{node.label}' ({node.kind}) is a gradient node: export the "
                              "inference graph (Graph(logits)), not a training graph")
    if isinstance(node, SoftmaxCrossEntropyLossNode) or "Loss" in kind:
        raise OnnxExportError(f"[export_onnx] node '{node.label}' ({kind}) is a loss node: export the inference "
                              "graph that ends at the loss's source")


def _emit(bld: _Builder, graph, node: FilterNode, names: dict, shapes: dict) -> None:
    kind = type(node).__name__
    ins = [names[s] for s in node.sources]
    out = names[node.result]
    if isinstance(node, ConvolutionNode) or kind == "ConvolutionTransposeNode":
        _layer(bld, graph, node, ins[0], out)
    elif kind in _POOL_KINDS:
        _pool(bld, node, ins[0], out)
    elif isinstance(node, NeuronNode) or kind in ("NeuronPowerNode", "NeuronExponentialNode", "NeuronLogarithmNode"):
        n: Any = node
        _neuron(bld, ins[0], n.neuron_type, n.a, n.b, getattr(n, "c", None), out, node.label)
    elif kind == "NeuronPReLUNode":
        w, _ = _params(graph, node)
        rank = len(shapes[node.sources[0]])
        slopes = w.reshape((-1,) + (1,) * (rank - 2))  # broadcast over (N, C, ...) from the channel axis
        bld.op("PRelu", [ins[0], bld.tensor(f"{node.label}.slopes", slopes)], out)
    elif isinstance(node, DropoutNode):
        bld.op("Identity", ins, out)
    elif isinstance(node, SoftmaxNode):
        bld.op("LogSoftmax" if node.log else "Softmax", ins, out, axis=1)
    elif isinstance(node, AdditionNode) or kind in _ARITHMETIC_KINDS:
        op = getattr(node, "op", "add")  # same-rank broadcasting is ONNX's (numpy's) too
        bld.op({"add": "Add", "subtract": "Sub", "multiply": "Mul", "divide": "Div"}[op], ins, out)
    elif kind in _SHAPE_KINDS:
        _shape(bld, node, ins, out)
    else:
        raise OnnxExportError(f"[export_onnx] node '{node.label}' ({kind}) cannot be exported to ONNX "
                              "(no ONNX form for this node kind here)")


def _as_graph(graph_or_result):
    from .graph.graph import Graph

    if isinstance(graph_or_result, Graph):
        return graph_or_result
    if isinstance(graph_or_result, FilterNode):
        graph_or_result = graph_or_result.result
    if isinstance(graph_or_result, ImageNode) or (
            isinstance(graph_or_result, (list, tuple)) and graph_or_result
            and all(isinstance(r, ImageNode) for r in graph_or_result)):
        return Graph(graph_or_result, device="cpu")
    raise TypeError(f"[export_onnx] expected a Graph, a filter node or an image node (node.result), "
                    f"got {type(graph_or_result).__name__}")


def _input_shapes(graph, input_shape) -> dict:
    if input_shape is None:
        if not graph._compiled:
            raise ValueError("[export_onnx] input_shape is required (e.g. input_shape=(1, 1, 28, 28)) until the "
                             "graph has run a batch")
        key = list(graph._compiled)[-1][0]
        by_id = {s.id: s for s in graph.sources}
        return {by_id[i]: tuple(shape) for i, shape, _ in key if i in by_id}
    if isinstance(input_shape, dict):
        by_name = {s.name: s for s in graph.sources}
        out = {}
        for k, v in input_shape.items():
            node = k if isinstance(k, ImageNode) else by_name.get(k)
            if node not in graph.sources:
                raise ValueError(f"[export_onnx] input_shape: {k!r} is not a source of the graph")
            out[node] = tuple(int(d) for d in v)
        return out
    shapes = list(input_shape)
    if shapes and all(isinstance(s, (tuple, list)) for s in shapes):
        if len(shapes) != len(graph.sources):
            raise ValueError(f"[export_onnx] input_shape: the graph has {len(graph.sources)} sources, "
                             f"got {len(shapes)} shapes")
        return {s: tuple(int(d) for d in shp) for s, shp in zip(graph.sources, shapes)}
    if len(graph.sources) != 1:
        raise ValueError(f"[export_onnx] input_shape: the graph has {len(graph.sources)} sources; give a list "
                         "or a dict of shapes")
    return {graph.sources[0]: tuple(int(d) for d in shapes)}


def _infer_shapes(graph, shapes: dict) -> dict:
    for node in graph.nodes:
        if isinstance(node, GradientNode):
            continue  # _emit names it; no shape needed
        try:
            shapes[node.result] = tuple(node.infer_shape([shapes[s] for s in node.sources]))
        except KeyError as e:
            raise ValueError(f"[export_onnx] node '{node.label}' ({node.kind}): input {e.args[0]!r} has no "
                             "shape") from None
        except (ValueError, TypeError) as e:
            raise ValueError(f"[export_onnx] node '{node.label}' ({node.kind}): {e}") from None
    return shapes


def export_onnx(graph_or_result, path: str | os.PathLike | None = None, input_shape=None, *,
                dynamic_batch: bool = True, model_name: str = "metalnn", check: bool = True):
    """Exports an inference graph to ONNX and returns the ``onnx.ModelProto``.

    ``graph_or_result``: a :class:`~metalnn.Graph`, or the result image node (or filter
    node) an inference graph would end at. ``input_shape``: the source's ``(N, C, H, W)``
    (a list in ``graph.sources`` order, or a dict by source name, for several sources);
    optional once the graph has run a batch. ``path``: where to write the ``.onnx`` file
    (None: only return the model). ``check`` runs ``onnx.checker.check_model``.

    Inputs and outputs keep the graph's image names; the model computes in float32.
    """
    onnx = _require_onnx()
    graph = _as_graph(graph_or_result)
    # Refuse training graphs up front, naming the first gradient node (else the loss node).
    for node in sorted(graph.nodes, key=lambda n: not isinstance(n, GradientNode)):
        _refuse_training(node)
    shapes = _infer_shapes(graph, _input_shapes(graph, input_shape))
    missing = [s.name for s in graph.sources if s not in shapes]
    if missing:
        raise ValueError(f"[export_onnx] input_shape: no shape for source(s) {missing}")

    bld = _Builder(onnx)
    names: dict[ImageNode, str] = {}
    for s in graph.sources:
        names[s] = s.name
        bld._names.add(s.name)
    for node in graph.nodes:
        names[node.result] = node.result.name
        bld._names.add(node.result.name)
    for node in graph.nodes:
        _emit(bld, graph, node, names, shapes)

    def info(image: ImageNode):
        shape: list[Any] = list(shapes[image])
        if dynamic_batch and shape:
            shape[0] = "N"
        return onnx.helper.make_tensor_value_info(names[image], onnx.TensorProto.FLOAT, shape)

    g = onnx.helper.make_graph(bld.nodes, model_name, [info(s) for s in graph.sources],
                               [info(r) for r in graph.results], bld.initializers)
    model = onnx.helper.make_model(g, producer_name="metalnn",
                                   opset_imports=[onnx.helper.make_opsetid("", OPSET)])
    model.ir_version = _IR_VERSION
    if check:
        onnx.checker.check_model(model, full_check=True)
    if path is not None:
        onnx.save(model, os.fspath(path))
    return model
