"""Saving and loading graphs: weights, optimizer state and RNG counters, plus the node
structure so ``Graph.load`` can rebuild the graph. The file is a metalnn checkpoint
(see :mod:`metalnn.graph.checkpoint`): an ``.npz`` of plain arrays and JSON metadata,
checksummed and written atomically; loading never executes code.

Every node kind is described by one entry of a registry (:data:`_KINDS`, filled by
:func:`_registry`): ``describe(node, ctx) -> dict`` gives the constructor options as JSON,
``build(cfg, sources, ctx) -> node`` rebuilds the node from them, and ``extras(node, graph)``
names parameters beyond the data source's weights / biases (batch norm's running statistics).
A node whose class is not in the registry (or derives from none there) cannot be saved.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import numpy as np

from . import nodes as n
from .checkpoint import load_arrays, parameter_key, save_arrays
from .graph import _counter, node_optimizer
from .optimizers import learning_rate_scale
from .padding import Padding

FORMAT = "metalnn-graph"
VERSION = 1


class _Kind(NamedTuple):
    describe: Callable[[Any, Any], dict]
    build: Callable[[dict, list, Any], Any]
    extras: Callable[[Any, Any], dict] | None = None


_KINDS: dict[str, _Kind] = {}


# -- shared pieces -------------------------------------------------------------------------


def _padding_config(node) -> dict:
    p = node.padding
    if p.kind == "custom":  # a callable cannot be stored: keep what it resolved to
        resolved = getattr(node, "resolved_padding", None)
        if resolved is None:
            raise ValueError(f"[Graph] save: node '{node.label}' has custom padding; run a batch first")
        return {"kind": "explicit", "values": list(resolved)}
    return {"kind": p.kind, "values": list(p.values) if p.values else None}


def _padding(cfg) -> Padding:
    return Padding(cfg["kind"], tuple(cfg["values"]) if cfg["values"] else None)


class _SaveContext:
    """What describe() needs beyond the node: the graph (bound parameters) and one id per
    distinct optimizer object (layers sharing an optimizer share it again after load)."""

    def __init__(self, graph):
        self.graph = graph
        self._optimizer_ids: dict[int, int] = {}

    def source(self, node) -> dict:
        """The data source's part of a trainable node's config: the label its parameters are
        named by, its optimizer and learning-rate scale."""
        ds = node.data_source
        params = self.graph._parameters(node)
        c: dict[str, Any] = {"source_label": params[0].name.rsplit(".", 1)[0]}
        opt = getattr(ds, "optimizer", None)
        c["optimizer"] = None if opt is None else opt.to_dict()
        if opt is not None:
            c["optimizer_id"] = self._optimizer_ids.setdefault(id(opt), len(self._optimizer_ids))
        scale = learning_rate_scale(ds, node.label)
        if scale != 1.0:
            c["learning_rate_scale"] = scale
        return c


class _LoadContext:
    def __init__(self, arrays: dict, path):
        self.arrays, self.path = arrays, path
        self.built: dict[str, Any] = {}
        self._optimizers: dict[Any, Any] = {}

    def array(self, label: str, which: str, required: bool = True):
        key = parameter_key(label, which)
        if key not in self.arrays:
            if required:
                raise ValueError(f"[Graph] {self.path}: missing array {key!r}")
            return None
        return self.arrays[key]

    def optimizer(self, c: dict):
        from .optimizers import optimizer_from_dict

        if c.get("optimizer") is None:
            return None
        key = c.get("optimizer_id", repr(sorted(c["optimizer"].items())))
        if key not in self._optimizers:
            self._optimizers[key] = optimizer_from_dict(c["optimizer"])
        return self._optimizers[key]

    def finish_source(self, ds, c: dict):
        if "learning_rate_scale" in c:
            ds.learning_rate_scale = c["learning_rate_scale"]
        return ds


def _conv_source(cls, w, b, c: dict, ctx: _LoadContext, d: dict):
    return ctx.finish_source(cls.from_arrays(
        w, b, optimizer=ctx.optimizer(c), label=c.get("source_label", c["label"]), stride=d["stride"],
        dilation=d["dilation"], groups=d["groups"], neuron=d["neuron"], neuron_a=d["neuron_a"],
        neuron_b=d["neuron_b"]), c)


def _attrs(*names: str) -> Callable[[Any, Any], dict]:
    """describe() of a node whose options are plain attributes (tuples stored as lists)."""
    def describe(node, ctx):
        return {k: list(v) if isinstance(v, tuple) else v for k, v in ((k, getattr(node, k)) for k in names)}
    return describe


def _register(names, describe, build, extras=None) -> None:
    for name in (names,) if isinstance(names, str) else names:
        _KINDS[name] = _Kind(describe, build, extras)


# -- the registry --------------------------------------------------------------------------


def _registry() -> dict[str, _Kind]:
    if _KINDS:
        return _KINDS
    from . import nodes_arithmetic as na
    from . import nodes_conv_transpose as nct
    from . import nodes_loss as nl
    from . import nodes_neuron as nn_
    from . import nodes_normalization as nno
    from . import nodes_pooling as npl
    from . import nodes_shape as ns
    from .data_source import ConvolutionWeights

    nothing = _attrs()

    # gradient nodes (derived by Graph.training or built by hand)
    _register("GradientNode", lambda node, ctx: {"forward": node.forward.label, "input_index": node.input_index},
              lambda c, s, ctx: n.GradientNode(ctx.built[c["forward"]], s[0], c["input_index"], label=c["label"]))

    # convolution / fully connected
    def conv_describe(node, ctx):
        c = {"descriptor": node.descriptor().to_dict(), "accumulation": node.accumulation, **ctx.source(node)}
        if not isinstance(node, n.FullyConnectedNode):
            c["padding"] = _padding_config(node)
        return c

    def conv_build(c, s, ctx):
        label = c["label"]
        ds = _conv_source(ConvolutionWeights, ctx.array(label, "weights"), ctx.array(label, "biases", False), c, ctx,
                          c["descriptor"])
        if c["kind"] == "FullyConnectedNode":
            return n.FullyConnectedNode(s[0], ds, label, c["accumulation"])
        return n.ConvolutionNode(s[0], ds, _padding(c["padding"]), label, c["accumulation"])

    _register(("ConvolutionNode", "FullyConnectedNode"), conv_describe, conv_build)

    # transposed convolution
    def convt_describe(node, ctx):
        return {"descriptor": node.descriptor().to_dict(), "padding": _padding_config(node),
                "output_padding": list(node.output_padding), "accumulation": node.accumulation, **ctx.source(node)}

    def convt_build(c, s, ctx):
        label, d = c["label"], c["descriptor"]
        w, b = ctx.array(label, "weights"), ctx.array(label, "biases", False)
        ds = ctx.finish_source(nct.ConvolutionTransposeWeights(
            d["in_channels"], d["out_channels"], tuple(d["kernel_size"]), stride=tuple(d["stride"]),
            dilation=tuple(d["dilation"]), groups=d["groups"], neuron=d["neuron"], neuron_a=d["neuron_a"],
            neuron_b=d["neuron_b"], weights_init=w, bias=False if b is None else b, optimizer=ctx.optimizer(c),
            label=c.get("source_label", label), dtype=w.dtype), c)
        return nct.ConvolutionTransposeNode(s[0], ds, _padding(c["padding"]), tuple(c["output_padding"]), label,
                                            c["accumulation"])

    _register("ConvolutionTransposeNode", convt_describe, convt_build)

    # pooling
    def pool_describe(node, ctx):
        c = {"kernel": list(node.kernel), "stride": list(node.stride), "padding": _padding_config(node)}
        if isinstance(node, n.PoolingAverageNode):
            c["count_include_pad"] = node.count_include_pad
        if isinstance(node, npl._DilatedPoolingNode):
            c["dilation"] = list(node.dilation)
        return c

    def pool_build(c, s, ctx):
        cls = getattr(n, c["kind"], None) or getattr(npl, c["kind"])
        extra = {k: c[k] for k in ("count_include_pad", "dilation") if k in c}
        return cls(s[0], tuple(c["kernel"]), tuple(c["stride"]), _padding(c["padding"]), label=c["label"], **extra)

    _register(("PoolingMaxNode", "PoolingAverageNode", "PoolingL2NormNode", "DilatedPoolingMaxNode"),
              pool_describe, pool_build)

    # neurons (a, b) and (a, b, c); PReLU with its slopes
    neurons = {cls.__name__: cls for cls in vars(n).values()
               if isinstance(cls, type) and issubclass(cls, n.NeuronNode) and cls is not n.NeuronNode}
    _register(list(neurons), _attrs("a", "b"),
              lambda c, s, ctx: neurons[c["kind"]](s[0], c["a"], c["b"], label=c["label"]))
    _register(("NeuronPowerNode", "NeuronExponentialNode", "NeuronLogarithmNode"), _attrs("a", "b", "c"),
              lambda c, s, ctx: getattr(nn_, c["kind"])(s[0], c["a"], c["b"], c["c"], label=c["label"]))

    def prelu_build(c, s, ctx):
        from .data_source_neuron import PReLUSlopes

        w = ctx.array(c["label"], "weights")
        ds = PReLUSlopes(w.shape[0], w.reshape(-1), optimizer=ctx.optimizer(c),
                         label=c.get("source_label", c["label"]), dtype=w.dtype)
        return nn_.NeuronPReLUNode(s[0], ctx.finish_source(ds, c), label=c["label"])

    _register("NeuronPReLUNode", lambda node, ctx: ctx.source(node), prelu_build)

    # dropout, softmax, losses
    _register("DropoutNode", _attrs("keep_probability", "seed"),
              lambda c, s, ctx: n.DropoutNode(s[0], c["keep_probability"], c["seed"], label=c["label"]))
    _register(("SoftmaxNode", "LogSoftmaxNode"), nothing,
              lambda c, s, ctx: getattr(n, c["kind"])(s[0], label=c["label"]))
    _register("SoftmaxCrossEntropyLossNode", _attrs("reduction", "label_smoothing"),
              lambda c, s, ctx: n.SoftmaxCrossEntropyLossNode(s[0], c["reduction"], c["label_smoothing"],
                                                              label=c["label"]))
    _register("LossNode", lambda node, ctx: {"descriptor": dataclasses.asdict(node.descriptor)},
              lambda c, s, ctx: nl.LossNode(s[0], nl.LossDescriptor(**c["descriptor"]), label=c["label"]))

    def yolo_describe(node, ctx):
        d = dataclasses.asdict(node.descriptor)  # component LossDescriptors become dicts
        d["anchor_boxes"] = [[float(v) for v in a] for a in node.descriptor.anchor_boxes]
        return {"descriptor": d}

    def yolo_build(c, s, ctx):
        d = dict(c["descriptor"])
        d["anchor_boxes"] = [tuple(a) for a in d["anchor_boxes"]]
        for k in ("xy_loss", "wh_loss", "confidence_loss", "classes_loss"):
            if isinstance(d.get(k), dict):
                d[k] = nl.LossDescriptor(**d[k])
        return nl.YOLOLossNode(s[0], nl.YOLOLossDescriptor(**d), label=c["label"])

    _register("YOLOLossNode", yolo_describe, yolo_build)

    # arithmetic (two sources)
    arithmetic = {"AdditionNode": n.AdditionNode, "SubtractionNode": na.SubtractionNode,
                  "MultiplicationNode": na.MultiplicationNode, "DivisionNode": na.DivisionNode}
    _register(list(arithmetic), nothing, lambda c, s, ctx: arithmetic[c["kind"]](s[0], s[1], label=c["label"]))

    # shape
    _register("UpsamplingNearestNode", lambda node, ctx: {"scale": list(node.scale)},
              lambda c, s, ctx: ns.UpsamplingNearestNode(s[0], tuple(c["scale"]), label=c["label"]))
    _register("UpsamplingBilinearNode", lambda node, ctx: {"scale": list(node.scale),
                                                           "align_corners": node.align_corners},
              lambda c, s, ctx: ns.UpsamplingBilinearNode(s[0], tuple(c["scale"]), label=c["label"],
                                                          align_corners=c["align_corners"]))
    _register("ConcatenationNode", nothing, lambda c, s, ctx: ns.ConcatenationNode(s, label=c["label"]))
    _register("ReshapeNode", _attrs("shape"),
              lambda c, s, ctx: ns.ReshapeNode(s[0], tuple(c["shape"]), label=c["label"]))
    _register(("FlattenNode", "ImageToMatrixNode"), nothing,
              lambda c, s, ctx: getattr(ns, c["kind"])(s[0], label=c["label"]))
    _register("MatrixToImageNode", _attrs("shape"),
              lambda c, s, ctx: ns.MatrixToImageNode(s[0], tuple(c["shape"]), label=c["label"]))
    _register("PadNode", _attrs("padding", "mode", "channels"),
              lambda c, s, ctx: ns.PadNode(s[0], tuple(c["padding"]), c["mode"], tuple(c["channels"]),
                                           label=c["label"]))
    _register("CropNode", _attrs("offset", "size"),
              lambda c, s, ctx: ns.CropNode(s[0], tuple(c["offset"]), tuple(c["size"]), label=c["label"]))

    # normalization: gamma / beta are the node's "weights" / "biases"; batch norm adds its running statistics
    def norm_describe(node, ctx):
        c = ctx.source(node)  # binds the parameters: channels and epsilon are read now
        c.update(channels=node._channels, epsilon=node._epsilon)
        if isinstance(node, nno.BatchNormalizationNode):
            c["momentum"] = node.momentum
        elif type(node) is nno.GroupNormalizationNode:
            c["groups"] = node.groups
        return c

    def norm_build(c, s, ctx):
        from .data_source_normalization import BatchNormalizationWeights, NormalizationWeights

        label, kind = c["label"], c["kind"]
        gamma, beta = ctx.array(label, "weights"), ctx.array(label, "biases")
        common = {"epsilon": c["epsilon"], "optimizer": ctx.optimizer(c), "label": c.get("source_label", label)}
        if kind == "BatchNormalizationNode":
            ds = BatchNormalizationWeights(c["channels"], gamma, beta, ctx.array(label, "mean"),
                                           ctx.array(label, "variance"), **common)
            return nno.BatchNormalizationNode(s[0], ctx.finish_source(ds, c), c["momentum"], label=label)
        ds = ctx.finish_source(NormalizationWeights(c["channels"], gamma, beta, **common), c)
        if kind == "GroupNormalizationNode":
            return nno.GroupNormalizationNode(s[0], ds, c["groups"], label=label)
        return getattr(nno, kind)(s[0], ds, label=label)

    def batch_norm_extras(node, graph):
        graph._parameters(node)
        mean, variance = node._running[graph]
        return {"mean": mean, "variance": variance}

    _register(("GroupNormalizationNode", "InstanceNormalizationNode", "LayerNormalizationNode"),
              norm_describe, norm_build)
    _register("BatchNormalizationNode", norm_describe, norm_build, batch_norm_extras)
    _register("CrossChannelNormalizationNode", _attrs("size", "alpha", "beta", "delta"),
              lambda c, s, ctx: nno.CrossChannelNormalizationNode(s[0], c["size"], c["alpha"], c["beta"], c["delta"],
                                                                  label=c["label"]))
    _register_rnn()
    return _KINDS


def _register_rnn() -> None:
    from .. import rnn
    from . import nodes_rnn as nr

    cells = {cls.cell: cls for cls in (rnn.RNNSingleGateDescriptor, rnn.LSTMDescriptor, rnn.GRUDescriptor,
                                       rnn.MGUDescriptor)}

    def describe(node, ctx):
        layer = node.layer
        c = {"output": node.output, "bidirectional": layer.bidirectional,
             "layers": [{"cell": d.cell, **dataclasses.asdict(d)} for d in layer.descriptors], **ctx.source(node)}
        if getattr(node, "source_layout", "sequence") != "sequence":
            c["source_layout"] = node.source_layout
        return c

    def build(c, s, ctx):
        descs = [cells[d["cell"]](**{k: v for k, v in d.items() if k != "cell"}) for d in c["layers"]]
        layer = rnn.RNNMatrixTrainingLayer(descs, c["bidirectional"])
        flat = ctx.array(c["label"], "weights").reshape(-1)
        mats, k = [], 0
        for shape in layer.weight_shapes():
            size = int(np.prod(shape))
            mats.append(flat[k:k + size].reshape(shape))
            k += size
        ds = ctx.finish_source(nr.RNNWeights(layer, weights=mats, optimizer=ctx.optimizer(c),
                                             label=c.get("source_label", c["label"])), c)
        extra = {"source_layout": c["source_layout"]} if "source_layout" in c else {}
        return nr.RNNNode(s[0], ds, c["output"], label=c["label"], **extra)

    _register("RNNNode", describe, build)


def _kind_of(node) -> _Kind:
    kinds = _registry()
    if isinstance(node, n.GradientNode):
        return kinds["GradientNode"]
    for cls in type(node).__mro__:  # a subclass of a registered node is saved as that node
        if cls.__name__ in kinds and cls.__module__.startswith(__package__):
            return kinds[cls.__name__]
    raise ValueError(f"[Graph] save: cannot describe node '{node.label}' ({node.kind})")


def node_config(node, ctx: _SaveContext) -> dict[str, Any]:
    """The JSON description of ``node``: kind, label, source image names and its options."""
    kind = "GradientNode" if isinstance(node, n.GradientNode) else node.kind
    c: dict[str, Any] = {"kind": kind, "label": node.label, "sources": [s.name for s in node.sources]}
    if node.result.name != f"{node.label}.result":  # consumers name it in their sources
        c["result"] = node.result.name
    c.update(_kind_of(node).describe(node, ctx))
    return c


def _parameters(graph, node) -> dict[str, Any]:
    """Every parameter of ``node`` the file holds, by name: weights, biases (or gamma, beta)
    and extras such as running statistics."""
    out: dict[str, Any] = {}
    if getattr(node, "data_source", None) is not None:
        w, b = graph._parameters(node)
        out["weights"] = w
        if b is not None:
            out["biases"] = b
    extras = _kind_of(node).extras
    if extras is not None:
        out.update(extras(node, graph))
    return out


# -- save / load ---------------------------------------------------------------------------


def save_graph(graph, path) -> None:
    """Writes the graph's parameters, optimizer state and counters (atomically)."""
    ctx = _SaveContext(graph)
    configs = [node_config(x, ctx) for x in graph.nodes]
    arrays: dict[str, np.ndarray] = {}
    for node in graph.nodes:
        for name, p in _parameters(graph, node).items():
            arrays[parameter_key(node.label, name)] = np.asarray(p.value)
    # Optimizer state: what the graph has bound, else what a loaded graph holds for its first compile.
    for (label, which), state in graph._opt_state.items():
        for name, a in state.items():
            arrays[parameter_key(label, f"{which}.{name}")] = np.asarray(a)
    for (label, which), state in graph._state_params.items():
        for name, p in state.items():
            arrays[parameter_key(label, f"{which}.{name}")] = np.asarray(p.value)
    steps = {}
    for node in graph.nodes:
        opt = node_optimizer(node)
        if opt is not None and getattr(opt, "_metalnn_step", None) is not None:
            steps[node.label] = opt._metalnn_step.value
    meta = {
        "format": FORMAT, "version": VERSION, "mode": graph.mode, "result_needed": graph.result_needed,
        "results": [r.name for r in graph.results], "nodes": configs,
        "exported": [x.result.name for x in graph.nodes if x.result.export_from_graph],
        "dropout_counter": graph._dropout_counter.value, "optimizer_steps": steps,
    }
    save_arrays(path, arrays, meta)


