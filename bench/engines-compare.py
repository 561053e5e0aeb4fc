#!/usr/bin/env python3
# Compares two sets of bench/engines.sh samples (FILE-samples.tsv files), e.g. before and after a
# change, run alternately: per nkvm row, the medians of its IOPS and of its ratio to qemu-img, and
# how they changed; then the median change over all rows.
#   bench/engines-compare.py "BEFORE-GLOB" "AFTER-GLOB"
import sys, statistics as st, glob, collections
def load(pattern):
    rows = collections.defaultdict(list)   # key -> list of (iops nkvm, iops qemu)
    for f in sorted(glob.glob(pattern)):
        runs = {}
        for line in open(f):
            if line.startswith('#') or line.startswith('round'): continue
            r, tool, eng, fmt, wl, q, iops, *_ = line.rstrip('\n').split('\t')
            runs[(tool, eng, fmt, wl, q)] = float(iops)
        for (tool, eng, fmt, wl, q), v in runs.items():
            if tool != 'nkvm': continue
            qi = runs.get(('qemu-img', eng, fmt, wl, q))
            if qi: rows[(eng, fmt, wl, q)].append((v, v / qi))
    return rows
base = load(sys.argv[1]); fin = load(sys.argv[2])
print("| engine | format | workload | queues | nkvm IOPS base → after | ÷ qemu-img base → after | after ÷ base (by ratio) |")
print("|---|---|---|---|---|---|---|")
allr = []
for k in sorted(base):
    if k not in fin: continue
    bi = st.median(v for v, _ in base[k]); fi = st.median(v for v, _ in fin[k])
    br = st.median(r for _, r in base[k]); fr = st.median(r for _, r in fin[k])
    allr.append(fr / br)
    print(f"| {k[0]} | {k[1]} | {k[2]} | x{k[3]} | {bi:.0f} → {fi:.0f} | {br:.2f} → {fr:.2f} | {fr/br:.2f} |")
print(f"\nrows: {len(allr)}; median of after÷base (ratio to qemu-img): {st.median(allr):.3f}; "
      f"rows below 0.90: {sum(1 for x in allr if x < 0.9)}")
