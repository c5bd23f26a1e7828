"""mnn.Graph: an inference or training graph built from image and filter nodes,
compiled to a C++ program and run batch after batch (MPSNNGraph)."""

from __future__ import annotations

import os
import weakref
from collections.abc import Sequence
from typing import Any, Callable, Protocol, TypeGuard

import numpy as np

from .. import _core
from .compiler import Compiled, Compiler, memory_plan
from .nodes import (
    AdditionNode,
    FilterNode,
    GradientNode,
    ImageNode,
    SoftmaxCrossEntropyLossNode,
)
from .optimizers import learning_rate_scale


class _LossNode(Protocol):
    """What the graph reads of a loss node (SoftmaxCrossEntropyLossNode, nodes_loss.py)."""

    label: str
    sources: list[ImageNode]
    result: ImageNode
    labels: ImageNode   # fed by encode_batch
    weights: ImageNode


class _SourcedNode(Protocol):
    """What the graph reads of a node whose parameters come from a data source."""

    label: str
    data_source: Any
    _descriptor: Any    # the node's descriptor cache, set to what read_parameters returned


def _has_data_source(node: object) -> TypeGuard[_SourcedNode]:
    # The node classes with parameters set data_source in __init__ (FilterNode has none).
    return getattr(node, "data_source", None) is not None


