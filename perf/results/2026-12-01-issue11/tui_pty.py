#!/usr/bin/env python3
"""Runs `rewardpool tui --connect TARGET --refresh-ms MS` in a pseudo-terminal (100 x 32),
drains its output, and measures its CPU time over a window: from SETTLE seconds after the
start, WINDOW seconds long (utime + stime of every thread, /proc/PID/stat). Then types `q`
and reaps it (exit code; total CPU from wait4's rusage). Prints one JSON line.
  tui_pty.py BIN TARGET REFRESH_MS SETTLE WINDOW"""
import fcntl, json, os, pty, select, struct, sys, termios, time

binary, target, refresh, settle, window = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
pid, fd = pty.fork()
if pid == 0:
    os.execv(binary, [binary, "tui", "--connect", target, "--refresh-ms", refresh])
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 32, 100, 0, 0))
hz = os.sysconf("SC_CLK_TCK")
out = bytearray()

def ticks():
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)

def drain(until):
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            out.extend(chunk)

start = time.monotonic()
drain(start + settle)
t0, w0 = ticks(), time.monotonic()
drain(w0 + window)
t1, w1 = ticks(), time.monotonic()
os.write(fd, b"q\r")
drain(time.monotonic() + 2)
_, status, usage = os.wait4(pid, 0)
cpu = (t1 - t0) / hz
print(json.dumps({
    "window_s": round(w1 - w0, 3),
    "cpu_s": cpu,
    "cpu_pct_of_core": round(100 * cpu / (w1 - w0), 2),
    "total_cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
    "total_wall_s": round(time.monotonic() - start, 3),
    "exit": os.waitstatus_to_exitcode(status),
    "output_bytes": len(out),
    "bytes_per_s": round(len(out) / (time.monotonic() - start)),
    "left_alt_screen_last": bytes(out).rstrip().endswith(b"\x1b[?1049l"),
}))
