#!/usr/bin/env python3
"""How long a proxy holds each request, from a loopback capture (stay.sh).

usage: stay.py CAPTURE PROXY_PORT BACKEND_PORT

Every request carries a unique path (oha --rand-regex-url). A request's stay in the proxy is
(the proxy's response to the client - the client's request) - (the backend's response - the
proxy's request to the backend): what the proxy adds, without the backend's time. The stamps
are taken by the kernel as each segment leaves its sender, so the load generator's and the
backend's scheduling are not in it; the kernel's delivery to the proxy and the proxy's waking
on its core are. The capture (tcpdump -w, nanosecond stamps) holds the segments that carry
data (PSH) between the client and the proxy and between the proxy and the backend; each HTTP/1
message here fits one loopback segment. Exchanges are paired in order on each connection (the
load sends no pipelined requests) and joined across the proxy by path.

Prints one line: requests seen on both sides, requests answered to the client, the stay's p50,
p90, p99, p99.9 and max, then p50 and p99 of its two legs (in: the client's request to the
proxy's request to the backend; out: the backend's response to the proxy's response), all in
microseconds; last, how bunched the load arrived: the 99th percentile of the size of a burst
(requests sent less than 20 µs apart), whose last request waits for the proxy to serve the rest.
"""
import struct
import sys


def segments(path):
    with open(path, "rb") as f:
        head = f.read(24)
        magic, = struct.unpack("<I", head[:4])
        if magic != 0xA1B23C4D:
            sys.exit("expected a nanosecond capture (tcpdump --time-stamp-precision nano)")
        link, = struct.unpack("<I", head[20:24])
        if link != 1:
            sys.exit(f"expected an Ethernet-framed loopback capture, got link type {link}")
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                return
            sec, nsec, incl, _ = struct.unpack("<IIII", rec)
            pkt = f.read(incl)
            ip = pkt[14:]
            if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
                continue
            tcp = ip[(ip[0] & 15) * 4:]
            sport, dport = struct.unpack(">HH", tcp[:4])
            payload = tcp[(tcp[12] >> 4) * 4:]
            if payload:
                yield sec * 1_000_000_000 + nsec, sport, dport, payload


def exchanges(packets, server_port):
    """(request path, request stamp, response stamp) of each exchange with server_port, paired
    in order on each connection (no pipelining)."""
    waiting = {}  # client port -> list of (path, stamp)
    for ts, sport, dport, payload in packets:
        if dport == server_port and payload[:4] in (b"GET ", b"POST"):
            path = payload.split(b" ", 2)[1]
            waiting.setdefault(sport, []).append((path, ts))
        elif sport == server_port and payload.startswith(b"HTTP/1."):
            q = waiting.get(dport)
            if q:
                path, t0 = q.pop(0)
                yield path, t0, ts


def pct(xs, p):
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main():
    capture, proxy_port, backend_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    packets = list(segments(capture))
    front = {path: (t0, t1) for path, t0, t1 in exchanges(packets, proxy_port)}
    stays, ins, outs = [], [], []
    for path, u0, u1 in exchanges(packets, backend_port):
        f = front.get(path)
        if f is None:
            continue
        t0, t1 = f
        stays.append((t1 - t0) - (u1 - u0))
        ins.append(u0 - t0)
        outs.append(t1 - u1)
    if not stays:
        sys.exit("no request was seen on both sides")
    for xs in (stays, ins, outs):
        xs.sort()
    us = lambda ns: round(ns / 1000, 1)
    print(len(stays), len(front), *(us(pct(stays, p)) for p in (0.5, 0.9, 0.99, 0.999)), us(stays[-1]),
          us(pct(ins, 0.5)), us(pct(ins, 0.99)), us(pct(outs, 0.5)), us(pct(outs, 0.99)),
          pct(bursts(sorted(t0 for t0, _ in front.values())), 0.99))


def bursts(arrivals):
    """Sizes of the runs of requests that arrived less than 20 µs after the one before, sorted."""
    sizes, size = [], 1
    for before, after in zip(arrivals, arrivals[1:]):
        if after - before < 20_000:
            size += 1
        else:
            sizes.append(size)
            size = 1
    sizes.append(size)
    return sorted(sizes)


main()
