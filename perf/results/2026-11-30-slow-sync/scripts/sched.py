import re,sys,collections
f=sys.argv[1]
line_re=re.compile(r'^\s*(.+?)-(\d+)\s+\[(\d+)\]\s+\S+\s+([\d.]+): (\w+)(.*)$')
flus=None
evs=[]
for l in open(f):
    m=line_re.match(l)
    if not m: continue
    comm,pid,cpu,ts,ev,rest=m.groups(); evs.append((float(ts)*1e6,int(pid),ev,rest,comm,int(cpu)))
# find flusher pid
import collections as C
cnt=C.Counter(pid for t,pid,ev,rest,comm,cpu in evs if ev=='sys_fdatasync' and '->' not in rest)
flus=cnt.most_common(1)[0][0]
# per sync accounting
state='run'; since=None; insync=None; acc=None; syncs=[]
wait_kinds=collections.Counter()
for t,pid,ev,rest,comm,cpu in evs:
    if ev=='sys_enter_fdatasync' or (ev.startswith('sys_fdatasync') and '->' not in rest) :
        pass
    if pid==flus and ev=='sys_fdatasync' and '->' not in rest:
        insync=t; acc={'blocked':0,'runq':0,'oncpu_start':t,'preempt':0}
    elif pid==flus and ev=='sys_fdatasync' and '->' in rest and insync:
        acc['total']=t-insync; syncs.append(acc); insync=None
    if ev=='sched_switch':
        pp=int(re.search(r'prev_pid=(\d+)',rest).group(1)); np_=int(re.search(r'next_pid=(\d+)',rest).group(1))
        if pp==flus:
            st=re.search(r'prev_state=(\S+)',rest).group(1)
            state='R' if st.startswith('R') else 'B'; since=t
        if np_==flus and since is not None:
            if insync and acc: acc['runq' if state in('R','W') else 'blocked']+=t-since
            if state=='R' and insync and acc: acc['preempt']+=1
            state='run'
    if ev=='sched_wakeup' and re.search(r'pid=%d '%flus,rest) and state=='B':
        if insync and acc: acc['blocked']+=t-since
        state='W'; since=t
n=len(syncs)
import statistics as S
def q(v,p): v=sorted(v); return v[min(len(v)-1,int(p*len(v)))]
for k in ['total','blocked','runq']:
    v=[s[k] for s in syncs]
    print(f"{k:8s} n={n} mean={S.mean(v):8.1f} p50={q(v,.5):8.1f} p90={q(v,.9):8.1f} p99={q(v,.99):8.1f} µs")
print("syncs with a preemption:",sum(1 for s in syncs if s['preempt']))