def _topological(results: Sequence[ImageNode]) -> list[FilterNode]:
    """Filter nodes that `results` depend on, producers first (deterministic order)."""
    order: list[FilterNode] = []
    state: dict[FilterNode, str] = {}   # "open" while its dependencies are walked, then "done"

    def deps(node):
        out = [s.producer for s in node.sources if s.producer is not None]
        if isinstance(node, GradientNode):
            out.append(node.forward)
        return out

    for r in results:
        if r.producer is None:
            continue
        stack = [(r.producer, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                if state.get(node) != "done":
                    state[node] = "done"
                    order.append(node)
                continue
            if state.get(node) == "done":
                continue
            if state.get(node) == "open":
                raise ValueError(f"[Graph] cycle through node '{node.label}'")
            state[node] = "open"
            stack.append((node, True))
            for d in reversed(deps(node)):
                if state.get(d) != "done":
                    stack.append((d, False))
    return order


def is_loss_node(node: object) -> TypeGuard[_LossNode]:
    """A loss node: SoftmaxCrossEntropyLossNode, or a node class declaring ``is_loss = True``
    (nodes_loss.py). Its labels / weights images are fed by encode_batch, its loss has a slot."""
    return isinstance(node, SoftmaxCrossEntropyLossNode) or getattr(type(node), "is_loss", False)


def derive_training_exits(loss: _LossNode) -> list[ImageNode]:
    """Builds the gradient nodes of every filter the loss depends on (reverse
    topological walk; gradients summed with an AdditionNode where an image feeds
    several consumers) and returns the terminal gradient images."""
    forward = [n for n in _topological([loss.sources[0]])]
    trains: dict[ImageNode, bool] = {}

    def requires_grad(image: ImageNode) -> bool:
        if image not in trains:
            p = image.producer
            trains[image] = p is not None and (p.trainable or any(requires_grad(s) for s in p.sources))
        return trains[image]

    grads: dict[ImageNode, list[ImageNode]] = {loss.sources[0]: [loss.result]}
    exits: list[ImageNode] = []
    for node in reversed(forward):
        gs = grads.get(node.result)
        if not gs:
            continue
        g = gs[0]
        for k, other in enumerate(gs[1:], 1):
            g = AdditionNode(g, other, label=f"{node.label}.gradient_sum{k if k > 1 else ''}").result
        for i, src in enumerate(node.sources):
            if requires_grad(src):
                grads.setdefault(src, []).append(GradientNode(node, g, i).result)
            elif node.trainable and i == 0:
                exits.append(GradientNode(node, g, i).result)
    return exits


class BatchHandle:
    """One encoded batch: ``wait()``, ``done()``, its result images and loss."""

    def __init__(self, graph: Graph, compiled: Compiled, batch):
        self._graph, self._compiled, self._batch = graph, compiled, batch

    @property
    def index(self) -> int:
        return self._batch.index

    def done(self) -> bool:
        return self._batch.done()

    def wait(self) -> BatchHandle:
        """Blocks until the batch has run; raises the error a kernel raised in it.

        Waits in short slices so Ctrl-C raises KeyboardInterrupt promptly; the batch itself
        still runs to its end (weights are never left half-updated)."""
        while not self._batch.wait_for(0.05):
            pass
        self._batch.wait()
        return self

    @property
    def error(self) -> str | None:
        """The error message of a failed batch (None while running or on success)."""
        return self._batch.error()

    def _slot(self, s: int):
        self.wait()
        return self._batch.slot(s)

    @property
    def results(self) -> list:
        return [self._slot(s) for s in self._compiled.output_slots.values()]

    @property
    def result(self):
        """The (first) result image, or None when the graph's results are not needed."""
        slots = list(self._compiled.output_slots.values())
        return self._slot(slots[0]) if slots else None

    @property
    def losses(self) -> dict:
        return {k: self._slot(s) for k, s in self._compiled.loss_slots.items()}

    @property
    def loss(self):
        """The loss value (a float for reduction 'sum'/'mean'; an array for 'none')."""
        if not self._compiled.loss_slots:
            raise ValueError("[Graph] this graph has no loss node")
        v = self._slot(next(iter(self._compiled.loss_slots.values())))
        return float(v) if v.ndim == 0 else v

    def output(self, image: ImageNode):
        """An exported image (``image.export_from_graph = True``) of this batch."""
        s = self._compiled.output_slots.get(image.name)
        if s is None:
            raise KeyError(f"[Graph] {image.name} is not a result or exported image of this graph")
        return self._slot(s)


class Graph:
    """A graph of filter nodes ending at ``result`` (one image node or several).

    Inference: ``Graph(fc2.result)``. Training: ``Graph(c1_gradient.result,
    result_needed=False)`` for a graph built by hand with ``gradient_filter``, or
    ``Graph.training(loss_node)`` to derive it. ``encode_batch`` queues a batch and
    returns a :class:`BatchHandle`; at most ``max_in_flight`` batches run at once.
    ``distributed=True`` (or a :class:`metalnn.distributed.Options`) trains data-parallel over
    the ranks of ``metalnn.distributed.init()``: gradients averaged between the gradient pass
    and the update (see the multi-GPU guide).
    """

    def __init__(self, result: ImageNode | Sequence[ImageNode], result_needed: bool = True, *,
                 mode: str | None = None, fuse: bool = True, max_in_flight: int = 2, device: str | None = None,
                 check_numerics: bool | None = None, distributed=False):
        results = [result] if isinstance(result, ImageNode) else list(result)
        if not results or not all(isinstance(r, ImageNode) for r in results):
            raise TypeError("[Graph] result must be an ImageNode (node.result) or a list of them")
        if not isinstance(max_in_flight, int) or max_in_flight < 1:
            raise ValueError(f"[Graph] max_in_flight must be an int >= 1, got {max_in_flight!r}")
        self.device = _core.Device(device) if device else _core.default_device()
        self.results, self.result_needed = results, bool(result_needed)
        self.fuse = bool(fuse)
        self.max_in_flight = max_in_flight
        self.nodes = _topological(results)
        if not self.nodes:
            raise ValueError("[Graph] result has no producing filter node")
        self.loss_nodes = [n for n in self.nodes if is_loss_node(n)]
        aux = {img for n in self.loss_nodes for img in (n.labels, n.weights)}
        seen, self.sources = set(), []
        for n in self.nodes:
            for s in n.sources:
                if s.producer is None and s not in seen and s not in aux:
                    seen.add(s)
                    self.sources.append(s)
        self._consumers: dict[ImageNode, list[FilterNode]] = {}
        for n in self.nodes:
            for s in n.sources:
                self._consumers.setdefault(s, []).append(n)
        # Forward nodes whose gradient node is in this graph (they keep what it reads).
        self._differentiated = {n.forward for n in self.nodes if isinstance(n, GradientNode)}
        has_gradients = bool(self._differentiated)
        # Distinct optimizers of the graph's data sources (usually one shared by every layer).
        self._optimizers = list({id(o): o for o in map(node_optimizer, self.nodes) if o is not None}.values())
        self.mode = mode or ("training" if has_gradients else "inference")
        self._params: dict[_SourcedNode, tuple] = {}
        self._opt_state: dict[tuple, dict] = {}
        self._state_params: dict[tuple, dict] = {}
        self._dropout_counter = _core.graph.Counter(0)
        # Compiled program, its executor and the slots kept after a batch, by _key().
        self._compiled: dict[tuple, tuple[Compiled, Any, set[int]]] = {}
        self._current = None
        self._itemsize: dict[ImageNode, int] = {}
        if check_numerics is None:
            check_numerics = os.environ.get("METALNN_CHECK_NUMERICS", "") not in ("", "0")
        self.check_numerics = check_numerics
        # Data-parallel training (metalnn.distributed): gradients averaged over the ranks.
        from ..distributed.data_parallel import DataParallel, options_from

        options = options_from(distributed)
        self._distributed = DataParallel(self, options) if options is not None else None

    @classmethod
    def training(cls, loss: ImageNode | FilterNode, **kwargs: Any) -> Graph:
        """The training graph of ``loss`` (a SoftmaxCrossEntropyLossNode or its result),
        derived automatically: the same nodes ``gradient_filter`` would build by hand."""
        node = loss.producer if isinstance(loss, ImageNode) else loss
        if node is None or not is_loss_node(node):
            raise TypeError(f"[Graph] training() needs a loss node, got {loss!r}")
        exits = derive_training_exits(node)
        if not exits:
            raise ValueError("[Graph] the loss does not depend on any trainable node")
        return cls(exits, result_needed=False, mode="training", **kwargs)

    # -- properties ----------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in ("training", "inference"):
            raise ValueError(f"[Graph] mode must be 'training' or 'inference', got {value!r}")
        self._mode = value

    @property
    def check_numerics(self) -> bool:
        """Opt-in debugging mode: every node's outputs are scanned after it runs, and the
        first node producing NaN or Inf fails the batch with a RuntimeError naming it
        (its handle's ``wait()`` raises). Slow; also on with ``METALNN_CHECK_NUMERICS=1``."""
        return self._check_numerics

    @check_numerics.setter
    def check_numerics(self, value: bool) -> None:
        value = bool(value)
        if value and self.device.type == "metal":
            raise ValueError("[Graph] check_numerics is not supported on the metal device yet "
                             "(it reads outputs while the command buffer is being encoded)")
        self._check_numerics = value
        for compiled, _, _ in self._compiled.values():
            compiled.program.check_numerics = value

    @property
    def is_training(self) -> bool:
        return self._mode == "training"

    def structure(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """(kind, label, source names) of every node in execution order."""
        return [(n.kind, n.label, tuple(s.name for s in n.sources)) for n in self.nodes]

    # -- used by the compiler ----------------------------------------------------------
    def _is_needed(self, image: ImageNode) -> bool:
        if image.export_from_graph or (self.result_needed and image in self.results):
            return True
        return bool(self._consumers.get(image))

    def _trains(self, node: _SourcedNode) -> bool:
        ds = node.data_source
        return self.is_training and (_overrides_update(ds) or getattr(ds, "optimizer", None) is not None)

    def _parameters(self, node: _SourcedNode):
        """Loads the node's data source once: descriptor(), load(), weights(), biases(), purge().

        Built-in sources back the graph directly (training updates their arrays); the
        arrays of user sources are copied before purge()."""
        if node in self._params:
            return self._params[node]
        if hasattr(node, "bind_parameters"):  # nodes with their own source protocol (normalization)
            self._params[node] = node.bind_parameters(self)
            return self._params[node]
        from .data_source import read_parameters

        try:
            # A node may read its parameters its own way (the transposed layout of ConvolutionTransposeNode).
            read = getattr(node, "read_parameters", None) or read_parameters
            p = read(node.data_source, copy=not _is_builtin(node.data_source))
        except (TypeError, ValueError, RuntimeError) as e:
            raise type(e)(f"[Graph] node '{node.label}': {e}") from None
        node._descriptor = p.descriptor
        if not self._on_host and _overrides_update(node.data_source):
            raise ValueError(f"[Graph] node '{node.label}': a Python update() runs only in cpu graphs; "
                             "give the data source an optimizer instead")
        wp = _core.graph.Parameter(f"{p.label}.weights")
        wp.bind(self._bindable(p.weights))
        bp = None
        if p.biases is not None:
            bp = _core.graph.Parameter(f"{p.label}.biases")
            bp.bind(self._bindable(p.biases))
        self._params[node] = (wp, bp)
        return wp, bp

    @property
    def _on_host(self) -> bool:
        return self.device.type == "cpu"

    def _bindable(self, a: np.ndarray):
        """What a parameter binds: the array itself on the CPU (zero-copy, trained in
        place); on another device one copy per array memory, shared by every graph that
        binds it (an inference graph sees its training graph's updates, as on the CPU)."""
        return _writable(a) if self._on_host else _device_copy(a, str(self.device))

    def _optimizer_state(self, node, which: str, param, optimizer) -> list:
        key = (node.label, which)
        if key not in self._state_params:
            if key not in self._opt_state:  # (a loaded graph hands its saved state in here)
                self._opt_state[key] = optimizer.init_state(np.asarray(param.value))
            self._state_params[key] = {}
            for name, arr in self._opt_state[key].items():
                p = _core.graph.Parameter(f"{param.name}.{name}")
                p.bind(self._bindable(arr))
                self._state_params[key][name] = p
        params = self._state_params[key]
        return [params.get(name) for name in optimizer.state_names()]

    def _emit_updates(self, c: Compiler) -> None:
        if self._distributed is not None:  # bucketed all-reduce between gradients and updates
            self._distributed.emit(c)
        groups: dict[int, tuple] = {}
        for node, dw, db in c.updates:
            ds = node.data_source
            w, b = self._parameters(node)
            if _overrides_update(ds):
                slots = [dw] + ([db] if db is not None else [])
                c.emit(f"{node.label}.update", "python", _python_update(ds, w, b), slots, inputs=slots)
                continue
            opt = ds.optimizer
            targets, scales = groups.setdefault(id(opt), (opt, [], []))[1:]
            scale = learning_rate_scale(ds, node.label)  # the data source's per-layer factor
            for which, p, g in (("weights", w, dw), ("biases", b, db)):
                if p is not None and g is not None:
                    targets.append((p, g, self._optimizer_state(node, which, p, opt)))
                    scales.append(scale)
        for opt, targets, scales in groups.values():
            slots = [t[1] for t in targets]
            hyper = opt.hyperparameters()
            if any(s != 1.0 for s in scales):
                hyper = {**hyper, "learning_rate_scales": scales}
            if opt.kind == "adam":
                c.emit("update", "adam_update", targets, hyper, _counter(opt), inputs=slots)
            else:
                c.emit("update", f"{opt.kind}_update", targets, hyper, inputs=slots)

    # -- compile and run -------------------------------------------------------------
    def _key(self, feeds: dict) -> tuple:
        """Compiled programs are cached by input shapes, mode and optimizer settings (a new
        learning rate recompiles; the data sources are not loaded again)."""
        shapes = tuple((img.id, tuple(a.shape), str(a.dtype)) for img, a in feeds.items())
        hyper = tuple(tuple(sorted((k, repr(v)) for k, v in opt.hyperparameters().items()))
                      for opt in self._optimizers)
        scales = tuple(learning_rate_scale(n.data_source, n.label) for n in self.nodes if _has_data_source(n))
        return shapes, self._mode, hyper, scales

    def _compile(self, feeds: dict) -> tuple:
        key = self._key(feeds)
        if key in self._compiled:
            return self._compiled[key]
        for node in self.nodes:  # data sources load first, in the documented order
            if _has_data_source(node):
                self._parameters(node)
        for img, a in feeds.items():
            self._itemsize[img] = a.dtype.itemsize
        c = Compiler(self, {img: tuple(a.shape) for img, a in feeds.items()}, self.is_training)
        c.infer_shapes(self.nodes)
        for node in self.nodes:
            node.emit_forward(c)
        c.emit_updates()
        input_slots = {img.name: c.slot(img) for img in feeds}
        outputs = [img for img in self.results if self.result_needed]
        outputs += [img for n in self.nodes if n.result.export_from_graph for img in [n.result]]
        output_slots = {img.name: c.slot(img) for img in outputs}
        keep = set(output_slots.values()) | set(c.loss_slots.values())
        compiled = c.finish(keep, input_slots, output_slots)
        compiled.program.check_numerics = self._check_numerics
        if self._distributed is not None:  # same graph on every rank; rank 0's weights everywhere
            self._distributed.bind(self, feeds)
        executor = _core.graph.Executor(compiled.program, self.max_in_flight, str(self.device))
        self._compiled[key] = (compiled, executor, keep)
        return self._compiled[key]

    def _feeds(self, images, labels, weights) -> dict:
        if isinstance(images, dict):
            by_name = {s.name: s for s in self.sources}
            feeds = {}
            for k, v in images.items():
                node = k if isinstance(k, ImageNode) else by_name.get(k)
                if node not in self.sources:
                    raise ValueError(f"[Graph] images: {k!r} is not a source of this graph "
                                     f"(sources: {[s.name for s in self.sources]})")
                feeds[node] = v
        elif isinstance(images, (list, tuple)):
            if len(images) != len(self.sources):
                raise ValueError(f"[Graph] images: expected {len(self.sources)} source arrays, got {len(images)}")
            feeds = dict(zip(self.sources, images))
        else:
            if len(self.sources) != 1:
                raise ValueError(f"[Graph] images: this graph has {len(self.sources)} sources; pass a list or dict")
            feeds = {self.sources[0]: images}
        missing = [s.name for s in self.sources if s not in feeds]
        if missing:
            raise ValueError(f"[Graph] images: no array for source(s) {missing}")
        for loss in self.loss_nodes:
            if labels is None:
                raise ValueError(f"[Graph] labels are required: the graph has loss node '{loss.label}'")
            feeds[loss.labels] = labels
            if weights is not None:
                feeds[loss.weights] = weights
        feeds = {k: (v if isinstance(v, np.ndarray) else np.asarray(v)) for k, v in feeds.items()}
        for img, a in feeds.items():
            if a.ndim == 0 or a.shape[0] < 1:
                raise ValueError(f"[Graph] {img.name}: expected a batch (N, ...) with N >= 1, got shape {a.shape}")
        return feeds

    def encode_batch(self, images, labels=None, weights=None,
                     on_complete: Callable[[int], None] | None = None) -> BatchHandle:
        """Queues one batch and returns its handle at once (blocks only while
        ``max_in_flight`` batches are already queued).

        ``images``: one array for a single-source graph, else a list (in ``graph.sources``
        order) or a dict by source name. ``labels``/``weights``: the loss node's class
        indices or probabilities, and optional per-sample weights. ``on_complete(index)``
        runs on the executor's thread when the batch finishes.
        """
        return self._encode(images, labels, weights, on_complete, False)

    def _encode(self, images, labels, weights, on_complete, run_here: bool) -> BatchHandle:
        feeds = self._feeds(images, labels, weights)
        compiled, executor, _ = self._compile(feeds)
        if self._current is not None and self._current is not executor:
            self._current.synchronize()  # batches stay in order across shape changes
        self._current = executor
        inputs = [(compiled.input_slots[img.name], a, img.name) for img, a in feeds.items()]
        return BatchHandle(self, compiled, executor.encode(inputs, on_complete, run_here))

    def run(self, images, labels=None, weights=None) -> BatchHandle:
        """encode_batch + wait. On the CPU with nothing queued, the batch runs on the calling
        thread (no hand-off to the executor's thread and back: batch-1 latency)."""
        return self._encode(images, labels, weights, None, self._on_host).wait()

    def synchronize(self) -> None:
        """Waits for every queued batch."""
        for _, executor, _ in self._compiled.values():
            executor.synchronize()

    def memory_plan(self, images=None, labels=None, weights=None) -> dict:
        """Planned peak bytes of intermediate images (slots dropped after their last
        use and their memory reused) against the sum of all of them. Uses the last
        compiled shapes unless example inputs are given."""
        if images is not None:
            compiled, _, keep = self._compile(self._feeds(images, labels, weights))
        elif self._compiled:
            compiled, _, keep = list(self._compiled.values())[-1]
        else:
            raise ValueError("[Graph] memory_plan needs example inputs before the first batch")
        return memory_plan(compiled, keep)

    def save(self, path) -> None:
        """Writes weights, optimizer state, RNG counters and the node structure to ``path``
        (a checksummed .npz + JSON, written atomically: a crash keeps the previous file)."""
        from .persistence import save_graph

        self.synchronize()
        if self._distributed is None:
            save_graph(self, path)
            return
        # Distributed: the ranks hold the same weights; rank 0 writes, the others wait for it.
        from .. import distributed

        if distributed.rank() == 0:
            save_graph(self, path)
        distributed.barrier()

    def load_state(self, path) -> None:
        """Restores what :meth:`save` wrote into this graph (same nodes and shapes)."""
        from .persistence import load_graph_state

        load_graph_state(self, path)

    @classmethod
    def load(cls, path, **kwargs) -> Graph:
        """Rebuilds a saved graph (built-in data sources holding the saved weights)."""
        from .persistence import load_graph

        return load_graph(path, **kwargs)

    def parameters(self) -> dict[str, np.ndarray]:
        """The graph's weights and biases by name (views: they change as it trains)."""
        out = {}
        for _node, (w, b) in self._params.items():
            out[w.name] = w.value
            if b is not None:
                out[b.name] = b.value
        return out

    def state_dict(self, names=None) -> dict[str, np.ndarray]:
        """Weights and biases as a PyTorch-style state dict (see :mod:`metalnn.interop`)."""
        from ..interop import state_dict

        return state_dict(self, names)

    def load_state_dict(self, state, names=None, strict: bool = True) -> list[str]:
        """Loads a PyTorch-style state dict (torch tensors or arrays; see :mod:`metalnn.interop`)."""
        from ..interop import load_state_dict

        return load_state_dict(self, state, names, strict)

    def summary(self, input_shape=None) -> str:
        """A table of nodes: kind, output shape, parameters, planned memory (see :mod:`metalnn.graph.inspect`)."""
        from .inspect import summary

        return summary(self, input_shape)

    def to_dot(self, input_shape=None) -> str:
        """A Graphviz DOT description of the graph (see :mod:`metalnn.graph.inspect`)."""
        from .inspect import to_dot

        return to_dot(self, input_shape)

    def render(self, path, input_shape=None) -> str | None:
        """Draws the graph to ``path`` (.png/.svg/.pdf) with Graphviz's ``dot`` when installed."""
        from .inspect import render

        return render(self, path, input_shape)

    def to_onnx(self, path=None, input_shape=None, **kwargs):
        """Exports this inference graph to ONNX (see :func:`metalnn.export_onnx`)."""
        from ..onnx_export import export_onnx

        return export_onnx(self, path, input_shape, **kwargs)

    def __repr__(self) -> str:
        return f"Graph({len(self.nodes)} nodes, mode={self._mode!r}, sources={[s.name for s in self.sources]})"


def node_optimizer(node):
    """The optimizer attached to a node's data source, or None."""
    return getattr(getattr(node, "data_source", None), "optimizer", None)


def _is_builtin(ds) -> bool:
    from .data_source import ConvolutionWeights

    return isinstance(ds, ConvolutionWeights) and not _overrides_update(ds)


def _overrides_update(ds) -> bool:
    from .data_source import DataSource

    return getattr(type(ds), "update", None) not in (None, DataSource.update)


def _writable(a: np.ndarray) -> np.ndarray:
    return a if a.flags.writeable and a.flags.c_contiguous else np.array(a, order="C")


# (device, address, shape, dtype) -> (weak reference to the array owning the memory, device Tensor)
_DEVICE_COPIES: dict[tuple, tuple] = {}


def _device_copy(a: np.ndarray, device: str):
    """The device copy of ``a`` that graphs share; dropped once the owning array is gone."""
    root = a
    while isinstance(root.base, np.ndarray):
        root = root.base
    key = (device, a.__array_interface__["data"][0], a.shape, a.dtype.str)
    hit = _DEVICE_COPIES.get(key)
    if hit is not None and hit[0]() is root:
        return hit[1]
    t = _core.Tensor(a, device=device)

    def forget(ref, key=key):
        if _DEVICE_COPIES.get(key, (None,))[0] is ref:
            del _DEVICE_COPIES[key]

    _DEVICE_COPIES[key] = (weakref.ref(root, forget), t)
    return t


def _counter(opt):
    c = getattr(opt, "_metalnn_step", None)
    if c is None:
        c = opt._metalnn_step = _core.graph.Counter(0)
    return c


def _python_update(ds, w, b):
    def run(grads):
        from .data_source import GradientState, WeightsState

        result = ds.update(GradientState(grads[0], grads[1] if len(grads) > 1 else None),
                           WeightsState(w.value, None if b is None else b.value))
        if result is not None:
            np.copyto(w.value, np.asarray(result.weights).reshape(w.value.shape), casting="same_kind")
            if b is not None and getattr(result, "biases", None) is not None:
                np.copyto(b.value, np.asarray(result.biases).reshape(b.value.shape), casting="same_kind")
    return run
