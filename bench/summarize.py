#!/usr/bin/python3
"""Reads the raw runs (JSON lines) written by bench/run.sh, writes
bench/results/<date>-<host>.json with the machine description and every raw run,
and prints a Markdown table of medians and Portcullis/peer ratios."""
import json, os, platform, statistics, sys

raw_path, out_path = os.environ["BENCH_RAW"], os.environ["BENCH_OUT"]
runs = [json.loads(l) for l in open(raw_path) if l.strip()]
failed = [r for r in runs if not r.get("ok", True)]
runs = [r for r in runs if r.get("ok", True)]

def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"

def mem_total():
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal"):
            return line.split(":", 1)[1].strip()

machine = {
    "nproc": os.cpu_count(), "memory": mem_total(), "kernel": platform.release(),
    "cpu": cpu_model(), "node": os.environ.get("BENCH_NODE"),
    "openssh": os.environ.get("BENCH_OPENSSH"), "vsftpd": os.environ.get("BENCH_VSFTPD"),
    "portcullis": os.environ.get("BENCH_PORTCULLIS"),
}
params = {k: int(os.environ[v]) for k, v in [("size_mib", "BENCH_SIZE_MIB"), ("runs", "BENCH_RUNS"),
          ("small_files", "BENCH_SMALL_FILES"), ("logins", "BENCH_LOGINS"), ("concurrent", "BENCH_CONCURRENT"),
          ("concurrent_mib", "BENCH_CONCURRENT_MIB"), ("elapsed_s", "BENCH_ELAPSED")]}
# With BENCH_SSH2_FLOOR, the "portcullis" side is bench/ssh2-floor.mjs in that mode.
if os.environ.get("BENCH_SSH2_FLOOR"):
    params["ssh2_floor"] = os.environ["BENCH_SSH2_FLOOR"]
mem_path = os.environ.get("BENCH_MEMORY")
memory = [json.loads(l) for l in open(mem_path) if l.strip()] if mem_path and os.path.exists(mem_path) else []
for m in memory:
    m["kib_per_session"] = (m["pss_after_kib"] - m["pss_before_kib"]) / m["sessions"] if m["sessions"] else None
    m["rss_kib_per_session"] = ((m["rss_after_kib"] - m["rss_before_kib"]) / m["sessions"]
                                if m["sessions"] and "rss_after_kib" in m else None)

PEER = {"ftp": "vsftpd"}
cases, summary = [], []
for r in runs:
    if r["case"] not in cases:
        cases.append(r["case"])
for c in cases:
    row = {"case": c, "peer_name": "vsftpd" if c.startswith("ftp") else "OpenSSH sshd"}
    for side in ("portcullis", "peer"):
        rs = [r for r in runs if r["case"] == c and r["side"] == side and r["run"] > 0]
        # client_cpu_s: runs recorded before bench/run.sh measured the clients have none
        client = [r["client_cpu_s"] for r in rs if "client_cpu_s" in r]
        row[side] = {"n": len(rs),
                     "wall_s": statistics.median(r["wall_s"] for r in rs) if rs else None,
                     "cpu_s": statistics.median(r["cpu_s"] for r in rs) if rs else None,
                     "client_cpu_s": statistics.median(client) if client else None}
        b = rs[0]["bytes"] if rs else 0
        if b and row[side]["wall_s"]:
            row[side]["mib_s"] = b / 1048576 / row[side]["wall_s"]
        if b >= 1048576 * 8:
            for key in ("cpu_s", "client_cpu_s"):
                if row[side][key] is not None:
                    row[side][key + "_per_gib"] = row[side][key] / (b / 1073741824)
    p, q = row["portcullis"], row["peer"]
    # speed ratio: peer time / Portcullis time (>1: Portcullis faster)
    row["speed_ratio"] = q["wall_s"] / p["wall_s"] if p["wall_s"] and q["wall_s"] else None
    # the medians of per-pair ratios too (run i of A vs run i of B)
    pairs = []
    for i in range(1, max(p["n"], q["n"]) + 1):
        a = [r for r in runs if r["case"] == c and r["side"] == "portcullis" and r["run"] == i]
        b2 = [r for r in runs if r["case"] == c and r["side"] == "peer" and r["run"] == i]
        if a and b2 and a[0]["wall_s"] > 0:
            pairs.append(b2[0]["wall_s"] / a[0]["wall_s"])
    row["median_pair_speed_ratio"] = statistics.median(pairs) if pairs else None
    row["cpu_ratio"] = p["cpu_s"] / q["cpu_s"] if p["cpu_s"] and q["cpu_s"] else None
    summary.append(row)

os.makedirs(os.path.dirname(out_path), exist_ok=True)
with open(out_path, "w") as f:
    json.dump({"machine": machine, "params": params, "summary": summary, "memory": memory, "runs": runs,
               "failed_runs": failed}, f, indent=1)
    f.write("\n")

def fmt(x, d=2):
    return "—" if x is None else f"{x:.{d}f}"

print(f"\nResults: {out_path}")
print(f"Machine: {machine['cpu']}, {machine['nproc']} CPUs, {machine['memory']}, Linux {machine['kernel']}, "
      f"Node {machine['node']}, {machine['openssh']}, vsftpd {machine['vsftpd']}")
print(f"Size {params['size_mib']} MiB, {params['runs']} runs per side after 1 warm-up, "
      f"{params['small_files']} small files, {params['logins']} logins; total {params['elapsed_s']} s\n")
if "ssh2_floor" in params:
    print(f"The Portcullis columns are bench/ssh2-floor.mjs ({params['ssh2_floor']} file calls), not Portcullis.\n")
print("| case | peer | Portcullis wall s | peer wall s | Portcullis MiB/s | peer MiB/s | speed ratio P/peer (>1 P faster) | Portcullis CPU s | peer CPU s | CPU s/GiB P | CPU s/GiB peer | client CPU s with P | client CPU s with peer |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in summary:
    p, q = r["portcullis"], r["peer"]
    print(f"| {r['case']} | {r['peer_name']} | {fmt(p['wall_s'])} | {fmt(q['wall_s'])} | {fmt(p.get('mib_s'), 1)} | "
          f"{fmt(q.get('mib_s'), 1)} | {fmt(r['speed_ratio'])} | {fmt(p['cpu_s'])} | {fmt(q['cpu_s'])} | "
          f"{fmt(p.get('cpu_s_per_gib'))} | {fmt(q.get('cpu_s_per_gib'))} | {fmt(p['client_cpu_s'])} | {fmt(q['client_cpu_s'])} |")

if memory:
    print("\n| idle SFTP sessions | server | sessions up | failed | PSS before MiB | PSS after MiB | PSS KiB per session | RSS KiB per session |")
    print("|---|---|---|---|---|---|---|---|")
    for m in memory:
        name = "Portcullis" if m["side"] == "portcullis" else "OpenSSH sshd (RSS counts shared pages per process)"
        print(f"| memory | {name} | {m['sessions']} | {m['failed']} | {m['pss_before_kib'] / 1024:.1f} | "
              f"{m['pss_after_kib'] / 1024:.1f} | {fmt(m['kib_per_session'], 1)} | {fmt(m.get('rss_kib_per_session'), 1)} |")

# A failed run (a client error, or wrong bytes found by run.sh's verify_case) is
# in no median above: list it, and fail the bench, so that no one reads a table
# with missing runs as a clean one.
if failed:
    print("\nFailed runs, left out of the medians above:")
    for r in failed:
        print(f"- {r['case']} {r['side']} run {r['run']}")
    sys.exit(1)
