"""Loss nodes: LossNode (MPSCNNLossNode with an MPSCNNLossDescriptor, every loss type) and
YOLOLossNode (MPSCNNYOLOLossNode).

As in MPS (and :class:`~metalnn.graph.SoftmaxCrossEntropyLossNode`), a loss node's ``result``
is the gradient of the loss with respect to its source (the predictions), so a training graph
starts from it: ``Graph.training(loss_node)``. The loss value is on the batch handle
(``handle.loss``). Labels (and a LossNode's optional weights) are fed to ``encode_batch``
through ``self.labels`` / ``self.weights``. The math is in :mod:`metalnn.ops.loss`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..ops.loss import LOSS_REDUCTIONS, LOSS_TYPES, LossDescriptor, YOLOLossDescriptor
from .nodes import FilterNode, ImageNode

if TYPE_CHECKING:  # pragma: no cover
    from .compiler import Compiler

_GROUPED = ("softmax_cross_entropy", "cosine_distance")


class _LossNodeBase(FilterNode):
    #: Marks a loss node for the graph: labels/weights are fed by encode_batch, the loss has a slot.
    is_loss = True

    def __init__(self, source: ImageNode, label: str | None):
        super().__init__([source], label)
        self.labels = ImageNode(f"{self.label}.labels")
        self.weights = ImageNode(f"{self.label}.weights")

    def gradient_filters(self, source):
        raise TypeError(f"[{self.kind}] the loss node's result already is the gradient of the loss; "
                        "start the training graph from loss.result")

    def _emit_loss(self, c: Compiler, method: str, loss_shape: tuple, weights: bool, args: tuple) -> None:
        pred, labels = c.slot(self.sources[0]), c.slot(self.labels)
        w = c.slot(self.weights) if weights and self.weights in c.shapes else -1
        loss, s = c.new_slot(loss_shape), c.new_state()
        c.loss_slots[self.label] = loss
        ins = [pred, labels] + ([w] if w >= 0 else [])
        slots = (pred, labels, w, loss, s) if weights else (pred, labels, loss, s)
        c.emit(self.label, method, *slots, *args, inputs=ins, outputs=[loss], states_out=[s])
        if c.needed(self.result):
            dp = c.slot(self.result)
            c.emit(self.label, "loss_backward", s, dp, outputs=[dp], states_in=[s])


class LossNode(_LossNodeBase):
    """A loss of any MPSCNNLossType (MPSCNNLossNode). ``descriptor`` is a
    :class:`~metalnn.ops.LossDescriptor` or a loss type name with its options as keywords
    (``reduction``, ``weight``, ``label_smoothing``, ``delta``, ``epsilon``).

    Labels: float of the source's shape, or class indices for the softmax / categorical
    cross-entropy; weights (optional): float32 ``(N,)`` or the loss's shape.
    """

    def __init__(self, source: ImageNode, descriptor: LossDescriptor | str, label: str | None = None, **options):
        super().__init__(source, label)
        if isinstance(descriptor, str):
            descriptor = LossDescriptor(descriptor, **options)
        elif not isinstance(descriptor, LossDescriptor):
            raise TypeError(f"[{self.kind}] descriptor must be a LossDescriptor or a loss type name, "
                            f"got {type(descriptor).__name__}")
        elif options:
            raise TypeError(f"[{self.kind}] pass options in the LossDescriptor, not as keywords")
        if descriptor.loss_type not in LOSS_TYPES:
            raise ValueError(f"[{self.kind}] loss_type must be one of {', '.join(LOSS_TYPES)}, "
                             f"got {descriptor.loss_type!r}")
        if descriptor.reduction not in LOSS_REDUCTIONS:
            raise ValueError(f"[{self.kind}] reduction must be one of {', '.join(LOSS_REDUCTIONS)}, "
                             f"got {descriptor.reduction!r}")
        self.descriptor = descriptor

    @property
    def loss_type(self) -> str:
        return self.descriptor.loss_type

    @property
    def reduction(self) -> str:
        return self.descriptor.reduction

    def infer_shape(self, shapes):
        if len(shapes[0]) < 2:
            raise ValueError(f"expected (N, C, ...) predictions, got shape {shapes[0]}")
        return shapes[0]

    def emit_forward(self, c):
        d, shape = self.descriptor, c.shape(self.sources[0])
        if d.reduction != "none":
            loss_shape = ()
        else:
            loss_shape = (shape[0],) + tuple(shape[2:]) if d.loss_type in _GROUPED else tuple(shape)
        self._emit_loss(c, "loss_forward", loss_shape, True,
                        (d.loss_type, d.reduction, float(d.weight), float(d.label_smoothing), float(d.delta),
                         float(d.epsilon)))


class YOLOLossNode(_LossNodeBase):
    """YOLO detection loss (MPSCNNYOLOLossNode) with a
    :class:`~metalnn.ops.YOLOLossDescriptor` (or its fields as keywords). Source and labels are
    ``(N, anchors * (5 + classes), H, W)``; weights are not used."""

    def __init__(self, source: ImageNode, descriptor: YOLOLossDescriptor | None = None, label: str | None = None,
                 **options):
        super().__init__(source, label)
        if descriptor is None:
            descriptor = YOLOLossDescriptor(**options)
        elif not isinstance(descriptor, YOLOLossDescriptor) or options:
            raise TypeError(f"[{self.kind}] pass one YOLOLossDescriptor or its fields as keywords")
        if descriptor.reduction not in ("none", "sum", "mean"):
            raise ValueError(f"[{self.kind}] reduction must be 'none', 'sum' or 'mean', got {descriptor.reduction!r}")
        self.descriptor = descriptor

    def infer_shape(self, shapes):
        d = self.descriptor
        if len(shapes[0]) != 4:
            raise ValueError(f"expected (N, anchors * (5 + classes), H, W) predictions, got shape {shapes[0]}")
        want = len(d.anchor_boxes) * (5 + int(d.num_classes))
        if shapes[0][1] != want:
            raise ValueError(f"predictions have {shapes[0][1]} channels but {len(d.anchor_boxes)} anchors x "
                             f"(5 + {d.num_classes} classes) need {want}")
        return shapes[0]

    def emit_forward(self, c):
        shape = c.shape(self.sources[0])
        loss_shape = tuple(shape) if self.descriptor.reduction == "none" else ()
        self._emit_loss(c, "yolo_loss_forward", loss_shape, False, self.descriptor.arguments())
