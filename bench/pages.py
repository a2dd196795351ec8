"""Which pages of a binary a running process has resident (issue #22, sidecar RSS):
per mapping of the file, the resident kB, and how many of the 64 KB blocks touched
are resident in full (the kernel maps the page-cache pages around a faulting page,
`fault_around_bytes`, 64 KB by default, so code runs in full blocks).

    python3 bench/pages.py PID BINARY
"""
import struct
import sys

pid, binary = sys.argv[1], sys.argv[2]
pages = []
with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
    for line in open(f"/proc/{pid}/maps"):
        f = line.split()
        if len(f) < 6 or f[5] != binary:
            continue
        lo, hi = (int(x, 16) for x in f[0].split("-"))
        pagemap.seek(lo // 4096 * 8)
        raw = pagemap.read((hi - lo) // 4096 * 8)
        resident = [lo + i * 4096 for i, (e,) in enumerate(struct.iter_unpack("<Q", raw)) if e >> 63]
        pages += resident
        print(f"{f[1]} {(hi - lo) // 1024:>7} kB mapped {len(resident) * 4:>7} kB resident")
blocks = {}
for va in pages:
    blocks[va // 65536] = blocks.get(va // 65536, 0) + 1
full = sum(1 for n in blocks.values() if n == 16)
print(f"total {len(pages) * 4} kB resident in {len(blocks)} blocks of 64 KB, {full} of them in full")
