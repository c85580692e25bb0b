#!/usr/bin/env python3
"""Where one process's CPU went, from a `perf record -e cpu-clock` file: microseconds per
request by component, then the busiest symbols.

    perf_components.py FILE TARGET REQUESTS SAMPLE_HZ
    perf_components.py --symbols fdget,fput,clock_gettime FILE TARGET REQUESTS SAMPLE_HZ

Components are told apart by the shared object and the symbol name: a stripped binary (the
distribution's haproxy) only by its object. Printed as markdown (tls.sh, CASES=profile).
With --symbols, one table row's cells instead (builds.sh, SYMBOLS=...): user and kernel µs
per request, then the µs per request in the symbols whose names contain each string.
"""

import collections
import re
import subprocess
import sys

# First match wins: (component, test on (dso, symbol)).
RULES = [
    ("kernel: TCP/IP", lambda d, s: d.startswith("[kernel") and re.match(
        r"(tcp|ip_|__ip|inet|__inet|sk_|__sk|sock|skb|__skb|kfree_skb|net_|__net|__netif|"
        r"loopback|__dev|dev_|nf_|ipv4|__tcp|bbr|raw_local|validate_xmit|__copy_skb|"
        r"napi|release_sock|lock_sock|__release_sock)", s)),
    ("kernel: syscalls, epoll, scheduler, other", lambda d, s: d.startswith("[kernel")),
    ("crypto (AES-GCM, ChaCha, hashes)", lambda d, s: "libcrypto" in d or re.search(
        r"ring_core|aes|gcm|chacha|poly1305|sha2|sha256|sha512|ecp_nistz|p256|bn_|x25519|GFp|ring::", s, re.I)),
    ("TLS records (rustls, libssl)", lambda d, s: "libssl" in d or "rustls" in s),
    ("HTTP/2 (h2)", lambda d, s: s.startswith("h2::") or "<h2::" in s),
    ("hyper", lambda d, s: "hyper::" in s or "hyper_util::" in s),
    ("runtime (tokio, mio)", lambda d, s: "tokio::" in s or "mio::" in s or "tokio_util::" in s),
    ("allocator", lambda d, s: re.match(r"(_?mi_|__libc_malloc|malloc|free|cfree|_int_malloc|_int_free|"
                                        r"__libc_free|realloc|calloc|tcache|__rust_alloc|__rust_dealloc)", s)),
    ("memcpy, memmove, memset", lambda d, s: re.match(r"__mem|memcpy|memmove|memset", s)),
    ("lockstep", lambda d, s: "lockstep" in s),
    ("http, bytes", lambda d, s: s.startswith(("http::", "bytes::", "<http::", "<bytes::"))),
    ("libc, other", lambda d, s: "libc" in d or "ld-linux" in d),
]


def component(dso, sym):
    for name, test in RULES:
        if test(dso, sym):
            return name
    return f"{dso} (other)"


def main():
    args = sys.argv[1:]
    symbols = None
    if args[0] == "--symbols":
        symbols, args = args[1].split(","), args[2:]
    path, target, requests, hz = args[0], args[1], int(args[2]), int(args[3])
    out = subprocess.run(
        ["perf", "report", "-i", path, "--no-children", "-g", "none", "--sort", "dso,sym", "--stdio", "-q",
         "--percent-limit", "0", "-F", "sample,dso,sym"],
        capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        m = re.match(r"\s*(\d+)\s+(\S+)\s+\[(.)\]\s+(.*)$", line)
        if m:
            rows.append((int(m.group(1)), m.group(2), m.group(3), m.group(4).strip()))
    total = sum(r[0] for r in rows)
    if not total or not requests:
        print(f"{target}: no samples or no requests\n")
        return
    us = lambda samples: samples / hz * 1e6 / requests
    kernel = sum(n for n, _, kind, _ in rows if kind == "k")
    if symbols is not None:
        cells = [us(total - kernel), us(kernel)]
        cells += [us(sum(n for n, _, _, sym in rows if wanted in sym)) for wanted in symbols]
        print(" | ".join(f"{c:.3f}" for c in cells))
        return
    by = collections.Counter()
    for n, dso, _, sym in rows:
        by[component(dso, sym)] += n
    print(f"**{target}**: {requests} requests, {us(total):.2f} CPU µs per request "
          f"(user {us(total - kernel):.2f}, kernel {us(kernel):.2f}; {total} samples)")
    print()
    print("| component | CPU µs per request | share |")
    print("|---|---:|---:|")
    for name, n in by.most_common():
        if n / total >= 0.005:
            print(f"| {name} | {us(n):.2f} | {100 * n / total:.1f}% |")
    print()
    top = sorted(rows, reverse=True)[:10]
    print("Busiest symbols: " + "; ".join(
        f"{re.sub(r'::h[0-9a-f]{16}$', '', sym)[:80]} ({dso}) {100 * n / total:.1f}%"
        for n, dso, _, sym in top))
    print()


if __name__ == "__main__":
    main()
