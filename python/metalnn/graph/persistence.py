"""Saving and loading graphs: weights, optimizer state and RNG counters, plus the node
structure so ``Graph.load`` can rebuild the graph. The file is a metalnn checkpoint
(see :mod:`metalnn.graph.checkpoint`): an ``.npz`` of plain arrays and JSON metadata,
checksummed and written atomically; loading never executes code."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import nodes as n
from .checkpoint import load_arrays, parameter_key, save_arrays
from .graph import _counter, node_optimizer
from .padding import Padding

FORMAT = "metalnn-graph"
VERSION = 1

_NEURONS = {cls.__name__: cls for cls in vars(n).values()
            if isinstance(cls, type) and issubclass(cls, n.NeuronNode) and cls is not n.NeuronNode}


def _padding_config(node) -> dict:
    p = node.padding
    if p.kind == "custom":  # a callable cannot be stored: keep what it resolved to
        resolved = getattr(node, "resolved_padding", None)
        if resolved is None:
            raise ValueError(f"[Graph] save: node '{node.label}' has custom padding; run a batch first")
        return {"kind": "explicit", "values": list(resolved)}
    return {"kind": p.kind, "values": list(p.values) if p.values else None}


def node_config(node) -> dict[str, Any]:
    c: dict[str, Any] = {"kind": node.kind, "label": node.label, "sources": [s.name for s in node.sources]}
    if isinstance(node, n.GradientNode):
        c.update(kind="GradientNode", forward=node.forward.label, input_index=node.input_index)
    elif isinstance(node, n.ConvolutionNode):
        ds = node.data_source
        opt = getattr(ds, "optimizer", None)
        c.update(descriptor=node.descriptor().to_dict(), accumulation=node.accumulation,
                 optimizer=None if opt is None else opt.to_dict())
        if not isinstance(node, n.FullyConnectedNode):
            c["padding"] = _padding_config(node)
    elif isinstance(node, n._PoolingNode):
        c.update(kernel=list(node.kernel), stride=list(node.stride), padding=_padding_config(node),
                 count_include_pad=getattr(node, "count_include_pad", True))
    elif isinstance(node, n.NeuronNode):
        c.update(a=node.a, b=node.b)
    elif isinstance(node, n.DropoutNode):
        c.update(keep_probability=node.keep_probability, seed=node.seed)
    elif isinstance(node, n.SoftmaxCrossEntropyLossNode):
        c.update(reduction=node.reduction, label_smoothing=node.label_smoothing)
    elif not isinstance(node, (n.SoftmaxNode, n.AdditionNode)):
        raise ValueError(f"[Graph] save: cannot describe node '{node.label}' ({node.kind})")
    return c


def save_graph(graph, path) -> None:
    """Writes the graph's parameters, optimizer state and counters (atomically)."""
    arrays: dict[str, np.ndarray] = {}
    for node in graph.nodes:
        if getattr(node, "data_source", None) is None:
            continue
        w, b = graph._parameters(node)
        arrays[parameter_key(node.label, "weights")] = np.asarray(w.value)
        if b is not None:
            arrays[parameter_key(node.label, "biases")] = np.asarray(b.value)
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
        "results": [r.name for r in graph.results], "nodes": [node_config(x) for x in graph.nodes],
        "dropout_counter": graph._dropout_counter.value, "optimizer_steps": steps,
    }
    save_arrays(path, arrays, meta)


def _check_meta(meta: dict, path) -> None:
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(f"[Graph] {path}: not a metalnn graph file of version {VERSION} "
                         f"(format {meta.get('format')!r}, version {meta.get('version')!r})")