def _check_meta(meta: dict, path) -> None:
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(f"[Graph] {path}: not a metalnn graph file of version {VERSION} "
                         f"(format {meta.get('format')!r}, version {meta.get('version')!r})")
    if not isinstance(meta.get("nodes"), list) or not all(
            isinstance(c, dict) and isinstance(c.get("kind"), str) and isinstance(c.get("label"), str)
            and isinstance(c.get("sources"), list) for c in meta["nodes"]):
        raise ValueError(f"[Graph] {path}: malformed node list")


# Options that may differ between the file and the graph load_state writes into.
_NOT_STRUCTURE = ("optimizer", "optimizer_id", "learning_rate_scale", "source_label")


def _structures(configs: list[dict]) -> list[dict]:
    """The configs without the options load_state may change; graph inputs renamed by order of
    appearance (an unnamed ImageNode gets a different automatic name in every build)."""
    produced = {c.get("result", f"{c['label']}.result") for c in configs}
    inputs: dict[str, str] = {}
    out = []
    for c in configs:
        s = {k: v for k, v in c.items() if k not in _NOT_STRUCTURE}
        s["sources"] = [x if x in produced else inputs.setdefault(x, f"<input {len(inputs)}>") for x in c["sources"]]
        out.append(s)
    return out


def load_graph_state(graph, path) -> None:
    """Restores weights, optimizer state and counters into ``graph`` (same structure).
    Everything is checked before anything is written."""
    if not graph._on_host:
        raise ValueError(f"[Graph] load_state runs on cpu graphs (this one is on {graph.device}); "
                         "use Graph.load(path, device=...) instead")
    arrays, meta = load_arrays(path)
    _check_meta(meta, path)
    ctx = _SaveContext(graph)
    mine_cfg = [node_config(x, ctx) for x in graph.nodes]
    saved = [(c["kind"], c["label"]) for c in meta["nodes"]]
    mine = [(c["kind"], c["label"]) for c in mine_cfg]
    if saved != mine:
        raise ValueError(f"[Graph] {path}: the file holds a different graph ({len(saved)} nodes) than this one "
                         f"({len(mine)} nodes)")
    for a, b in zip(_structures(meta["nodes"]), _structures(mine_cfg)):
        if a != b:
            diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            raise ValueError(f"[Graph] {path}: node '{b['label']}' differs from the file's "
                             f"(options {', '.join(diff)}): the file holds a different graph")
    writes = []
    for node in graph.nodes:
        opt = node_optimizer(node)
        for which, p in _parameters(graph, node).items():
            writes.append((p.value, parameter_key(node.label, which)))
            if opt is not None and graph.is_training and which in ("weights", "biases"):
                graph._optimizer_state(node, which, p, opt)
                for name, a in graph._opt_state[(node.label, which)].items():
                    writes.append((a, parameter_key(node.label, f"{which}.{name}")))
    for dst, key in writes:
        if key not in arrays:
            raise ValueError(f"[Graph] {path}: missing array {key!r}")
        if arrays[key].shape != dst.shape:
            raise ValueError(f"[Graph] {path}: {key} has shape {arrays[key].shape}, the graph has {dst.shape}")
        if not np.can_cast(arrays[key].dtype, dst.dtype, "same_kind"):
            raise ValueError(f"[Graph] {path}: {key} has dtype {arrays[key].dtype}, the graph has {dst.dtype}")
    graph.synchronize()
    for dst, key in writes:
        np.copyto(dst, arrays[key], casting="same_kind")
    _restore_counters(graph, meta)


