"""Resampling and shape filter nodes (MPSCNNUpsamplingNearestNode,
MPSCNNUpsamplingBilinearNode, MPSNNConcatenationNode, MPSNNReshapeNode, MPSNNPadNode, a crop
node, and the converters MPSImageCopyToMatrix / MPSMatrixCopyToImage as nodes).

Each has ``gradient_filter(s)`` like every forward filter; ``Graph.training`` derives their
gradient nodes. The math of every op is in :mod:`metalnn.ops.shape`.

Matrices in a graph are 2-D image nodes of shape (rows, columns) = (N, C*H*W):
``ImageToMatrixNode(img).result`` feeds a matrix consumer (a fully connected layer, an RNN)
and ``MatrixToImageNode(m, (C, H, W)).result`` turns a matrix back into images. Both are
views (no copy).
"""

from __future__ import annotations

from collections.abc import Sequence

from .nodes import FilterNode, ImageNode, _pair, _rank4

_PAD_MODES = ("zero", "edge", "reflect")


def _ints(value, n: int, name: str, owner: str, minimum: int = 0) -> tuple:
    if (not isinstance(value, (tuple, list)) or len(value) != n
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise ValueError(f"[{owner}] {name} must be {n} ints, got {value!r}")
    if any(v < minimum for v in value):
        raise ValueError(f"[{owner}] {name} must be >= {minimum}, got {tuple(value)}")
    return tuple(int(v) for v in value)


class _UpsamplingNode(FilterNode):
    bilinear = False

    def __init__(self, source: ImageNode, scale_factor=2, label: str | None = None, align_corners: bool = False):
        super().__init__([source], label)
        self.scale = _pair(scale_factor, "scale_factor", self.kind)
        self.align_corners = bool(align_corners)

    def infer_shape(self, shapes):
        n, c, h, w = _rank4(self, shapes[0])
        return (n, c, h * self.scale[0], w * self.scale[1])

    def emit_forward(self, c):
        x, y = c.slot(self.sources[0]), c.slot(self.result)
        c.emit(self.label, "upsample_forward", x, y, self.bilinear, *self.scale, self.align_corners,
               inputs=[x], outputs=[y])

    def emit_gradient(self, c, g):
        if not c.needed(g.result):
            return
        dy, dx = c.slot(g.sources[0]), c.slot(g.result)
        c.emit(g.label, "upsample_backward", dy, dx, self.bilinear, *self.scale, self.align_corners,
               inputs=[dy], outputs=[dx])


class UpsamplingNearestNode(_UpsamplingNode):
    """Nearest-neighbour upsampling by integer factors (MPSCNNUpsamplingNearestNode):
    ``scale_factor`` is an int or (sH, sW)."""

    def __init__(self, source: ImageNode, scale_factor=2, label: str | None = None):
        super().__init__(source, scale_factor, label)


class UpsamplingBilinearNode(_UpsamplingNode):
    """Bilinear upsampling by integer factors (MPSCNNUpsamplingBilinearNode), with the
    align-corners option."""

    bilinear = True


class ConcatenationNode(FilterNode):
    """Concatenation of any number of images along feature channels (MPSNNConcatenationNode).
    Source k's gradient node gets its channel slice of the result's gradient."""

    def __init__(self, sources: Sequence[ImageNode], label: str | None = None):
        sources = list(sources)
        if not sources:
            raise ValueError(f"[{type(self).__name__}] needs at least one source")
        super().__init__(sources, label)

    def infer_shape(self, shapes):
        first = _rank4(self, shapes[0])
        for k, s in enumerate(shapes):
            _rank4(self, s)
            if (s[0], s[2], s[3]) != (first[0], first[2], first[3]):
                raise ValueError(f"source {k} has shape {s} but every source needs the batch and spatial size "
                                 f"of source 0 {first}")
        self.channels = [s[1] for s in shapes]
        return (first[0], sum(self.channels), first[2], first[3])

    def emit_forward(self, c):
        xs, y = [c.slot(s) for s in self.sources], c.slot(self.result)
        c.emit(self.label, "concat_forward", xs, y, inputs=xs, outputs=[y])

    def emit_gradient(self, c, g):
        if not c.needed(g.result):
            return
        i = g.input_index
        dy, dx = c.slot(g.sources[0]), c.slot(g.result)
        n, ch, h, w = c.shape(self.sources[i])
        offset = sum(c.shape(s)[1] for s in self.sources[:i])
        c.emit(g.label, "crop_forward", dy, dx, [offset, 0, 0], [ch, h, w], inputs=[dy], outputs=[dx])


class ReshapeNode(FilterNode):
    """Another shape for each image of the batch (MPSNNReshapeNode): ``shape`` excludes the
    batch, e.g. (C, H, W) or (F,); one entry may be -1. A view: no copy."""

    def __init__(self, source: ImageNode, shape: Sequence[int], label: str | None = None):
        super().__init__([source], label)
        shape = tuple(shape)
        if not shape or not all(isinstance(v, int) and not isinstance(v, bool) and (v > 0 or v == -1)
                                for v in shape) or shape.count(-1) > 1:
            raise ValueError(f"[{self.kind}] shape must be positive ints (one may be -1), got {shape!r}")
        self.shape = shape

    def infer_shape(self, shapes):
        src = shapes[0]
        per = 1
        for v in src[1:]:
            per *= v
        known = 1
        for v in self.shape:
            known *= v if v != -1 else 1
        shape = tuple(per // known if v == -1 else v for v in self.shape)
        total = 1
        for v in shape:
            total *= v
        if total != per:
            raise ValueError(f"cannot reshape images of shape {src[1:]} ({per} elements) to {self.shape}")
        return (src[0],) + shape

    def emit_forward(self, c):
        x, y = c.slot(self.sources[0]), c.slot(self.result)
        c.emit(self.label, "reshape", x, y, list(c.shape(self.result)), inputs=[x], outputs=[y])

    def emit_gradient(self, c, g):
        if not c.needed(g.result):
            return
        dy, dx = c.slot(g.sources[0]), c.slot(g.result)
        c.emit(g.label, "reshape", dy, dx, list(c.shape(self.sources[0])), inputs=[dy], outputs=[dx])


class FlattenNode(ReshapeNode):
    """(N, C, H, W) -> (N, C*H*W): a ReshapeNode with shape (-1,)."""

    def __init__(self, source: ImageNode, label: str | None = None):
        super().__init__(source, (-1,), label)


class ImageToMatrixNode(ReshapeNode):
    """Images -> matrix (MPSImageCopyToMatrix, feature channels x height x width layout):
    result (rows, columns) = (N, C*H*W), row n = image n. A view: no copy."""

    def __init__(self, source: ImageNode, label: str | None = None):
        super().__init__(source, (-1,), label)

    def infer_shape(self, shapes):
        _rank4(self, shapes[0])
        return super().infer_shape(shapes)


class MatrixToImageNode(ReshapeNode):
    """Matrix -> images (MPSMatrixCopyToImage): an (N, C*H*W) source becomes (N, C, H, W)
    with ``image_shape`` = (C, H, W). A view: no copy."""

    def __init__(self, source: ImageNode, image_shape: Sequence[int], label: str | None = None):
        image_shape = tuple(image_shape)
        super().__init__(source, image_shape, label)
        _ints(image_shape, 3, "image_shape", self.kind, 1)

    def infer_shape(self, shapes):
        if len(shapes[0]) != 2:
            raise ValueError(f"expected a 2-D (rows, columns) matrix source, got shape {shapes[0]}")
        return super().infer_shape(shapes)


class PadNode(FilterNode):
    """Padding (MPSNNPadNode): ``padding`` is an int, (pH, pW) or (top, bottom, left, right);
    ``channels`` = (front, back) pads feature channels; ``mode`` is "zero", "edge" (clamp)
    or "reflect" (mirror without repeating the edge; padding smaller than the axis)."""

    def __init__(self, source: ImageNode, padding=1, mode: str = "zero", channels: Sequence[int] = (0, 0),
                 label: str | None = None):
        super().__init__([source], label)
        if isinstance(padding, int) and not isinstance(padding, bool):
            padding = (padding,) * 4
        elif isinstance(padding, (tuple, list)) and len(padding) == 2:
            padding = (padding[0], padding[0], padding[1], padding[1])
        self.padding = _ints(padding, 4, "padding", self.kind)
        self.channels = _ints(tuple(channels), 2, "channels", self.kind)
        if mode not in _PAD_MODES:
            raise ValueError(f"[{self.kind}] mode must be one of {_PAD_MODES}, got {mode!r}")
        self.mode = mode

    def infer_shape(self, shapes):
        n, c, h, w = _rank4(self, shapes[0])
        top, bottom, left, right = self.padding
        front, back = self.channels
        if self.mode == "reflect":
            for name, before, after, size in (("channels", front, back, c), ("height", top, bottom, h),
                                              ("width", left, right, w)):
                if before >= size or after >= size:
                    raise ValueError(f"reflect padding ({before}, {after}) along {name} must be smaller than "
                                     f"the input's {name} ({size})")
        return (n, c + front + back, h + top + bottom, w + left + right)

    def emit_forward(self, c):
        x, y = c.slot(self.sources[0]), c.slot(self.result)
        c.emit(self.label, "pad_forward", x, y, list(self.padding), list(self.channels), self.mode,
               inputs=[x], outputs=[y])

    def emit_gradient(self, c, g):
        if not c.needed(g.result):
            return
        dy, dx = c.slot(g.sources[0]), c.slot(g.result)
        c.emit(g.label, "pad_backward", dy, dx, list(c.shape(self.sources[0])), list(self.padding),
               list(self.channels), self.mode, inputs=[dy], outputs=[dx])


class CropNode(FilterNode):
    """A window of each image (crop / slice): ``offset`` = (c0, h0, w0) and ``size`` =
    (C', H', W'); result ``x[:, c0:c0+C', h0:h0+H', w0:w0+W']``. Its gradient writes the
    result's gradient into the window of a zero image."""

    def __init__(self, source: ImageNode, offset: Sequence[int], size: Sequence[int], label: str | None = None):
        super().__init__([source], label)
        self.offset = _ints(tuple(offset), 3, "offset", self.kind)
        self.size = _ints(tuple(size), 3, "size", self.kind, 1)

    def infer_shape(self, shapes):
        n, c, h, w = _rank4(self, shapes[0])
        for o, s, full in zip(self.offset, self.size, (c, h, w)):
            if o + s > full:
                raise ValueError(f"window offset {self.offset} + size {self.size} reaches outside images of "
                                 f"shape {(c, h, w)}")
        return (n,) + self.size

    def emit_forward(self, c):
        x, y = c.slot(self.sources[0]), c.slot(self.result)
        c.emit(self.label, "crop_forward", x, y, list(self.offset), list(self.size), inputs=[x], outputs=[y])

    def emit_gradient(self, c, g):
        if not c.needed(g.result):
            return
        dy, dx = c.slot(g.sources[0]), c.slot(g.result)
        c.emit(g.label, "crop_backward", dy, dx, list(c.shape(self.sources[0])), list(self.offset),
               inputs=[dy], outputs=[dx])


#: MPS's name for a channel / spatial window.
SliceNode = CropNode

__all__ = ["ConcatenationNode", "CropNode", "FlattenNode", "ImageToMatrixNode", "MatrixToImageNode", "PadNode",
           "ReshapeNode", "SliceNode", "UpsamplingBilinearNode", "UpsamplingNearestNode"]
