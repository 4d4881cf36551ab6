import re,sys,collections,statistics
for f in sys.argv[1:]:
    rows=[]
    for block in open(f).read().split("=== ")[1:]:
        hdr=block.split("\n")[0]
        m=re.search(r"throughput\s+([\d.]+) M",block); tp=float(m.group(1)) if m else None
        p50=re.search(r"p50 ([\d.]+) µs",block); p99=re.search(r"p99 ([\d.]+) µs",block)
        s=re.search(r"syncs\s+(\d+).*?([\d.]+) µs mean, ([\d.]+) µs max",block)
        rows.append((hdr.split()[0],hdr.split(None,1)[1],tp,p50 and float(p50.group(1)),p99 and float(p99.group(1)),s and float(s.group(2)),s and float(s.group(3))))
    print(f)
    print("| run | time, load (1/5/15 min) | M draws/s | p50 µs | p99 µs | fdatasync mean µs | fdatasync max µs |")
    print("|---|---|---|---|---|---|---|")
    for r in rows: print("| %s | %s | %s | %s | %s | %s | %s |"%r)
    by=collections.defaultdict(list)
    for r in rows: by[r[0].rsplit('.',1)[0]].append(r)
    for k,v in by.items():
        tps=[r[2] for r in v if r[2] is not None]; p50s=[r[3] for r in v if r[3] is not None]; sm=[r[5] for r in v if r[5] is not None]
        print(f"{k}: n={len(v)} tput median {statistics.median(tps):.2f} (range {min(tps)}-{max(tps)}), p50 median {statistics.median(p50s):.0f} (range {min(p50s):.0f}-{max(p50s):.0f}), fdatasync mean median {statistics.median(sm):.0f}; p50>1ms: {sum(1 for x in p50s if x>1000)}/{len(p50s)}")