def load_graph(path, **graph_kwargs):
    """Rebuilds a saved graph with built-in data sources holding the saved weights."""
    from .graph import Graph

    arrays, meta = load_arrays(path)
    _check_meta(meta, path)
    kinds = _registry()
    ctx = _LoadContext(arrays, path)
    images: dict[str, n.ImageNode] = {}

    def image(name):
        if name not in images:
            images[name] = n.ImageNode(name)
        return images[name]

    for c in meta["nodes"]:
        kind, label = c["kind"], c["label"]
        if kind not in kinds:
            raise ValueError(f"[Graph] {path}: unknown node kind {kind!r}")
        try:
            node = kinds[kind].build(c, [image(s) for s in c["sources"]], ctx)
        except (KeyError, TypeError, IndexError) as e:
            raise ValueError(f"[Graph] {path}: node {label!r} ({kind}) has a malformed description: {e!r}") from None
        node.result.name = c.get("result", f"{label}.result")
        images[node.result.name] = node.result
        ctx.built[label] = node
    for name in meta.get("exported", []):
        if name in images:
            images[name].export_from_graph = True
    missing = [r for r in meta["results"] if r not in images]
    if missing:
        raise ValueError(f"[Graph] {path}: results {missing} are not produced by the saved nodes")
    graph = Graph([images[r] for r in meta["results"]], meta["result_needed"], mode=meta["mode"], **graph_kwargs)
    # Optimizer state is handed over before the first compile binds it (on any device).
    for node in graph.nodes:
        for which in ("weights", "biases"):
            prefix = parameter_key(node.label, f"{which}.")
            state = {k[len(prefix):]: a for k, a in arrays.items() if k.startswith(prefix)}
            if state:
                graph._opt_state[(node.label, which)] = {k: np.array(a) for k, a in state.items()}
    _restore_counters(graph, meta)
    return graph


def _restore_counters(graph, meta: dict) -> None:
    graph._dropout_counter.value = int(meta.get("dropout_counter", 0))
    for node in graph.nodes:
        opt = node_optimizer(node)
        if opt is not None and node.label in meta.get("optimizer_steps", {}):
            _counter(opt).value = int(meta["optimizer_steps"][node.label])
