#!/usr/bin/python3
"""A job queue through crashes (issue 18): producers LPUSH unique jobs onto a list, consumers take
them with BRPOPLPUSH onto a processing list of their own and finish them with LREM (the reliable
queue pattern of Bull, RQ and Sidekiq). keg-server runs under `appendfsync always` and is SIGKILLed
at a random moment of each cycle, then restarted; after the restart:

- no job is in two places (the queue and a processing list, or two processing lists) or twice in
  one: a pop that was acknowledged is not undone, a move never copies;
- every job whose LPUSH was acknowledged is still in the queue or a processing list, unless its
  LREM was sent (acknowledged: it must be gone; in flight: either);
- a job whose BRPOPLPUSH was acknowledged is not back in the queue;
- nothing is there that no producer sent.

Half the cycles convert the lists to per element at 4 elements (list-max-listpack-size 4), the
others at keg's default 128, so both the whole records and the conversion are crashed into; data
files are small, so compaction runs under the load.

Usage: queue_crash.py [--server BIN] [--cycles N] [--seed N]. Exit status 0 when every check passed.
"""
import argparse
import os
import random
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import resp  # noqa: E402
from server import Keg  # noqa: E402


class Cycle:
    """The books of one cycle, on keys of its own (queue:N, processing:N:C)."""

    def __init__(self, n, consumers):
        self.queue = f"queue:{n}"
        self.processing = [f"processing:{n}:{c}" for c in range(consumers)]
        self.lock = threading.Lock()
        self.sent = set()        # LPUSH sent
        self.pushed = set()      # LPUSH acknowledged
        self.delivered = set()   # BRPOPLPUSH acknowledged with this job
        self.finishing = set()   # LREM sent
        self.finished = set()    # LREM acknowledged (removed one)
        self.stop = threading.Event()


def producer(port, cyc, p, rng):
    try:
        c = resp.Conn(port, timeout=10)
        seq = 0
        while not cyc.stop.is_set():
            batch = [f"job:{p}:{seq + i}" for i in range(rng.randint(1, 3))]
            seq += len(batch)
            with cyc.lock:
                cyc.sent.update(batch)
            c.call("LPUSH", cyc.queue, *batch)
            with cyc.lock:
                cyc.pushed.update(batch)
    except (OSError, ConnectionError, resp.ReplyError):
        return  # the server died


def consumer(port, cyc, i):
    mine = cyc.processing[i]
    try:
        c = resp.Conn(port, timeout=10)
        while not cyc.stop.is_set():
            job = c.call("BRPOPLPUSH", cyc.queue, mine, "0.2")
            if job is None:
                continue
            job = job.decode()
            with cyc.lock:
                cyc.delivered.add(job)
                cyc.finishing.add(job)
            if c.call("LREM", mine, "1", job) == 1:
                with cyc.lock:
                    cyc.finished.add(job)
    except (OSError, ConnectionError, resp.ReplyError):
        return


def verify(keg, cyc, failures):
    where = {}
    duplicates = []
    for key in [cyc.queue] + cyc.processing:
        for e in keg.call("LRANGE", key, "0", "-1"):
            job = e.decode()
            if job in where:
                duplicates.append((job, where[job], key))
            where[job] = key
    bad = []
    if duplicates:
        bad.append(f"{len(duplicates)} jobs in two places or twice, e.g. {duplicates[:3]}")
    unknown = [j for j in where if j not in cyc.sent]
    if unknown:
        bad.append(f"{len(unknown)} jobs nobody sent, e.g. {unknown[:3]}")
    lost = [j for j in cyc.pushed if j not in where and j not in cyc.finishing]
    if lost:
        bad.append(f"{len(lost)} acknowledged jobs lost, e.g. {sorted(lost)[:3]}")
    resurrected = [j for j in cyc.finished if j in where]
    if resurrected:
        bad.append(f"{len(resurrected)} finished jobs back, e.g. {resurrected[:3]}")
    requeued = [j for j in cyc.delivered if where.get(j) == cyc.queue]
    if requeued:
        bad.append(f"{len(requeued)} delivered jobs back in the queue, e.g. {requeued[:3]}")
    failures.extend(bad)
    return len(where), bad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default=os.environ.get("KEG_SERVER", "keg-server"))
    ap.add_argument("--cycles", type=int, default=8)
    ap.add_argument("--seed", type=int, default=random.randrange(1 << 30))
    ap.add_argument("--producers", type=int, default=3)
    ap.add_argument("--consumers", type=int, default=3)
    opts = ap.parse_args()
    os.environ["KEG_SERVER"] = opts.server
    rng = random.Random(opts.seed)
    print(f"queue_crash: seed {opts.seed}", flush=True)
    work = tempfile.mkdtemp(prefix="keg_queue_crash_")
    failures = []
    totals = {"pushed": 0, "delivered": 0, "finished": 0}
    try:
        data = os.path.join(work, "data")
        for n in range(opts.cycles):
            per_element = n % 2 == 0
            keg = Keg(data, "--appendfsync", "always", "--data-file-size", "1mb",
                      "--compaction-frag-trigger", "40",
                      *(["--list-max-listpack-size", "4"] if per_element else []),
                      log=os.path.join(work, "server.log"))
            keg.start()
            cyc = Cycle(n, opts.consumers)
            threads = [threading.Thread(target=producer, args=(keg.port, cyc, p, random.Random(rng.random())))
                       for p in range(opts.producers)]
            threads += [threading.Thread(target=consumer, args=(keg.port, cyc, i)) for i in range(opts.consumers)]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.5, 1.5))
            keg.kill()  # SIGKILL, under load
            cyc.stop.set()
            for t in threads:
                t.join(30)
            keg.start()
            present, bad = verify(keg, cyc, failures)
            keg.stop()
            totals["pushed"] += len(cyc.pushed)
            totals["delivered"] += len(cyc.delivered)
            totals["finished"] += len(cyc.finished)
            print(f"cycle {n} ({'per element at 4' if per_element else 'whole up to 128'}): {len(cyc.pushed)} pushed, "
                  f"{len(cyc.delivered)} delivered, {len(cyc.finished)} finished, {present} present after "
                  f"the restart{': ' + '; '.join(bad) if bad else ''}", flush=True)
            if cyc.pushed == set() or cyc.delivered == set():
                failures.append(f"cycle {n}: no load reached the server (pushed {len(cyc.pushed)}, "
                                f"delivered {len(cyc.delivered)})")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"queue_crash: {opts.cycles} cycles, {totals['pushed']} jobs pushed, {totals['delivered']} delivered, "
          f"{totals['finished']} finished; {'FAILED' if failures else 'no acknowledged job lost or duplicated'}")
    for f in failures:
        print("  " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