def load_graph_state(graph, path) -> None:
    """Restores weights, optimizer state and counters into ``graph`` (same structure).
    Everything is checked before anything is written."""
    if not graph._on_host:
        raise ValueError(f"[Graph] load_state runs on cpu graphs (this one is on {graph.device}); "
                         "use Graph.load(path, device=...) instead")
    arrays, meta = load_arrays(path)
    _check_meta(meta, path)
    saved = [(c["kind"], c["label"]) for c in meta["nodes"]]
    mine = [(c["kind"], c["label"]) for c in (node_config(x) for x in graph.nodes)]
    if saved != mine:
        raise ValueError(f"[Graph] {path}: the file holds a different graph ({len(saved)} nodes) than this one "
                         f"({len(mine)} nodes)")
    writes = []
    for node in graph.nodes:
        if getattr(node, "data_source", None) is None:
            continue
        for which, p in zip(("weights", "biases"), graph._parameters(node)):
            if p is not None:
                writes.append((p.value, arrays, parameter_key(node.label, which)))
            opt = node_optimizer(node)
            if p is not None and opt is not None and graph.is_training:
                graph._optimizer_state(node, which, p, opt)
                for name, a in graph._opt_state[(node.label, which)].items():
                    writes.append((a, arrays, parameter_key(node.label, f"{which}.{name}")))
    for dst, src, key in writes:
        if key not in src:
            raise ValueError(f"[Graph] {path}: missing array {key!r}")
        if src[key].shape != dst.shape:
            raise ValueError(f"[Graph] {path}: {key} has shape {src[key].shape}, the graph has {dst.shape}")
    graph.synchronize()
    for dst, src, key in writes:
        np.copyto(dst, src[key], casting="same_kind")
    _restore_counters(graph, meta)


def load_graph(path, **graph_kwargs):
    """Rebuilds a saved graph with built-in data sources holding the saved weights."""
    from .data_source import ConvolutionWeights
    from .graph import Graph
    from .optimizers import optimizer_from_dict

    arrays, meta = load_arrays(path)
    _check_meta(meta, path)
    images: dict[str, n.ImageNode] = {}
    built: dict[str, n.FilterNode] = {}
    optimizers: dict[str, Any] = {}

    def image(name):
        if name not in images:
            images[name] = n.ImageNode(name)
        return images[name]

    def padding(cfg):
        return Padding(cfg["kind"], tuple(cfg["values"]) if cfg["values"] else None)

    for c in meta["nodes"]:
        kind, label, srcs = c["kind"], c["label"], [image(s) for s in c["sources"]]
        if kind == "GradientNode":
            node = n.GradientNode(built[c["forward"]], srcs[0], c["input_index"], label=label)
        elif kind in ("ConvolutionNode", "FullyConnectedNode"):
            d = dict(c["descriptor"])
            opt = None
            if c["optimizer"] is not None:
                key = repr(sorted(c["optimizer"].items()))
                opt = optimizers.setdefault(key, optimizer_from_dict(c["optimizer"]))
            bias_key = parameter_key(label, "biases")
            ds = ConvolutionWeights.from_arrays(arrays[parameter_key(label, "weights")], arrays.get(bias_key),
                                                optimizer=opt, label=label, stride=d["stride"],
                                                dilation=d["dilation"], groups=d["groups"], neuron=d["neuron"],
                                                neuron_a=d["neuron_a"], neuron_b=d["neuron_b"])
            if kind == "ConvolutionNode":
                node = n.ConvolutionNode(srcs[0], ds, padding(c["padding"]), label, c["accumulation"])
            else:
                node = n.FullyConnectedNode(srcs[0], ds, label, c["accumulation"])
        elif kind in ("PoolingMaxNode", "PoolingAverageNode"):
            cls = getattr(n, kind)
            extra = {"count_include_pad": c["count_include_pad"]} if kind == "PoolingAverageNode" else {}
            node = cls(srcs[0], tuple(c["kernel"]), tuple(c["stride"]), padding(c["padding"]), label=label, **extra)
        elif kind in _NEURONS:
            node = _NEURONS[kind](srcs[0], c["a"], c["b"], label=label)
        elif kind == "DropoutNode":
            node = n.DropoutNode(srcs[0], c["keep_probability"], c["seed"], label=label)
        elif kind in ("SoftmaxNode", "LogSoftmaxNode"):
            node = getattr(n, kind)(srcs[0], label=label)
        elif kind == "AdditionNode":
            node = n.AdditionNode(srcs[0], srcs[1], label=label)
        elif kind == "SoftmaxCrossEntropyLossNode":
            node = n.SoftmaxCrossEntropyLossNode(srcs[0], c["reduction"], c["label_smoothing"], label=label)
        else:
            raise ValueError(f"[Graph] {path}: unknown node kind {kind!r}")
        node.result.name = f"{label}.result"
        images[node.result.name] = node.result
        built[label] = node
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
