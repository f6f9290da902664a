#!/usr/bin/python3
"""CPU seconds used by a server process and every process it forks, during one run.

Usage: cpu_sampler.py PID  (prints the CPU seconds on stdout when it gets SIGTERM)

Why a sampler: sshd and vsftpd do the work of a connection in forked children,
and some of those are never wait()ed for by a process we can see (a parent that
ignores SIGCHLD lets the kernel reap them), so their time never reaches the
server's cutime/cstime and /proc/<pid>/stat alone undercounts them by far.
Every 10 ms this walks the process tree under PID and remembers, per process,
the last utime+stime it saw. The result is the server's own utime+stime delta
plus the last-seen time of every descendant. A descendant loses at most its last
10 ms; one that lives less than 10 ms between two samples is missed (only login
cases fork such short processes, and those are not reported per GiB)."""
import os, signal, sys, time

root = int(sys.argv[1])
tick = os.sysconf("SC_CLK_TCK")


def own_ticks(pid):
    """utime+stime of a process (fields 14 and 15 of /proc/pid/stat), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def children(pid):
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    return found


start = own_ticks(root) or 0
last_root = start
seen = {}  # descendant pid -> last utime+stime
running = True


def stop(_signum, _frame):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
while running:
    t = own_ticks(root)
    if t is None:
        break  # the server is gone (bench/run.sh interrupted): report what was seen
    last_root = t
    stack = children(root)
    while stack:
        pid = stack.pop()
        t = own_ticks(pid)
        if t is not None:
            seen[pid] = t
        stack.extend(children(pid))
    time.sleep(0.01)

print(f"{(last_root - start + sum(seen.values())) / tick:.2f}")
