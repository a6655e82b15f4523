#!/usr/bin/python3
"""Model-based test: random command sequences (strings, hashes, sets, lists, sorted sets) against
keg-server and an in-memory model of what Redis would answer, with restarts (graceful, and SIGKILL under appendfsync always),
compactions and page-cache drops (the cold-read path) in between. Every reply is compared with the model's; the first divergence fails the
run and prints the seed and the step, which reproduce it:

    model.py --seed S --steps N        (KEG_SERVER names the binary)

Keys come from a small pool so commands keep meeting each other's keys; values are binary. TTLs
are long (they never run out during a run) or in the past (the key goes at once).
"""
import argparse
import os
import random
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import resp  # noqa: E402
from server import Keg  # noqa: E402

NOT_INT = "ERR value is not an integer or out of range"
WRONGTYPE = resp.ReplyError("WRONGTYPE Operation against a key holding the wrong kind of value")
DUMPED = object()  # any bulk string: a DUMP payload


DBS = 4  # of keg's 16: the commands below move keys between these


class Z(dict):
    """A sorted set in the model: member -> score (a dict subclass of its own, so it is not taken
    for a hash)."""


def fmt_score(d):
    """A score as Redis replies it in RESP2 ("%.17g")."""
    return ("%.17g" % d).encode()


def zorder(z):
    return sorted(z.items(), key=lambda kv: (kv[1], kv[0]))


class Model:
    """Databases 0..DBS-1, each key -> value (bytes) and the keys with an expiry (all far in
    the future); `db` is the connection's (SELECT; 0 again after a reconnect)."""

    def __init__(self):
        self.dbs = [({}, set()) for _ in range(DBS)]
        self.db = 0

    @property
    def data(self):
        return self.dbs[self.db][0]

    @property
    def ttl(self):
        return self.dbs[self.db][1]

    def delete(self, k):
        self.data.pop(k, None)
        self.ttl.discard(k)

    def set(self, k, v, keep_ttl=False):
        # Collections are copied: a value copied to another key (COPY, RENAME) is its own.
        self.data[k] = (Z(v) if isinstance(v, Z) else dict(v) if isinstance(v, dict) else set(v) if isinstance(v, set)
                        else list(v) if isinstance(v, list) else v)
        if not keep_ttl:
            self.ttl.discard(k)


