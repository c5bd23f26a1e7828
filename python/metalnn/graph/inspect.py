"""Seeing what a graph does: a summary table, a Graphviz picture, training curves.

- :func:`summary` -- one row per node: label, kind, output shape, parameter count and the
  planned memory of live intermediate images once the node has run (from
  :meth:`Graph.memory_plan`: slots are dropped after their last use and reused);
- :func:`to_dot` / :func:`render` -- a Graphviz DOT description (sources and results as
  ellipses, forward filters as boxes, gradient nodes shaded, dashed edges where a gradient
  node reads its forward node's state), rendered to PNG/SVG/PDF by the ``dot`` program when
  it is installed;
- :func:`plot_history` -- loss / accuracy per epoch (the history ``Sequential.fit`` returns),
  with matplotlib.

``Graph.summary()``, ``Graph.to_dot()`` and ``Graph.render(path)`` delegate here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .nodes import FilterNode, GradientNode, ImageNode, NeuronNode

__all__ = ["infer_shapes", "summary_rows", "summary", "to_dot", "render", "plot_history", "format_bytes"]


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def _source_shapes(graph, input_shape) -> dict[ImageNode, tuple]:
    """Shapes of the graph's sources from ``input_shape`` (one shape, a list in source order
    or a dict by name), else from the last compiled batch; {} when neither is known."""
    if input_shape is None:
        if not graph._compiled:
            return {}
        key = list(graph._compiled)[-1][0]
        by_id = {s.id: s for s in graph.sources}
        return {by_id[i]: tuple(shape) for i, shape, _ in key if i in by_id}
    if isinstance(input_shape, Mapping):
        by_name = {s.name: s for s in graph.sources}
        return {(k if isinstance(k, ImageNode) else by_name[k]): tuple(v) for k, v in input_shape.items()}
    shapes = list(input_shape)
    if shapes and all(isinstance(s, (tuple, list)) for s in shapes):
        return {s: tuple(v) for s, v in zip(graph.sources, shapes)}
    if len(graph.sources) != 1:
        raise ValueError(f"[Graph] input_shape: the graph has {len(graph.sources)} sources; give a list or a dict")
    return {graph.sources[0]: tuple(int(v) for v in shapes)}


def infer_shapes(graph, input_shape=None) -> dict[ImageNode, tuple]:
    """Shape of every image of the graph for ``input_shape`` (see :func:`summary`)."""
    shapes = dict(_source_shapes(graph, input_shape))
    if not shapes:
        return {}
    for node in graph.nodes:
        try:
            if isinstance(node, GradientNode):
                shapes[node.result] = shapes[node.forward.sources[node.input_index]]
            else:
                shapes[node.result] = tuple(node.infer_shape([shapes[s] for s in node.sources]))
        except KeyError:
            continue  # an input without a shape (e.g. a second source not given)
        except (ValueError, TypeError) as e:
            raise ValueError(f"[Graph] node '{node.label}' ({node.kind}): {e}") from None
    return shapes


def _example_feeds(graph, shapes: dict) -> tuple[list, Any]:
    images = [np.zeros(shapes[s], np.float32) for s in graph.sources]
    labels = None
    if graph.loss_nodes:
        logits = shapes[graph.loss_nodes[0].sources[0]]
        labels = np.zeros((logits[0],) + tuple(logits[2:]), np.int32)
    return images, labels


def _parameter_count(graph, node: FilterNode) -> int:
    if node in graph._params:  # what the graph bound (some nodes bind more than weights and biases)
        bound = graph._params[node]
        bound = bound.values() if isinstance(bound, Mapping) else bound if isinstance(bound, (tuple, list)) else [bound]
        return int(sum(int(np.prod(np.shape(p.value))) for p in bound if getattr(p, "value", None) is not None))
    ds = getattr(node, "data_source", None)
    if ds is None:
        return 0
    d = ds.descriptor()
    return int(d.out_channels * (d.in_channels // d.groups) * d.kernel_h * d.kernel_w)


def summary_rows(graph, input_shape=None) -> tuple[list[dict], dict | None]:
    """The rows of :func:`summary` (dicts: node, kind, shape, parameters, memory) and the
    memory plan (None when no input shape is known)."""
    shapes = infer_shapes(graph, input_shape)
    plan = None
    if shapes and all(s in shapes for s in graph.sources):
        images, labels = _example_feeds(graph, shapes)
        plan = graph.memory_plan(images if len(images) > 1 else images[0], labels)
    live: dict[str, int] = {}
    if plan is not None:
        for label, _method, current in plan["steps"]:
            live[label] = current  # the live bytes after the node's last step
    rows = []
    for node in graph.nodes:
        rows.append({
            "node": node.label,
            "kind": node.kind,
            "shape": shapes.get(node.result),
            "parameters": 0 if isinstance(node, GradientNode) else _parameter_count(graph, node),
            "memory": live.get(node.label),
            # No step of its own: a neuron that runs in its layer's epilogue.
            "fused": plan is not None and node.label not in live and isinstance(node, NeuronNode),
        })
    return rows, plan


def summary(graph, input_shape=None) -> str:
    """A table of the graph's nodes: label, kind, output shape, parameters and the planned
    memory (bytes of live intermediate images after the node, with reuse); then totals.

    ``input_shape``: the source's ``(N, C, H, W)`` (a list or dict for several sources);
    default: the shapes of the last batch the graph ran. Without either, shapes and memory
    show as ``?``. A fused neuron runs inside its layer's kernel and shows ``(fused)``; a node
    with nothing to compute (e.g. the input gradient of a first layer) shows ``-``."""
    rows, plan = summary_rows(graph, input_shape)
    table = [("node", "kind", "output shape", "params", "memory")]
    for r in rows:
        memory = "?" if plan is None else format_bytes(r["memory"]) if r["memory"] is not None else \
            "(fused)" if r["fused"] else "-"
        table.append((r["node"], r["kind"], "?" if r["shape"] is None else str(tuple(r["shape"])),
                      f"{r['parameters']:,}" if r["parameters"] else "", memory))
    widths = [max(len(row[i]) for row in table) for i in range(5)]

    def line(row):
        return "  ".join(c.rjust(w) if i >= 3 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    rule = "-" * (sum(widths) + 8)
    out = [f"Graph: {len(graph.nodes)} nodes, mode {graph.mode}, device {graph.device}", rule, line(table[0]), rule]
    out += [line(row) for row in table[1:]]
    out.append(rule)
    total = sum(r["parameters"] for r in rows)
    out.append(f"parameters: {total:,} ({format_bytes(4 * total)} as float32)")
    if plan is not None:
        saved = plan["total_bytes"] - plan["peak_bytes"]
        out.append(f"planned memory: peak {format_bytes(plan['peak_bytes'])} of intermediate images "
                   f"({format_bytes(plan['total_bytes'])} without reuse, {format_bytes(saved)} saved)")
    return "\n".join(out)


# -- Graphviz ---------------------------------------------------------------------------------
def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _quote(*lines: str) -> str:
    """A DOT string of ``lines`` (each escaped) joined by DOT's centred line break."""
    return '"' + "\\n".join(_escape(line) for line in lines) + '"'


