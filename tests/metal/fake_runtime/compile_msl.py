"""The fake Metal device's MSL compiler: what `newLibraryWithSource:options:error:` runs.

    python compile_msl.py <file with the MSL source>

The source is what the host code hands to Metal (one .metal file with its `#include "..."`
headers already inlined). It goes through the emulator's own machinery -- prepass.py, then
clang++ with emulator.py's flags -- into a shared library, cached by content hash next to the
emulator's (``$TMPDIR/mslemu-<uid>/fakert-*.so``). To the emulator's C entry points
(``mslemu_<kernel>``) this adds what the fake runtime's checks need, per kernel:

* ``fakert_args_<kernel>``: {kind, index, size, align} for each argument -- 1 a ``device`` /
  ``constant`` pointer (align = its element's), 2 a reference such as ``constant P& p``
  (size = sizeof(P), which setBytes must match), 3 a ``[[threadgroup(i)]]`` pointer -- then -1;
* ``fakert_static_threadgroup_<kernel>``: bytes of its kernel-scope ``threadgroup`` arrays
  (the pipeline's staticThreadgroupMemoryLength);
* ``fakert_kernels``: the kernel names, NULL-terminated.

Prints ``FAKERT_LIBRARY <path>`` last on success; on failure prints the compiler's errors
(which become the NSError of newLibraryWithSource) and exits 1.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from emulator import _dependencies_hash, _flags, find_clang  # noqa: E402
from prepass import KERNEL, TG_DECL, _match, rewrite  # noqa: E402

HELPERS = """
namespace fakert_meta {
template <class T> struct pointee { typedef T type; };
template <class T> struct pointee<T*> { typedef T type; };
template <class T> struct referee { typedef T type; };
template <class T> struct referee<T&> { typedef T type; };
}
"""


def _static_threadgroup(source: str) -> dict[str, list[str]]:
    """Per kernel, the types (with array bounds) of the threadgroup arrays its body declares."""
    found: dict[str, list[str]] = {}
    pos = 0
    for m in KERNEL.finditer(source):
        if m.start() < pos:
            continue
        close = _match(source, m.end() - 1, "(", ")")
        body_open = source.index("{", close)
        body_close = _match(source, body_open, "{", "}")
        found[m.group(1)] = [d.group(2).strip() + re.sub(r"\s+", "", d.group(4))
                             for d in TG_DECL.finditer(source[body_open:body_close])]
        pos = body_close
    return found


def metadata(source: str, kernels) -> str:
    statics = _static_threadgroup(source)
    out = ['\n#line 1 "fakert-metadata"', HELPERS]
    for k in kernels:
        ns = f"fakert_meta_{k.name}"
        out.append(f"namespace {ns} {{")
        rows = []
        for i, p in enumerate(k.params):
            if p.attr == "buffer":
                out.append(f"typedef {p.type} A{i};")
                if p.type.rstrip().endswith("&"):
                    t = f"::fakert_meta::referee<{ns}::A{i}>::type"
                    rows.append(f"2, {p.index}, (long long)sizeof({t}), (long long)alignof({t})")
                else:
                    t = f"::fakert_meta::pointee<{ns}::A{i}>::type"
                    rows.append(f"1, {p.index}, 0, (long long)alignof({t})")
            elif p.attr == "threadgroup":
                rows.append(f"3, {p.index}, 0, 0")
        out.append("}")
        rows.append("-1, 0, 0, 0")
        out.append(f'extern "C" const long long fakert_args_{k.name}[] = {{')
        out.append(",\n".join(f"  {r}" for r in rows) + "};")
        sizes = " + ".join(f"((sizeof({t}) + 15) / 16 * 16)" for t in statics.get(k.name, [])) or "0"
        out.append(f'extern "C" const long long fakert_static_threadgroup_{k.name} = (long long)({sizes});')
    names = ", ".join(f'"{k.name}"' for k in kernels)
    out.append(f'extern "C" const char* const fakert_kernels[] = {{{names}{", " if names else ""}nullptr}};')
    return "\n".join(out) + "\n"


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    msl = Path(sys.argv[1]).read_text()
    m = re.match(r'#line 1 "([^"]+)"', msl)
    stem = Path(m.group(1)).stem if m else "library"
    cxx = find_clang()
    if cxx is None:
        print("fake Metal: no clang++ >= 15 found (set MSLEMU_CXX)")
        return 1
    try:
        source, kernels = rewrite(msl, f"{stem}.metal")
    except ValueError as e:  # what the prepass cannot parse, Metal's compiler would report
        print(f"fake Metal: {e}")
        return 1
    source += metadata(msl, kernels)
    flags = _flags("")
    key = "\0".join([source, cxx, *flags, _dependencies_hash(), Path(__file__).read_text()])
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    folder = Path(tempfile.gettempdir()) / f"mslemu-{os.getuid()}"
    folder.mkdir(exist_ok=True)
    lib = folder / f"fakert-{stem}-{digest}.so"
    if not lib.exists():
        cpp = folder / f"fakert-{stem}-{digest}.cpp"
        cpp.write_text(source)
        tmp = lib.with_suffix(f".{os.getpid()}.tmp")
        res = subprocess.run([cxx, *flags, "-shared", "-x", "c++", str(cpp), "-o", str(tmp)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            print(res.stderr[-8000:])
            return 1
        os.replace(tmp, lib)
    print(f"FAKERT_LIBRARY {lib}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
