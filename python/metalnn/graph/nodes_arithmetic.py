"""Arithmetic filter nodes with broadcasting (MPSNNAdditionNode, MPSNNSubtractionNode,
MPSNNMultiplicationNode, MPSNNDivisionNode).

Sources ``a`` (primary) and ``b`` (secondary) have the same rank; along each dimension
their sizes are equal or one is 1 (e.g. an (N, C, H, W) image gated by an (N, 1, H, W)
mask or scaled by a (1, C, 1, 1) per-channel factor). Each source has its own gradient
node (``gradient_filters``), whose result is the source's gradient summed over the
dimensions it broadcasts along (see :mod:`metalnn.ops.arithmetic`).
"""

from __future__ import annotations

from .nodes import AdditionNode, FilterNode, GradientNode, ImageNode


def broadcast_shape(kind: str, a: tuple, b: tuple) -> tuple:
    if len(a) != len(b):
        raise ValueError(f"sources have different ranks: {a} and {b}")
    out = []
    for k, (x, y) in enumerate(zip(a, b)):
        if x != y and x != 1 and y != 1:
            raise ValueError(f"source shapes {a} and {b} do not broadcast (dimension {k})")
        out.append(max(x, y))
    return tuple(out)


def emit_forward(node: FilterNode, c, op: str) -> None:
    a, b, y = c.slot(node.sources[0]), c.slot(node.sources[1]), c.slot(node.result)
    if op == "add" and c.shape(node.sources[0]) == c.shape(node.sources[1]):
        c.emit_add(node)  # the graph's plain add step
        return
    c.emit(node.label, "arithmetic_forward", op, a, b, y, inputs=[a, b], outputs=[y])


def emit_gradient(node: FilterNode, c, g: GradientNode, op: str) -> None:
    if not c.needed(g.result):
        return
    i = g.input_index
    dy, dx = c.slot(g.sources[0]), c.slot(g.result)
    a_shape, b_shape = c.shape(node.sources[0]), c.shape(node.sources[1])
    source_shape = a_shape if i == 0 else b_shape
    if op in ("add", "subtract") and (op == "add" or i == 0) and source_shape == c.shape(node.result):
        # d(a + b)/da = 1 on an unbroadcast source: the gradient image is shared, not copied.
        c.emit(g.label, "copy", dy, dx, inputs=[dy], outputs=[dx])
        return
    reads = op in ("multiply", "divide")
    a = c.slot(node.sources[0]) if reads else -1
    b = c.slot(node.sources[1]) if reads else -1
    c.emit(g.label, "arithmetic_backward", op, i, dy, a, b, dx, list(a_shape), list(b_shape),
           inputs=[dy] + ([a, b] if reads else []), outputs=[dx])


class _ArithmeticNode(FilterNode):
    op = "add"

    def __init__(self, a: ImageNode, b: ImageNode, label: str | None = None):
        super().__init__([a, b], label)

    def infer_shape(self, shapes):
        return broadcast_shape(self.kind, shapes[0], shapes[1])

    def emit_forward(self, c):
        emit_forward(self, c, self.op)

    def emit_gradient(self, c, g):
        emit_gradient(self, c, g, self.op)


class SubtractionNode(_ArithmeticNode):
    """a - b with broadcasting (MPSNNSubtractionNode); gradients dy and -dy."""

    op = "subtract"


class MultiplicationNode(_ArithmeticNode):
    """a * b with broadcasting (MPSNNMultiplicationNode), e.g. a gate; gradients dy*b and dy*a."""

    op = "multiply"


class DivisionNode(_ArithmeticNode):
    """a / b with broadcasting (MPSNNDivisionNode); gradients dy/b and -dy*a/b**2."""

    op = "divide"


__all__ = ["AdditionNode", "DivisionNode", "MultiplicationNode", "SubtractionNode", "broadcast_shape"]
