#!/usr/bin/env python3
"""rewrite_launches.py IN.cu OUT.cc — turn CUDA triple-chevron launches into emulator calls.

    kernel<T, 8><<<grid, block, smem, stream>>>(a, b)
 -> ssemu::launch("kernel<T, 8>", ssemu::cfg_of(grid, block, smem, stream), kernel<T, 8>, a, b)

Everything else is left as written (a #line directive keeps compiler messages pointing at the
original file). Only the part of the CUDA C++ dialect the kernels use is handled: the kernel
is named by an identifier with optional template arguments, right before the <<<.
"""
import re
import sys

LAUNCH = re.compile(r"([A-Za-z_]\w*(?:\s*<[^<>;(){}]*>)?)\s*<<<(.*?)>>>\s*\(\s*(\)?)", re.S)


def rewrite(src: str) -> str:
    def repl(m: re.Match) -> str:
        name, cfg, empty = m.group(1), m.group(2), m.group(3)
        label = " ".join(name.split()).replace('"', "")
        head = f'ssemu::launch("{label}", ssemu::cfg_of({cfg}), {name}'
        return head + (")" if empty else ", ")

    out, n = LAUNCH.subn(repl, src)
    if "<<<" in out:
        raise SystemExit("rewrite_launches: a <<< launch was not understood")
    return out, n


def main() -> None:
    src_path, out_path = sys.argv[1], sys.argv[2]
    with open(src_path, encoding="utf-8") as f:
        src = f.read()
    out, n = rewrite(src)
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(f'#line 1 "{src_path}"\n{out}')
    print(f"rewrite_launches: {src_path}: {n} launches")


if __name__ == "__main__":
    main()
