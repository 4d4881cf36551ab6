import os,sys,time
mode=sys.argv[1]; end=time.time()+float(sys.argv[2])
while time.time()<end:
    if mode=='yield': os.sched_yield()
    elif mode=='park': time.sleep(0.00005)
