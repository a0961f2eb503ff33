"""Which MAC for the per-message token: HMAC-SHA256 or keyed BLAKE2, measured side by side.

One personal message needs a MAC of (version, issue, subscriber) for each of its purposes
(unsubscribe, open, click).  Candidates, each as the whole per-message cost:

- HMAC-SHA256 with its padded-key states precomputed (RFC 2104 section 4), one per purpose: 3 MACs;
- HMAC-SHA512 the same way, once, its 64 bytes cut into one 17-byte MAC per purpose;
- keyed BLAKE2b (RFC 7693 section 2.5: the key is the first block) with a 51-byte digest, once,
  cut into three 17-byte MACs (what tokens.py does); from a copied keyed state, and made afresh;
- keyed BLAKE2s, one per purpose (32-byte output: only two 16-byte cuts).

Rounds alternate between candidates so each sees the same load; per candidate the median and
best of the rounds' CPU time per message (process time) are printed beside wall time.

    .venv/bin/python bench/bench_token_mac.py [--rounds 15] [--count 50000]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import struct
import time
from collections.abc import Callable

CLAIM = struct.Struct(">BIQ")
KEY = hashlib.sha256(b"bench key").digest()


def hmac_states(key: bytes, algorithm: str) -> tuple[Callable[[], object], Callable[[], object]]:
    block = key.ljust(hashlib.new(algorithm).block_size, b"\0")
    inner = hashlib.new(algorithm, bytes(byte ^ 0x36 for byte in block))
    outer = hashlib.new(algorithm, bytes(byte ^ 0x5C for byte in block))
    return inner.copy, outer.copy


def candidates() -> dict[str, Callable[[int, int], bytes]]:
    sha256 = [hmac_states(hashlib.sha256(KEY + bytes([n])).digest(), "sha256") for n in range(3)]
    sha512_inner, sha512_outer = hmac_states(KEY, "sha512")
    blake2b_keyed = hashlib.blake2b(key=KEY, digest_size=51)
    blake2s_keyed = [hashlib.blake2s(key=hashlib.sha256(KEY + bytes([n])).digest(), digest_size=17) for n in range(3)]
    pack = CLAIM.pack

    def hmac_sha256_x3(issue: int, subscriber: int) -> bytes:
        claim = pack(2, issue, subscriber)
        out = []
        for inner_copy, outer_copy in sha256:
            inner = inner_copy()
            inner.update(claim)
            outer = outer_copy()
            outer.update(inner.digest())
            out.append(outer.digest()[:17])
        return b"".join(out)

    def hmac_sha512_x1(issue: int, subscriber: int) -> bytes:
        inner = sha512_inner()
        inner.update(pack(2, issue, subscriber))
        outer = sha512_outer()
        outer.update(inner.digest())
        return outer.digest()[:51]

    def blake2b_copy_x1(issue: int, subscriber: int) -> bytes:
        mac = blake2b_keyed.copy()
        mac.update(pack(2, issue, subscriber))
        return mac.digest()

    def blake2b_fresh_x1(issue: int, subscriber: int) -> bytes:
        return hashlib.blake2b(pack(2, issue, subscriber), key=KEY, digest_size=51).digest()

    def blake2s_copy_x3(issue: int, subscriber: int) -> bytes:
        claim = pack(2, issue, subscriber)
        out = []
        for keyed in blake2s_keyed:
            mac = keyed.copy()
            mac.update(claim)
            out.append(mac.digest())
        return b"".join(out)

    return {
        "HMAC-SHA256 x3 (precomputed states)": hmac_sha256_x3,
        "HMAC-SHA512 x1, cut in 3": hmac_sha512_x1,
        "keyed BLAKE2b (51 bytes) x1, copied state, cut in 3": blake2b_copy_x1,
        "keyed BLAKE2b (51 bytes) x1, made afresh, cut in 3": blake2b_fresh_x1,
        "keyed BLAKE2s (17 bytes) x3, copied state": blake2s_copy_x3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--count", type=int, default=50_000)
    args = parser.parse_args()
    funcs = candidates()
    cpu: dict[str, list[float]] = {name: [] for name in funcs}
    wall: dict[str, list[float]] = {name: [] for name in funcs}
    print(f"load average at start: {os.getloadavg()}")
    for _ in range(args.rounds):
        for name, func in funcs.items():
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            for subscriber in range(args.count):
                func(17, subscriber)
            cpu[name].append((time.process_time() - cpu_start) / args.count * 1e6)
            wall[name].append((time.perf_counter() - wall_start) / args.count * 1e6)
    print(f"per message, µs ({args.rounds} rounds × {args.count:,} messages)")
    print(f"{'candidate':50} {'CPU median':>10} {'CPU best':>9} {'wall median':>11}")
    for name in funcs:
        print(
            f"{name:50} {statistics.median(cpu[name]):10.2f} {min(cpu[name]):9.2f} {statistics.median(wall[name]):11.2f}"
        )
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
