"""Rewrites an MSL source into C++ the emulator can compile (with msl_shim.h).

What C++ cannot express, and what becomes of it:

* ``kernel void name(args with [[attributes]])`` -> a static function without the
  attributes, plus ``extern "C" int mslemu_name(...)``, a C entry point that binds
  ``[[buffer(i)]]`` arguments from an array of pointers and thread-position attributes
  from the emulator's per-thread ids, and runs the grid (runner.h's dispatch).
* ``threadgroup T name[N];`` in a kernel body -> a reference into the threadgroup's
  memory (shared by its fibers, poisoned at the start of each threadgroup).

In strict mode (compile check only) address spaces stay distinct and no entries are made.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

# Builtin attribute -> field of mslemu::ThreadIds (uint3), or a scalar expression.
BUILTINS = {
    "thread_position_in_grid": "t.pos_grid",
    "threadgroup_position_in_grid": "t.tg_pos",
    "thread_position_in_threadgroup": "t.tid",
    "threads_per_threadgroup": "t.tg_size",
    "threads_per_grid": "t.grid_size",
    "threadgroups_per_grid": "t.n_tgs",
    "thread_index_in_threadgroup": "uint3{t.tid_flat, 0, 0}",
    "thread_index_in_simdgroup": "uint3{t.lane, 0, 0}",
    "simdgroup_index_in_threadgroup": "uint3{t.simd_id, 0, 0}",
    "threads_per_simdgroup": "uint3{32, 0, 0}",
    "simdgroups_per_threadgroup": "uint3{t.n_simds, 0, 0}",
}

KERNEL = re.compile(r"\bkernel\s+void\s+(\w+)\s*\(")
ATTR = re.compile(r"\[\[\s*(\w+)\s*(?:\(\s*(\d+)\s*\))?\s*\]\]")
TG_DECL = re.compile(r"(?m)^(\s*)threadgroup\s+([\w:<>,\s]+?)\s+(\w+)\s*((?:\[[^\]]+\]\s*)*);")


@dataclass
class Param:
    type: str
    name: str
    attr: str | None
    index: int | None


@dataclass
class Kernel:
    name: str
    params: list[Param]


def _match(text: str, i: int, open_: str, close: str) -> int:
    """Index just past the bracket that closes text[i] (== open_)."""
    depth = 0
    for j in range(i, len(text)):
        if text[j] == open_:
            depth += 1
        elif text[j] == close:
            depth -= 1
            if depth == 0:
                return j + 1
    raise ValueError(f"unbalanced {open_!r} at offset {i}")


def _split_params(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "(<[":
            depth += 1
        elif ch in ")>]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def _parse_param(text: str, kernel: str) -> Param:
    m = ATTR.search(text)
    attr, index = (m.group(1), int(m.group(2)) if m.group(2) else None) if m else (None, None)
    decl = ATTR.sub("", text).strip()
    nm = re.search(r"(\w+)\s*$", decl)
    if not nm:
        raise ValueError(f"{kernel}: cannot parse argument {text.strip()!r}")
    if attr is None:
        raise ValueError(f"{kernel}: argument {decl!r} has no attribute")
    if attr not in BUILTINS and attr not in ("buffer", "threadgroup"):
        raise ValueError(f"{kernel}: unsupported attribute [[{attr}]]")
    return Param(decl[: nm.start()].strip(), nm.group(1), attr, index)


def _bind(p: Param, k: int) -> str:
    t = f"P{k}"
    if p.attr == "buffer":
        if t and p.type.rstrip().endswith("&"):
            return f"*(::mslemu::strip_ref<{t}>::type*)b[{p.index}]"
        return f"({t})b[{p.index}]"
    if p.attr == "threadgroup":
        return f"({t})::mslemu::threadgroup_param({p.index})"
    return f"::mslemu::builtin<{t}>({BUILTINS[p.attr]})"


def _entry(kern: Kernel) -> str:
    ns = f"mslemu_k_{kern.name}"
    lines = [f"namespace {ns} {{"]
    lines += [f"typedef {p.type} P{k};" for k, p in enumerate(kern.params)]
    uses = []
    for k, p in enumerate(kern.params):
        if p.attr == "buffer":
            size = f"sizeof(::mslemu::strip_ref<P{k}>::type)" if p.type.endswith("&") else "0"
            uses.append(f"{{{p.index}, {size}}}")
    uses.append("{-1, 0}")
    lines.append(f"const ::mslemu::BufferUse uses[] = {{{', '.join(uses)}}};")
    args = ", ".join(_bind(p, k) for k, p in enumerate(kern.params))
    lines.append(f"void entry(void** b, const ::mslemu::ThreadIds& t) {{ (void)b; (void)t; ::{kern.name}({args}); }}")
    lines.append(f"}}  // namespace {ns}")
    lines.append(
        f'extern "C" int mslemu_{kern.name}(void** b, const uint64_t* sizes, int nbuf, const uint32_t* dims, '
        "const uint32_t* tg_lengths, int schedule, char* err, int errlen) {"
    )
    lines.append(
        f"  return ::mslemu::dispatch({ns}::entry, {ns}::uses, b, sizes, nbuf, dims, tg_lengths, schedule, "
        "err, errlen);"
    )
    lines.append("}")
    return "\n".join(lines)


def rewrite(source: str, path: str = "kernel.metal", strict: bool = False) -> tuple[str, list[Kernel]]:
    """Returns (C++ source, kernels found)."""
    out, kernels, pos, slot = [], [], 0, 0
    for m in KERNEL.finditer(source):
        if m.start() < pos:
            continue
        open_ = m.end() - 1
        close = _match(source, open_, "(", ")")
        body_open = source.index("{", close)
        body_close = _match(source, body_open, "{", "}")
        raw = source[open_ + 1 : close - 1]
        params = [_parse_param(t, m.group(1)) for t in _split_params(raw)]
        kernels.append(Kernel(m.group(1), params))
        # Drop attributes but keep newlines, so line numbers stay those of the .metal file.
        sig = ATTR.sub("", raw)
        body = source[body_open:body_close]

        def tg(d: re.Match) -> str:
            nonlocal slot
            slot += 1
            ind, typ, name, dims = d.group(1), d.group(2).strip(), d.group(3), re.sub(r"\s+", "", d.group(4))
            if strict:
                return f"{ind}static threadgroup {typ} {name}{dims};"
            return f"{ind}threadgroup auto& {name} = ::mslemu::threadgroup_var<{typ}{dims}>({slot});"

        body = TG_DECL.sub(tg, body)
        out.append(source[pos : m.start()])
        out.append(f"static void {m.group(1)}({sig}) {source[close:body_open]}{body}")
        pos = body_close
    out.append(source[pos:])
    text = f'#line 1 "{path}"\n' + "".join(out)
    if not strict:
        text += '\n#line 1 "mslemu-entries"\n#include "runner.h"\n' + "\n".join(_entry(k) for k in kernels) + "\n"
    return text, kernels


if __name__ == "__main__":
    src = open(sys.argv[1]).read()
    sys.stdout.write(rewrite(src, sys.argv[1], strict="--strict" in sys.argv)[0])
