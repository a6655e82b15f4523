"""Turns a killed keg-server's data directory into what a power cut at that moment would leave,
from the journal of tests/reliability/fault_shim.c.

Journal records (one per line, in the order the calls returned):
  B name size          baseline: the file existed, durable, before the server started
  C name               created
  S name size          fsync / fdatasync of the file returned: `size` bytes are durable
  T name length        truncated
  R from to stash      renamed (stash: the replaced file's copy, 0 when nothing was replaced)
  U name stash         unlinked (stash: its copy)
  X                    the R or U just before failed
R and U are written before their call (a kill right after the call must not hide it); the last one
is checked against the disk.
  D                    fsync of the directory returned: every name operation before it is durable

A power cut keeps each file's synced bytes and may keep any prefix of the unsynced ones (write-back
in order), so the tail is cut at the synced size or at a random point after it. Name operations not
covered by a directory fsync are undone from the newest back to a random point (a file system that
orders metadata keeps a prefix of them); on top of that, a random subset of the remaining pending
unlinks is undone (one that does not).
"""
import os


def baseline(data_dir, journal):
    """Starts a new journal: every file now in data_dir is durable as it is."""
    with open(journal, "w") as j:
        for name in sorted(os.listdir(data_dir)) if os.path.isdir(data_dir) else []:
            path = os.path.join(data_dir, name)
            if os.path.isfile(path):
                j.write(f"B {name} {os.path.getsize(path)}\n")


def power_cut(data_dir, journal, stash, rng):
    synced = {}    # name -> durable size
    pending = []   # name operations since the last directory fsync
    with open(journal) as j:
        lines = [l for l in j.read().splitlines() if l.split()]
    # R and U are journaled before their call: drop one cancelled by "X" (the call failed), and
    # the last one when the disk shows it did not happen (the kill came first).
    kept = []
    for line in lines:
        if line == "X":
            if kept and kept[-1][0] in "RU":
                kept.pop()
        else:
            kept.append(line)
    if kept and kept[-1][0] in "RU":
        f = kept[-1].split()
        if os.path.exists(os.path.join(data_dir, f[1])):  # the source is gone once it happened
            kept.pop()
    for line in kept:
        f = line.split()
        op = f[0]
        if op == "B":
            synced[f[1]] = int(f[2])
        elif op == "C":
            synced[f[1]] = 0
            pending.append(("C", f[1]))
        elif op == "S":
            synced[f[1]] = int(f[2])
        elif op == "T":
            synced[f[1]] = min(synced.get(f[1], 0), int(f[2]))
        elif op == "R":
            replaced = synced.get(f[2])
            synced[f[2]] = synced.pop(f[1], 0)
            pending.append(("R", f[1], f[2], f[3], replaced))
        elif op == "U":
            pending.append(("U", f[1], f[2], synced.pop(f[1], 0)))
        elif op == "D":
            pending = []
    undone = []
    keep = rng.randint(0, len(pending))  # name operations that reached the disk: a prefix ...
    for p in reversed(pending[keep:]):
        undo(data_dir, stash, synced, p)
        undone.append(p[0])
    for p in reversed(pending[:keep]):  # ... and maybe not every unlink of it
        if p[0] == "U" and rng.random() < 0.5:
            undo(data_dir, stash, synced, p)
            undone.append("U")
    for name in os.listdir(data_dir):
        path = os.path.join(data_dir, name)
        if not os.path.isfile(path):
            continue
        size = os.path.getsize(path)
        durable = synced.get(name, 0)
        if size > durable:
            cut = durable if rng.random() < 0.5 else rng.randint(durable, size)
            os.truncate(path, cut)
    for name in os.listdir(stash):
        os.unlink(os.path.join(stash, name))
    return undone


def stash_path(stash, number):
    for name in os.listdir(stash):
        if name.endswith(f"-{number}"):
            return os.path.join(stash, name)
    return None


def undo(data_dir, stash, synced, p):
    if p[0] == "C":
        path = os.path.join(data_dir, p[1])
        if os.path.exists(path):
            os.unlink(path)
        synced.pop(p[1], None)
    elif p[0] == "R":
        _, old, new, number, replaced = p
        if os.path.exists(os.path.join(data_dir, new)):
            os.rename(os.path.join(data_dir, new), os.path.join(data_dir, old))
        synced[old] = synced.pop(new, 0)
        copy = stash_path(stash, number) if number != "0" else None
        if copy is not None:
            os.link(copy, os.path.join(data_dir, new))
            synced[new] = replaced or 0
    elif p[0] == "U":
        _, name, number, size = p
        copy = stash_path(stash, number) if number != "0" else None
        if copy is not None and not os.path.exists(os.path.join(data_dir, name)):
            os.link(copy, os.path.join(data_dir, name))
            synced[name] = size
