import re,sys,collections
# wakeup -> switch-in latency per wakee comm prefix
line_re=re.compile(r'^\s*(.+?)-(\d+)\s+\[(\d+)\]\s+\S+\s+([\d.]+): (\w+)(.*)$')
pend={}; lat=collections.defaultdict(list); curr={}
for l in open(sys.argv[1]):
    m=line_re.match(l)
    if not m: continue
    comm,pid,cpu,ts,ev,rest=m.groups(); t=float(ts)*1e6
    if ev=='sched_wakeup':
        w=re.search(r'comm=(.+?) pid=(\d+)',rest); pend[int(w.group(2))]=(t,w.group(1))
    elif ev=='sched_switch':
        n=re.search(r'next_comm=(.+?) next_pid=(\d+)',rest); np_=int(n.group(2))
        pc=re.search(r'prev_comm=(.+?) prev_pid',rest).group(1)
        if np_ in pend:
            t0,c=pend.pop(np_); lat[c[:12]].append((t-t0,pc))
for c,v in sorted(lat.items(), key=lambda kv:-len(kv[1]))[:10]:
    xs=sorted(x for x,_ in v); n=len(xs)
    big=collections.Counter(p[:12] for x,p in v if x>1000)
    print(f"{c:14s} n={n:5d} p50={xs[n//2]:7.0f} p90={xs[int(n*.9)]:7.0f} p99={xs[int(n*.99)]:7.0f} >1ms={sum(1 for x in xs if x>1000)}  preempted-by(after >1ms waits)={dict(big.most_common(4))}")