def value(rng):
    r = rng.random()
    if r < 0.3:
        return str(rng.randint(-1000, 1000)).encode()
    n = rng.choice([0, 1, 5, 20, 100, 3000, 20000])
    return bytes(rng.getrandbits(8) for _ in range(min(n, 64))) * max(1, n // 64)


def step(rng, m, keys):
    """One random command and the reply the model expects: (args, expected). An expected
    resp.ReplyError compares by text; TTL is checked by range."""
    k = rng.choice(keys)
    k2 = rng.choice(keys)
    cur = m.data.get(k)
    # A string command on a hash or set answers WRONGTYPE and changes nothing.
    wrong = isinstance(cur, (dict, set, list))
    r = rng.randrange(40)
    if r in (2, 3, 6, 7, 8, 9, 19, 20, 21, 25, 26) and wrong:
        return {2: ("SET", k, b"v", "XX", "GET"), 3: ("GET", k), 6: ("INCRBY", k, 1), 7: ("APPEND", k, b"x"),
                8: ("STRLEN", k), 9: ("GETDEL", k), 19: ("SETBIT", k, 1, 1), 20: ("GETBIT", k, 1),
                21: ("BITCOUNT", k), 25: ("SETRANGE", k, 1, b"x"), 26: ("GETSET", k, b"v")}[r], WRONGTYPE
    if r >= 36:
        return list_zset_step(rng, m, k, cur, r)
    if r >= 31:
        return collection_step(rng, m, k, cur, r)
    if r == 0:
        v = value(rng)
        m.set(k, v)
        return ("SET", k, v), b"OK"
    if r == 1:
        v = value(rng)
        if cur is None:
            m.set(k, v)
            return ("SET", k, v, "NX"), b"OK"
        return ("SET", k, v, "NX"), None
    if r == 2:
        v = value(rng)
        if cur is None:
            return ("SET", k, v, "XX", "GET"), None
        m.set(k, v)
        return ("SET", k, v, "XX", "GET"), cur
    if r == 3:
        return ("GET", k), cur
    if r == 4:
        ks = rng.sample(keys, rng.randint(1, 3))
        n = sum(1 for x in ks if x in m.data)
        for x in ks:
            m.delete(x)
        return ("DEL", *ks), n
    if r == 5:
        ks = [rng.choice(keys) for _ in range(rng.randint(1, 3))]
        return ("EXISTS", *ks), sum(1 for x in ks if x in m.data)
    if r == 6:
        by = rng.randint(-5, 5)
        if cur is None:
            cur = b"0"
        try:
            n = int(cur)
            if str(n).encode() != cur:
                raise ValueError
        except ValueError:
            return ("INCRBY", k, by), resp.ReplyError(NOT_INT)
        m.set(k, str(n + by).encode(), keep_ttl=True)
        return ("INCRBY", k, by), n + by
    if r == 7:
        v = value(rng)
        new = (cur or b"") + v
        m.set(k, new, keep_ttl=True)
        return ("APPEND", k, v), len(new)
    if r == 8:
        return ("STRLEN", k), len(cur or b"")
    if r == 9:
        m.delete(k)
        return ("GETDEL", k), cur
    if r == 10:
        pairs = {x: value(rng) for x in rng.sample(keys, rng.randint(1, 3))}
        args = ["MSET"]
        for x, v in pairs.items():
            m.set(x, v)
            args += [x, v]
        return tuple(args), b"OK"
    if r == 11:
        ks = [rng.choice(keys) for _ in range(rng.randint(1, 4))]
        return ("MGET", *ks), [m.data.get(x) if isinstance(m.data.get(x), bytes) else None for x in ks]
    if r == 12:
        if cur is None:
            return ("EXPIRE", k, 100000), 0
        m.ttl.add(k)
        return ("EXPIRE", k, 100000), 1
    if r == 13:
        if cur is None:
            return ("EXPIRE", k, -1), 0
        m.delete(k)
        return ("EXPIRE", k, -1), 1
    if r == 14:
        had = k in m.ttl
        m.ttl.discard(k)
        return ("PERSIST", k), 1 if had and cur is not None else 0
    if r == 15:
        if cur is None:
            return ("TTL", k), -2
        return ("TTL", k), (99990, 100000) if k in m.ttl else -1
    if r == 16:
        if cur is None:
            return ("RENAME", k, k2), resp.ReplyError("ERR no such key")
        had = k in m.ttl
        m.delete(k)
        m.set(k2, cur)
        if had:
            m.ttl.add(k2)
        return ("RENAME", k, k2), b"OK"
    if r == 17:
        return ("DBSIZE",), len(m.data)
    if r == 18:
        if wrong:
            return ("GET", k), WRONGTYPE
        if rng.random() < 0.2:  # rare: the model rebuilds state after it
            if rng.random() < 0.3:
                for data, ttl in m.dbs:
                    data.clear()
                    ttl.clear()
                return ("FLUSHALL",), b"OK"
            m.data.clear()
            m.ttl.clear()
            return ("FLUSHDB",), b"OK"
        return ("GET", k), cur
    if r == 27:
        m.db = rng.randrange(DBS)
        return ("SELECT", m.db), b"OK"
    if r == 28:
        to = rng.randrange(DBS)
        if to == m.db:
            return ("MOVE", k, to), resp.ReplyError("ERR source and destination objects are the same")
        there = m.dbs[to]
        if cur is None or k in there[0]:
            return ("MOVE", k, to), 0
        had = k in m.ttl
        m.delete(k)
        there[0][k] = cur
        if had:
            there[1].add(k)
        return ("MOVE", k, to), 1
    if r == 29:
        if rng.random() < 0.3:
            a, b = rng.randrange(DBS), rng.randrange(DBS)
            m.dbs[a], m.dbs[b] = m.dbs[b], m.dbs[a]
            return ("SWAPDB", a, b), b"OK"
        return ("DBSIZE",), len(m.data)
    if r == 30:
        to = rng.randrange(DBS)
        if to == m.db and k == k2:
            return ("COPY", k, k2, "DB", to), resp.ReplyError("ERR source and destination objects are the same")
        there = m.dbs[to]
        if cur is None or k2 in there[0]:
            return ("COPY", k, k2, "DB", to), 0
        there[0][k2] = cur
        there[1].discard(k2)
        if k in m.ttl:
            there[1].add(k2)
        return ("COPY", k, k2, "DB", to), 1
    if r == 19:
        off = rng.choice([0, 7, 8, 100, 2000])
        bit = rng.randint(0, 1)
        old = bytearray(cur or b"")
        byte, shift = off // 8, 7 - off % 8
        prev = (old[byte] >> shift) & 1 if byte < len(old) else 0
        if byte >= len(old):
            old.extend(b"\0" * (byte + 1 - len(old)))
        old[byte] = (old[byte] & ~(1 << shift)) | (bit << shift)
        m.set(k, bytes(old), keep_ttl=True)
        return ("SETBIT", k, off, bit), prev
    if r == 20:
        off = rng.choice([0, 7, 8, 100, 2000, 1 << 20])
        data = cur or b""
        byte, shift = off // 8, 7 - off % 8
        return ("GETBIT", k, off), (data[byte] >> shift) & 1 if byte < len(data) else 0
    if r == 21:
        return ("BITCOUNT", k), sum(bin(b).count("1") for b in (cur or b""))
    if r == 22:
        if k == k2:
            return ("COPY", k, k2), resp.ReplyError("ERR source and destination objects are the same")
        replace = rng.random() < 0.5
        args = ("COPY", k, k2) + (("REPLACE",) if replace else ())
        if cur is None or (k2 in m.data and not replace):
            return args, 0
        m.set(k2, cur)
        if k in m.ttl:
            m.ttl.add(k2)
        return args, 1
    if r == 23:
        return ("DUMP", k), None if cur is None else DUMPED  # compared by a RESTORE below
    if r == 24:
        # A payload keg itself wrote, restored elsewhere: the value (and no TTL) must come back.
        return ("COPY_BY_DUMP", k, k2), None
    if r == 25:
        off = rng.choice([0, 3, 50])
        v = value(rng)[:50]
        data = bytearray(cur or b"")
        if not v:
            return ("SETRANGE", k, off, v), len(data)
        if len(data) < off + len(v):
            data.extend(b"\0" * (off + len(v) - len(data)))
        data[off:off + len(v)] = v
        m.set(k, bytes(data), keep_ttl=True)
        return ("SETRANGE", k, off, v), len(data)
    v = value(rng)
    old = cur
    m.set(k, v)
    return ("GETSET", k, v), old


FIELDS = [b"f1", b"f2", b"f3", b"\x00f\r\n"]
MEMBERS = [b"1", b"2", b"-7", b"10", b"a", b"bb"]


def collection_step(rng, m, k, cur, r):
    """Hash and set commands on k: (args, expected). Replies whose order keg does not promise are
    compared as a dict or a set (see matches)."""
    is_hash = isinstance(cur, dict) and not isinstance(cur, Z)
    is_set = isinstance(cur, set)
    if r in (31, 32, 33) and is_set or r in (34, 35) and is_hash or (cur is not None and not is_hash and not is_set):
        return ("HLEN", k) if r < 34 else ("SCARD", k), WRONGTYPE
    if r == 31:  # HSET / HDEL
        f = rng.choice(FIELDS)
        if rng.random() < 0.7:
            v = value(rng)[:200]
            h = dict(cur or {})
            new = f not in h
            h[f] = v
            m.set(k, h, keep_ttl=True)
            return ("HSET", k, f, v), 1 if new else 0
        if cur is None:
            return ("HDEL", k, f), 0
        h = dict(cur)
        n = 1 if h.pop(f, None) is not None else 0
        if h:
            m.set(k, h, keep_ttl=True)
        elif n:
            m.delete(k)
        return ("HDEL", k, f), n
    if r == 32:  # HGET / HGETALL / HLEN
        c = rng.random()
        if c < 0.4:
            f = rng.choice(FIELDS)
            return ("HGET", k, f), (cur or {}).get(f)
        if c < 0.7:
            return ("HGETALL", k), ("DICT", dict(cur or {}))
        return ("HLEN", k), len(cur or {})
    if r == 33:  # HINCRBY
        f = rng.choice(FIELDS)
        h = dict(cur or {})
        old = h.get(f, b"0")
        try:
            n = int(old)
            if str(n).encode() != old:
                raise ValueError
        except ValueError:
            return ("HINCRBY", k, f, 3), resp.ReplyError("ERR hash value is not an integer")
        h[f] = str(n + 3).encode()
        m.set(k, h, keep_ttl=True)
        return ("HINCRBY", k, f, 3), n + 3
    if r == 34:  # SADD / SREM
        ms = rng.sample(MEMBERS, rng.randint(1, 3))
        s = set(cur or set())
        if rng.random() < 0.65:
            n = len([x for x in ms if x not in s])
            s.update(ms)
            m.set(k, s, keep_ttl=True)
            return ("SADD", k, *ms), n
        n = len([x for x in ms if x in s])
        s.difference_update(ms)
        if s:
            if cur is not None:
                m.set(k, s, keep_ttl=True)
        elif cur is not None:
            m.delete(k)
        return ("SREM", k, *ms), n
    c = rng.random()  # r == 35: reads
    if c < 0.4:
        x = rng.choice(MEMBERS)
        return ("SISMEMBER", k, x), 1 if cur and x in cur else 0
    if c < 0.7:
        return ("SMEMBERS", k), ("SET", set(cur or set()))
    return ("SCARD", k), len(cur or set())


def list_zset_step(rng, m, k, cur, r):
    """List and sorted set commands on k: (args, expected)."""
    if r in (36, 37):
        if cur is not None and not isinstance(cur, list):
            return ("LLEN", k), WRONGTYPE
        lst = list(cur or [])
        if r == 36:
            c = rng.random()
            if c < 0.6:
                vs = [value(rng)[:100] for _ in range(rng.randint(1, 3))]
                left = rng.random() < 0.5
                for v in vs:
                    if left:
                        lst.insert(0, v)
                    else:
                        lst.append(v)
                m.set(k, lst, keep_ttl=True)
                return ("LPUSH" if left else "RPUSH", k, *vs), len(lst)
            left = rng.random() < 0.5
            if not lst:
                return ("LPOP" if left else "RPOP", k), None
            v = lst.pop(0 if left else -1)
            if lst:
                m.set(k, lst, keep_ttl=True)
            else:
                m.delete(k)
            return ("LPOP" if left else "RPOP", k), v
        c = rng.random()
        if c < 0.4:
            return ("LRANGE", k, 0, -1), lst
        if c < 0.7:
            i = rng.randint(-4, 4)
            return ("LINDEX", k, i), lst[i] if -len(lst) <= i < len(lst) else None
        return ("LLEN", k), len(lst)
    if cur is not None and not isinstance(cur, Z):
        return ("ZCARD", k), WRONGTYPE
    z = Z(cur or {})
    if r == 38:
        c = rng.random()
        x = rng.choice(MEMBERS)
        if c < 0.5:
            sc = rng.randint(-6, 6) / 2
            new = x not in z
            z[x] = sc
            m.set(k, z, keep_ttl=True)
            return ("ZADD", k, fmt_score(sc), x), 1 if new else 0
        if c < 0.75:
            z[x] = z.get(x, 0) + 1.5
            m.set(k, z, keep_ttl=True)
            return ("ZINCRBY", k, "1.5", x), fmt_score(z[x])
        n = 1 if z.pop(x, None) is not None else 0
        if z:
            if n:
                m.set(k, z, keep_ttl=True)
        elif cur is not None:
            m.delete(k)
        return ("ZREM", k, x), n
    c = rng.random()
    order = zorder(z)
    if c < 0.3:
        return ("ZRANGE", k, 0, -1, "WITHSCORES"), [b for mem, sc in order for b in (mem, fmt_score(sc))]
    if c < 0.5:
        x = rng.choice(MEMBERS)
        return ("ZSCORE", k, x), fmt_score(z[x]) if x in z else None
    if c < 0.7:
        x = rng.choice(MEMBERS)
        return ("ZRANK", k, x), [mem for mem, _ in order].index(x) if x in z else None
    if c < 0.85:
        return ("ZCARD", k), len(z)
    if not order:
        return ("ZPOPMIN", k), []
    mem, sc = order[0]
    del z[mem]
    if z:
        m.set(k, z, keep_ttl=True)
    else:
        m.delete(k)
    return ("ZPOPMIN", k), [mem, fmt_score(sc)]


def matches(got, want):
    if isinstance(want, tuple) and want and want[0] == "DICT":
        return isinstance(got, list) and len(got) % 2 == 0 and dict(zip(got[0::2], got[1::2])) == want[1] \
            and len(got) == 2 * len(want[1])
    if isinstance(want, tuple) and want and want[0] == "SET":
        return isinstance(got, (list, set)) and set(got) == want[1] and len(got) == len(want[1])
    if want is DUMPED:
        return isinstance(got, bytes) and len(got) >= 10
    if isinstance(want, resp.ReplyError):
        return isinstance(got, resp.ReplyError) and str(got) == str(want)
    if isinstance(want, tuple):
        return isinstance(got, int) and want[0] <= got <= want[1]
    return got == want


def run(opts):
    rng = random.Random(opts.seed)
    work = tempfile.mkdtemp(prefix="keg_model_")
    # Odd seeds with tiny collection thresholds: hashes, sets, sorted sets and lists of more than
    # one element are then stored per element (docs/types.md).
    tiny = ["--hash-max-listpack-entries", "1", "--set-max-listpack-entries", "1",
            "--set-max-intset-entries", "1", "--zset-max-listpack-entries", "1",
            "--list-max-listpack-size", "1"] if opts.seed % 2 == 1 else []
    keg = Keg(os.path.join(work, "data"), "--appendfsync", "always", "--data-file-size", "1mb",
              "--enable-debug-command", "yes", *tiny, log=os.path.join(work, "keg.log"))
    keys = [f"m:{i}" for i in range(12)] + ["m:\x00bin\r\n", "m:" + "k" * 300]
    m = Model()
    counts = {"restarts": 0, "kills": 0, "compactions": 0, "cold": 0}
    try:
        keg.start()
        c = keg.conn()
        for i in range(opts.steps):
            r = rng.random()
            if r < 1 / 400:
                c.close()
                if rng.random() < 0.5:
                    keg.kill()  # under always everything acknowledged is on disk
                    counts["kills"] += 1
                else:
                    assert keg.stop() == 0
                    counts["restarts"] += 1
                keg.start()
                c = keg.conn()
                m.db = 0  # a new connection starts in database 0
            elif r < 1 / 400 + 1 / 300:
                assert c.call("COMPACT") == b"OK"
                counts["compactions"] += 1
            elif r < 1 / 400 + 1 / 300 + 1 / 100:
                # Every data file out of the page cache: the next commands take the cold-read path
                # (the read pool, walks off the loop), which must answer exactly the same.
                assert c.call("DEBUG", "DROP-PAGE-CACHE") == b"OK"
                counts["cold"] += 1
            args, want = step(rng, m, keys)
            if args[0] == "COPY_BY_DUMP":
                # DUMP one key and RESTORE it as another (REPLACE): the model copies the value.
                _, k, k2 = args
                payload = c.call("DUMP", k)
                if (payload is None) != (k not in m.data):
                    print(f"DIVERGENCE at step {i} (seed {opts.seed}): DUMP {k!r}: {payload!r:.80}")
                    return 1
                if payload is None:
                    continue
                args, want = ("RESTORE", k2, 0, payload, "REPLACE"), b"OK"
                m.set(k2, m.data[k])
            c.send([args])
            got = c.read()
            if not matches(got, want):
                print(f"DIVERGENCE at step {i} (seed {opts.seed}): {args!r:.200}\n"
                      f"  keg:   {got!r:.200}\n  model: {want!r:.200}", flush=True)
                return 1
        c.close()
        assert keg.stop() == 0
    finally:
        keg.kill()
    shutil.rmtree(work, ignore_errors=True)
    print(f"model: {opts.steps} commands, seed {opts.seed}: no divergence "
          f"({counts['restarts']} restarts, {counts['kills']} SIGKILLs, "
          f"{counts['compactions']} compactions, {counts['cold']} page-cache drops)", flush=True)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--steps", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=1, help="seeds seed, seed+1, ...")
    opts = ap.parse_args()
    base = opts.seed if opts.seed is not None else random.randrange(1 << 30)
    for n in range(opts.runs):
        opts.seed = base + n
        if run(opts) != 0:
            sys.exit(1)


if __name__ == "__main__":
    main()
