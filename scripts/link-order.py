#!/usr/bin/env python3
"""Writes crates/launcher/link-order.txt and crates/core/link-order.txt: the functions that the
launcher and hubcore run in their steady state, found on a live hub (see the hivehub-memory
crate for why their order matters).

Run as root on x86_64 (uprobes through /sys/kernel/tracing) after a release build:

    cargo build --release -p hivehub-launcher -p hivehub-core -p hivehub-cli --bins
    sudo scripts/link-order.py

It starts a hub of N plugins with credentials (`--n`, 100) and lets its start finish
unobserved, then puts a uprobe on the entry of every function of both binaries and, for
`--secs` (40), lets it idle while every 5 s `hubcli launcher ls` (plain and --json, through the
core's socket as by default, and once over TLS as a remote client would) and `hubcli launcher
status` run and one plugin is killed and restarted. A function whose probe fired is
listed, in address order. Rebuild afterwards: the build scripts give the lists to the linker.
Run it again after a change of dependencies, which renames most generic functions.

Under the probes, `hubcli` over TLS fails with "cannot decrypt peer's message" in some runs
(probes on *ring*'s hand-written assembly, it seems; it works without them); the functions of
its handshake and login are recorded all the same.

The lists are written within about two minutes; removing the probes afterwards takes the kernel
about 15 more (an RCU grace period for each), during which fork() is slow: measure nothing until
/sys/kernel/tracing/uprobe_events is empty.
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

TRACING = "/sys/kernel/tracing"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def functions(binary):
    """(file offset, symbol) of every function in the executable LOAD segment of `binary`."""
    seg = None
    for line in subprocess.run(["readelf", "-lW", binary], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        f = line.split()
        if f and f[0] == "LOAD" and "E" in "".join(f[6:-1]):
            seg = (int(f[2], 16), int(f[1], 16), int(f[5], 16))  # vaddr, offset, size
    if seg is None:
        sys.exit(f"{binary}: no executable segment")
    vaddr, offset, size = seg
    out, seen = [], set()
    for line in subprocess.run(["nm", "-n", "--defined-only", binary], capture_output=True,
                               text=True, check=True).stdout.splitlines():
        f = line.split()
        if len(f) != 3 or f[1] not in "tTwW":
            continue
        a = int(f[0], 16)
        if vaddr <= a < vaddr + size and a not in seen:
            seen.add(a)
            out.append((a - vaddr + offset, f[2]))
    return out


def add_probes(group, binary):
    fns = functions(binary)
    fd = os.open(f"{TRACING}/uprobe_events", os.O_WRONLY | os.O_APPEND)
    for i, (off, _) in enumerate(fns):
        # One write per probe: the kernel parses each write on its own.
        os.write(fd, f"p:{group}/f{i} {binary}:0x{off:x}\n".encode())
    os.close(fd)
    return [name for _, name in fns]


def set_enabled(group, n, on):
    failed = 0
    for i in range(n):
        try:
            with open(f"{TRACING}/events/{group}/f{i}/enable", "w") as f:
                f.write("1" if on else "0")
        except OSError:
            failed += 1  # an instruction uprobes cannot step over
    return failed


def hits(binary):
    """Hit count of every probe on `binary`, by index (uprobe_profile: path, event, count)."""
    counts = {}
    with open(f"{TRACING}/uprobe_profile") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[0] == binary and parts[1].startswith("f"):
                counts[int(parts[1][1:])] = int(parts[2])
    return counts


def remove_probes():
    with open(f"{TRACING}/uprobe_events", "w") as f:
        f.write("")


def make_home(home, n, release):
    os.makedirs(f"{home}/bin")
    os.makedirs(f"{home}/config")
    os.makedirs(f"{home}/plugins")
    for b in ("launcher", "hubcore"):
        shutil.copy2(f"{release}/{b}", f"{home}/bin/{b}")
    names = [f"p{i:03}" for i in range(1, n + 1)]
    for name in names:
        p = f"{home}/plugins/{name}"
        with open(p, "w") as f:
            f.write("#!/bin/sh\nexec sleep 1000000\n")
        os.chmod(p, 0o755)
    with open(f"{home}/config/launcher.yaml", "w") as f:
        f.write("core: hubcore\nautorestart: always\ncreatePluginCred: true\nautostart:\n")
        f.write("".join(f"  - {x}\n" for x in names))
        f.write('plugins:\n  hubcore:\n    args: ["--listen", "127.0.0.1:0"]\n')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--secs", type=int, default=40)
    ap.add_argument("--release", default=f"{ROOT}/target/release")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: uprobes are set through /sys/kernel/tracing")
    tmp = tempfile.mkdtemp(prefix="hivehub-link-order-")
    os.chmod(tmp, 0o711)
    home = f"{tmp}/home"
    make_home(home, args.n, args.release)
    remove_probes()
    groups = {"hl": f"{home}/bin/launcher", "hc": f"{home}/bin/hubcore"}
    names = {g: add_probes(g, b) for g, b in groups.items()}
    log = open(f"{tmp}/launcher.out", "w")
    launcher = subprocess.Popen([groups["hl"], "--home", home], stdout=log, stderr=log,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "launcher ready" not in open(f"{tmp}/launcher.out").read():
            if time.monotonic() > deadline or launcher.poll() is not None:
                sys.exit("the launcher did not get ready:\n" + open(f"{tmp}/launcher.out").read())
            time.sleep(0.05)
        # The start is not observed: past the core's own release of its start (10 s).
        time.sleep(12)
        for g in groups:
            failed = set_enabled(g, len(names[g]), True)
            print(f"{g}: {len(names[g])} probes, {failed} not placed", file=sys.stderr)
        base = {g: hits(b) for g, b in groups.items()}
        hubcli = [f"{args.release}/hubcli", "--home", home, "launcher"]
        url = open(f"{home}/run/hubcore.url").read().strip()
        tls = [f"{args.release}/hubcli", "--home", home, "--server", url, "launcher"]
        for _ in range(max(1, args.secs // 5)):
            time.sleep(5)
            for cmd in (hubcli + ["ls"], hubcli + ["ls", "--json"], tls + ["ls"],
                        hubcli + ["status", "p001"]):
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    # The list would miss the login and the request: say so, do not hide it.
                    print(f"{' '.join(cmd[-3:])} failed ({r.returncode}): {r.stderr.strip()}",
                          file=sys.stderr)
            subprocess.run(["pkill", "-9", "-n", "-f", "^sleep 1000000$"])
        after = {g: hits(b) for g, b in groups.items()}
        for g, crate in (("hl", "launcher"), ("hc", "core")):
            ran = [names[g][i] for i in sorted(after[g]) if after[g][i] > base[g].get(i, 0)]
            out = f"{ROOT}/crates/{crate}/link-order.txt"
            with open(out, "w") as f:
                f.write("".join(n + "\n" for n in dict.fromkeys(ran)))
            print(f"{out}: {len(ran)} functions", file=sys.stderr)
    finally:
        launcher.send_signal(signal.SIGTERM)
        launcher.wait(timeout=60)
        # Slow: the kernel waits for an RCU grace period at every probe (minutes).
        print("removing the probes", file=sys.stderr)
        for g in groups:
            set_enabled(g, len(names[g]), False)
        remove_probes()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
