"""Turns a graph's nodes into a C++ program: slots for every image, shapes, padding,
fusion, states, parameter binding, optimizer updates and slot lifetimes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import _core
from .nodes import (
    AdditionNode,
    ConvolutionNode,
    FilterNode,
    FullyConnectedNode,
    GradientNode,
    ImageNode,
    NeuronNode,
)


@dataclass
class StepSpec:
    label: str
    method: str
    args: tuple
    inputs: tuple = ()
    outputs: tuple = ()
    states_in: tuple = ()
    states_out: tuple = ()


@dataclass
class Compiled:
    """What an executor needs for one set of input shapes."""

    program: Any                 # a _core.graph.Program (the compiled module has no stubs)
    steps: list
    slot_of: dict
    slot_bytes: list
    input_slots: dict            # name -> slot
    output_slots: dict           # name -> slot
    loss_slots: dict             # loss label -> slot
    releases: list = field(default_factory=list)


class Compiler:
    def __init__(self, graph, shapes: dict, training: bool):
        self.graph = graph
        self.shapes = dict(shapes)          # ImageNode -> shape
        self.training = training
        self.fuse = graph.fuse
        self.steps: list[StepSpec] = []
        self.slot_of: dict[ImageNode, int] = {}
        self.slot_bytes: list[int] = []
        self.num_states = 0
        self.loss_slots: dict[str, int] = {}
        self.updates: list = []             # (node, dw_slot, db_slot) in reverse layer order
        self.pre_activation: dict[FilterNode, int] = {}
        self.fused: set[FilterNode] = set()

    # -- slots ---------------------------------------------------------------
    def new_slot(self, shape, itemsize: int = 4) -> int:
        n = 1
        for v in shape:
            n *= int(v)
        self.slot_bytes.append(n * itemsize)
        return len(self.slot_bytes) - 1

    def slot(self, image: ImageNode) -> int:
        if image not in self.slot_of:
            shape = self.shapes[image]
            self.slot_of[image] = self.new_slot(shape, self.graph._itemsize.get(image, 4))
        return self.slot_of[image]

    def new_state(self) -> int:
        self.num_states += 1
        return self.num_states - 1

    def shape(self, image: ImageNode) -> tuple:
        return self.shapes[image]

    def emit(self, label, method, *args, inputs=(), outputs=(), states_in=(), states_out=()):
        self.steps.append(StepSpec(label, method, args, tuple(inputs), tuple(outputs), tuple(states_in),
                                   tuple(states_out)))

    def needed(self, image: ImageNode) -> bool:
        """Whether anything reads this image (a consumer, a result, an export)."""
        return self.graph._is_needed(image)

    # -- shape inference -------------------------------------------------------
    def infer_shapes(self, order: list[FilterNode]) -> None:
        for node in order:
            try:
                if isinstance(node, GradientNode):
                    shape = self.shapes[node.forward.sources[node.input_index]]
                    got = self.shapes[node.sources[0]]
                    want = self.shapes[node.forward.result]
                    if got != want:
                        raise ValueError(f"source gradient has shape {got} but {node.forward.label} "
                                         f"produces {want}")
                else:
                    shape = tuple(node.infer_shape([self.shapes[s] for s in node.sources]))
            except KeyError as e:
                raise ValueError(f"[Graph] node '{node.label}' ({node.kind}): input {e.args[0]!r} has no "
                                 "shape (is it fed by encode_batch or produced in this graph?)") from None
            except (ValueError, TypeError) as e:
                raise ValueError(f"[Graph] node '{node.label}' ({node.kind}): {e}") from None
            self.shapes[node.result] = shape

    # -- forward emitters --------------------------------------------------------
    def _neuron_args(self, neuron, a, b):
        return (neuron, None if a is None else float(a), None if b is None else float(b))

    def _geometry(self, node) -> tuple:
        """Stride, padding, dilation, groups of a convolution (nothing for fully connected)."""
        if isinstance(node, FullyConnectedNode):
            return ()
        d = node.descriptor()
        return ([d.stride_h, d.stride_w], list(node.resolved_padding), [d.dilation_h, d.dilation_w], d.groups)

    def _layer_op(self, node) -> str:
        return "fully_connected" if isinstance(node, FullyConnectedNode) else "conv2d"

    def _fusable_neuron(self, node) -> NeuronNode | None:
        """The neuron node that alone reads this layer's result, if it can run in the layer's epilogue."""
        consumers = self.graph._consumers.get(node.result, [])
        if (not self.fuse or len(consumers) != 1 or not isinstance(consumers[0], NeuronNode)
                or node.result.export_from_graph or node.result in self.graph.results):
            return None
        return consumers[0]

    def emit_layer(self, node: ConvolutionNode):
        """Convolution / fully connected + bias + neuron. With fusion on, the descriptor's
        neuron or a following neuron node runs in the layer's epilogue (one kernel); the
        pre-activation is kept only when a gradient needs it."""
        d, (w, b) = node.descriptor(), self.graph._parameters(node)
        x, y = self.slot(node.sources[0]), self.slot(node.result)
        op, geometry = self._layer_op(node) + "_forward", self._geometry(node)
        if d.neuron and not self.fuse:
            z = self.pre_activation[node] = self.new_slot(self.shape(node.result))
            self.emit(node.label, op, x, z, w, b, *geometry, node.accumulation, None, None, None, -1,
                      inputs=[x], outputs=[z])
            self.emit(node.label, "neuron_forward", z, y, *self._neuron_args(d.neuron, d.neuron_a, d.neuron_b),
                      inputs=[z], outputs=[y])
            return
        neuron, out, pre = (None, None, None), y, -1
        follower = None if d.neuron else self._fusable_neuron(node)
        if d.neuron:
            neuron = self._neuron_args(d.neuron, d.neuron_a, d.neuron_b)
            if node in self.graph._differentiated:
                pre = self.pre_activation[node] = self.new_slot(self.shape(node.result))
        elif follower is not None:
            neuron = self._neuron_args(follower.neuron_type, follower.a, follower.b)
            out = self.slot(follower.result)
            if follower in self.graph._differentiated:
                pre = y  # the neuron's gradient reads its input: the layer's own result
            self.fused.add(follower)
        self.emit(node.label, op, x, out, w, b, *geometry, node.accumulation, *neuron, pre,
                  inputs=[x], outputs=[out] + ([pre] if pre >= 0 else []))

    def emit_neuron(self, node: NeuronNode):
        if node in self.fused:  # ran in its layer's epilogue
            return
        x, y = self.slot(node.sources[0]), self.slot(node.result)
        self.emit(node.label, "neuron_forward", x, y, *self._neuron_args(node.neuron_type, node.a, node.b),
                  inputs=[x], outputs=[y])

    def emit_max_pool(self, node):
        x, y, s = self.slot(node.sources[0]), self.slot(node.result), self.new_state()
        node._state = s
        self.emit(node.label, "max_pool2d_forward", x, y, s, list(node.kernel), list(node.stride),
                  list(node.resolved_padding), inputs=[x], outputs=[y], states_out=[s])

    def emit_avg_pool(self, node):
        x, y = self.slot(node.sources[0]), self.slot(node.result)
        self.emit(node.label, "avg_pool2d_forward", x, y, list(node.kernel), list(node.stride),
                  list(node.resolved_padding), node.count_include_pad, inputs=[x], outputs=[y])

    def emit_dropout(self, node):
        x, y = self.slot(node.sources[0]), self.slot(node.result)
        if not self.training or node.keep_probability == 1.0:
            node._state = None
            self.emit(node.label, "copy", x, y, inputs=[x], outputs=[y])
            return
        s = node._state = self.new_state()
        dp = getattr(self.graph, "_distributed", None)  # each rank draws its own masks
        seed = node.seed + (dp.dropout_seed_offset if dp is not None else 0)
        self.emit(node.label, "dropout_forward", x, y, s, node.keep_probability, seed % (1 << 64),
                  self.graph._dropout_counter, inputs=[x], outputs=[y], states_out=[s])

    def emit_softmax(self, node):
        x, y = self.slot(node.sources[0]), self.slot(node.result)
        self.emit(node.label, "softmax_forward", x, y, node.log, inputs=[x], outputs=[y])

    def emit_add(self, node: AdditionNode):
        a, b, y = self.slot(node.sources[0]), self.slot(node.sources[1]), self.slot(node.result)
        self.emit(node.label, "add", a, b, y, inputs=[a, b], outputs=[y])

    def emit_softmax_cross_entropy(self, node):
        logits, labels = self.slot(node.sources[0]), self.slot(node.labels)
        weights = self.slot(node.weights) if node.weights in self.shapes else -1
        n = self.shape(node.sources[0])
        loss_shape = () if node.reduction != "none" else (n[0],) + tuple(n[2:])
        loss, s = self.new_slot(loss_shape), self.new_state()
        self.loss_slots[node.label] = loss
        ins = [logits, labels] + ([weights] if weights >= 0 else [])
        self.emit(node.label, "softmax_cross_entropy_forward", logits, labels, weights, loss, s, node.reduction,
                  node.label_smoothing, inputs=ins, outputs=[loss], states_out=[s])
        if self.needed(node.result):
            dl = self.slot(node.result)
            self.emit(node.label, "softmax_cross_entropy_backward", s, dl, outputs=[dl], states_in=[s])

    # -- gradient emitters ---------------------------------------------------------
    def _gradient_source(self, g: GradientNode) -> int:
        return self.slot(g.sources[0])

    def _through_own_neuron(self, node, dy: int) -> int:
        d = node.descriptor()
        if not d.neuron:
            return dy
        z = self.pre_activation[node]
        dz = self.new_slot(self.shape(node.result))
        self.emit(node.label + ".gradient", "neuron_backward", dy, z, dz,
                  *self._neuron_args(d.neuron, d.neuron_a, d.neuron_b), inputs=[dy, z], outputs=[dz])
        return dz

    def emit_layer_gradient(self, node, g):
        """Weight and bias gradients (when the layer trains) and the input gradient (when read)."""
        (w, b), op, geometry = self.graph._parameters(node), self._layer_op(node), self._geometry(node)
        dy = self._through_own_neuron(node, self._gradient_source(g))
        x = self.slot(node.sources[0])
        if self.graph._trains(node):
            dw = self.new_slot(w.value.shape)
            self.emit(g.label, op + "_backward_weight", dy, x, dw, list(w.value.shape), *geometry,
                      inputs=[dy, x], outputs=[dw])
            db = None
            if b is not None:
                db = self.new_slot(b.value.shape)
                self.emit(g.label, op + "_backward_bias", dy, db, inputs=[dy], outputs=[db])
            self.updates.append((node, dw, db))
        if self.needed(g.result):
            dx = self.slot(g.result)
            self.emit(g.label, op + "_backward_input", dy, dx, w, list(self.shape(node.sources[0])), *geometry,
                      node.accumulation, inputs=[dy], outputs=[dx])

    def emit_neuron_gradient(self, node, g):
        if not self.needed(g.result):
            return
        dy, x, dx = self._gradient_source(g), self.slot(node.sources[0]), self.slot(g.result)
        self.emit(g.label, "neuron_backward", dy, x, dx, *self._neuron_args(node.neuron_type, node.a, node.b),
                  inputs=[dy, x], outputs=[dx])

    def emit_max_pool_gradient(self, node, g):
        if not self.needed(g.result):
            return
        dy, dx = self._gradient_source(g), self.slot(g.result)
        self.emit(g.label, "max_pool2d_backward", dy, node._state, dx, inputs=[dy], outputs=[dx],
                  states_in=[node._state])

    def emit_avg_pool_gradient(self, node, g):
        if not self.needed(g.result):
            return
        dy, dx = self._gradient_source(g), self.slot(g.result)
        self.emit(g.label, "avg_pool2d_backward", dy, dx, list(self.shape(node.sources[0])), list(node.kernel),
                  list(node.stride), list(node.resolved_padding), node.count_include_pad,
                  inputs=[dy], outputs=[dx])

    def emit_dropout_gradient(self, node, g):
        if not self.needed(g.result):
            return
        dy, dx = self._gradient_source(g), self.slot(g.result)
        if node._state is None:  # inference mode: identity
            self.emit(g.label, "copy", dy, dx, inputs=[dy], outputs=[dx])
        else:
            self.emit(g.label, "dropout_backward", dy, node._state, dx, inputs=[dy], outputs=[dx],
                      states_in=[node._state])

    def emit_softmax_gradient(self, node, g):
        if not self.needed(g.result):
            return
        dy, y, dx = self._gradient_source(g), self.slot(node.result), self.slot(g.result)
        self.emit(g.label, "softmax_backward", dy, y, dx, node.log, inputs=[dy, y], outputs=[dx])

    # -- updates and lifetimes -------------------------------------------------------
    def emit_updates(self) -> None:
        self.graph._emit_updates(self)

    def finish(self, keep: set[int], input_slots: dict, output_slots: dict) -> Compiled:
        program = _core.graph.Program(len(self.slot_bytes), self.num_states)
        last_use: dict[int, int] = {}
        last_state: dict[int, int] = {}
        for i, st in enumerate(self.steps):
            for s in st.inputs + st.outputs:
                last_use[s] = i
            for s in st.states_in + st.states_out:
                last_state[s] = i
        # Per step: the slots and the states whose last use it is.
        releases: list[tuple[list[int], list[int]]] = [([], []) for _ in self.steps]
        for s, i in last_use.items():
            if s not in keep:
                releases[i][0].append(s)
        for s, i in last_state.items():
            releases[i][1].append(s)
        for i, st in enumerate(self.steps):
            getattr(program, "add_" + st.method)(st.label, *st.args)
            program.set_release(i, sorted(releases[i][0]), sorted(releases[i][1]))
            program.set_outputs(i, list(st.outputs))
        return Compiled(program, self.steps, dict(self.slot_of), list(self.slot_bytes), input_slots, output_slots,
                        dict(self.loss_slots), releases)


def memory_plan(compiled: Compiled, keep: set[int]) -> dict:
    """Peak bytes of live slots when each is dropped after its last use, against the sum
    of every intermediate (what a graph without reuse would hold)."""
    live: dict[int, int] = {s: compiled.slot_bytes[s] for s in compiled.input_slots.values()}
    peak = current = sum(live.values())
    per_step = []
    for st, (released, _) in zip(compiled.steps, compiled.releases):
        for s in st.outputs:
            if s not in live:
                live[s] = compiled.slot_bytes[s]
                current += live[s]
        peak = max(peak, current)
        per_step.append((st.label, st.method, current))
        for s in released:
            current -= live.pop(s, 0)
    total = int(np.sum(compiled.slot_bytes)) if compiled.slot_bytes else 0
    return {"peak_bytes": int(peak), "total_bytes": total, "steps": per_step}