def to_dot(graph, input_shape=None, rankdir: str = "TB") -> str:
    """A Graphviz DOT description of the graph (shapes on the boxes when known)."""
    shapes = infer_shapes(graph, input_shape) if (input_shape is not None or graph._compiled) else {}

    def shape_lines(image) -> list[str]:
        return [str(tuple(shapes[image]))] if image in shapes else []

    lines = [f"digraph {_quote('metalnn')} {{", f"  rankdir={rankdir};",
             '  node [fontname="Helvetica", fontsize=10];', '  edge [fontname="Helvetica", fontsize=9];']
    ids = {node: f"n{k}" for k, node in enumerate(graph.nodes)}
    for k, s in enumerate(graph.sources):
        ids[s] = f"s{k}"
        lines.append(f"  s{k} [shape=ellipse, style=filled, fillcolor=\"#e8f0fe\", "
                     f"label={_quote(s.name, *shape_lines(s))}];")
    for node in graph.nodes:
        fill = "#fde2e4" if isinstance(node, GradientNode) else ("#fff4d6" if getattr(node, "trainable", False)
                                                                 else "#f1f3f4")
        lines.append(f"  {ids[node]} [shape=box, style=\"rounded,filled\", fillcolor=\"{fill}\", "
                     f"label={_quote(node.label, node.kind, *shape_lines(node.result))}];")
    for node in graph.nodes:
        for s in node.sources:
            src = ids.get(s.producer) if s.producer is not None else ids.get(s)
            if src is not None:
                lines.append(f"  {src} -> {ids[node]};")
        if isinstance(node, GradientNode) and node.forward in ids:
            lines.append(f"  {ids[node.forward]} -> {ids[node]} [style=dashed, color=gray40, label=\"state\"];")
    if graph.result_needed:
        for k, r in enumerate(graph.results):
            lines.append(f"  r{k} [shape=ellipse, style=filled, fillcolor=\"#e6f4ea\", label={_quote(r.name)}];")
            if r.producer in ids:
                lines.append(f"  {ids[r.producer]} -> r{k};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(graph, path: str | os.PathLike, input_shape=None, format: str | None = None) -> str | None:
    """Writes the graph's picture to ``path`` (format from the suffix: png, svg, pdf; .dot
    writes the description itself). Needs Graphviz's ``dot`` for pictures: without it the
    DOT text is written to ``<path>.dot`` instead, a warning is issued and None returned."""
    path = os.fspath(path)
    fmt = (format or os.path.splitext(path)[1].lstrip(".") or "png").lower()
    text = to_dot(graph, input_shape)
    if fmt in ("dot", "gv"):
        with open(path, "w") as f:
            f.write(text)
        return path
    exe = shutil.which("dot")
    if exe is None:
        with open(path + ".dot", "w") as f:
            f.write(text)
        warnings.warn(f"[Graph] render: Graphviz 'dot' is not installed; wrote {path}.dot instead of {path}",
                      RuntimeWarning, stacklevel=2)
        return None
    subprocess.run([exe, f"-T{fmt}", "-o", path], input=text.encode(), check=True, capture_output=True)
    return path


# -- training curves ---------------------------------------------------------------------------
def plot_history(history: Mapping[str, Sequence[float]], path: str | os.PathLike | None = None, *,
                 title: str | None = None):
    """Plots a training history (``{"loss": [...], "val_loss": [...], "accuracy": ...}``, one
    value per epoch) with matplotlib: one panel per quantity, training and validation
    together. Saves to ``path`` when given; returns the matplotlib Figure."""
    try:
        from matplotlib.figure import Figure
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("[plot_history] needs matplotlib: pip install 'metalnn[examples]'") from e
    keys = [k for k in history if not k.startswith("val_")]
    keys += [k[4:] for k in history if k.startswith("val_") and k[4:] not in keys]
    if not keys:
        raise ValueError("[plot_history] history is empty")
    fig = Figure(figsize=(4.5 * len(keys), 3.5))
    for i, key in enumerate(keys):
        ax = fig.add_subplot(1, len(keys), i + 1)
        for name, style in ((key, "-o"), (f"val_{key}", "--s")):
            values = list(history.get(name, []))
            if values:
                ax.plot(range(1, len(values) + 1), values, style, label=name, markersize=3)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(os.fspath(path), dpi=110)
    return fig
