#!/usr/bin/python3
"""Linearizability checker: concurrent clients against one keg-server, every reply checked against
a sequential model of Redis in some order that respects real time.

Clients (each a thread with its own connection, so on several I/O threads) send random commands
over a few keys in databases 0 and 1 — strings, counters, lists, hashes, sets, sorted sets, TTL
flags, multi-key commands (MSET, MGET, DEL, EXISTS, RENAME, COPY, LMOVE, MOVE, SWAPDB, FLUSHDB,
the STORE forms), the database as a whole (DBSIZE, KEYS, RANDOMKEY), blocking pops with short timeouts, MULTI/EXEC blocks and scripts of two
commands — one at a time or pipelined (up to 4 per write). On odd seeds the server stores
collections of two or more elements per element (thresholds of 1).
Each command's invocation time is taken before its bytes are sent and its response time after its
reply was read, so each interval holds the moment the server ran it. The history is linearizable
when there is one order of all commands that (a) keeps each connection's commands in the order it
sent them, (b) puts a command before another whenever its reply came before the other was sent,
and (c) gives every command, run in that order against the model, the reply the server gave. A
search (Wing and Gong's, over per-connection positions, with the states it has seen memoized)
finds such an order or shows there is none.

While the clients run, a chaos thread makes the server work the way races need: COMPACT, DEBUG
DROP-PAGE-CACHE (reads then go to the cold-read pool), DEBUG COLD-READ-DELAY, DEBUG APPLY-PAUSE
(the writer dawdles between a group's keydir updates), DEBUG READ-GAP (a read of a large
collection dawdles between its head and its elements), CLIENT PAUSE, SIGSTOP / SIGCONT of the whole
server, and a filler client writing large values to database 2, so data files fill, seal and
compact.

--kills N: under `appendfsync always` the server is SIGKILLed N times at random moments and
restarted; a command whose reply never came may have taken effect (after it was sent and before
the kill) or not, as a durable server allows; everything acknowledged must be there. After each
restart the whole keyspace is read before the clients come back, an operation of the history too.

A command whose reply shows it changed nothing (a read, an error, a DEL of nothing ...) is placed
as soon as it fits, without trying other orders there (sound: it changes no state, and placing it
only lifts its real-time bound on the rest); a search past 5M nodes gives up and fails.

A failure prints the seed, the deepest point the search reached, the commands that could come next
there and what each replied; --save FILE keeps the history (and FILE.chaos the chaos thread's
actions with their times) for --recheck FILE. --against-redis runs the clients against redis-server instead, and
--check-model STEPS replays one client's operations against redis-server comparing the whole
keyspace with the model's after each: both check the model (run them after changing it). Usage:
  linearizable.py [--seconds 20] [--clients 6] [--policy everysec] [--kills 0] [--seed S]
Exit status 0 when the history is linearizable.
"""
import argparse
import os
import random
import signal
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import resp  # noqa: E402
from server import Keg  # noqa: E402

KEYS = ("a", "b", "c", "d")
DBS = 2
VALUES = (b"1", b"2", b"10", b"-3", b"x", b"")
FIELDS = (b"f", b"g")
MEMBERS = (b"m", b"n", b"o")


# ---------------------------------------------------------------------------------------------
# The model. A state is a tuple of DBS databases, each a tuple with one slot per key: None, or
# (type, value, has_ttl) with an immutable value: 's' bytes, 'l' tuple, 'h' frozenset of (field,
# value), 'S' frozenset, 'z' frozenset of (member, score). Immutable, so states can be memoized.

class Err:
    """An expected error reply: its first word (None: any error)."""
    __slots__ = ("code",)

    def __init__(self, code):
        self.code = code

    def __repr__(self):
        return f"Err({self.code})"


WRONGTYPE = Err("WRONGTYPE")
NOT_INT = Err("ERR")
ANY_POSITIVE = object()  # a TTL: any positive number


class OneOf:
    """An expected reply that may be any of `choices` (RANDOMKEY)."""
    __slots__ = ("choices",)

    def __init__(self, choices):
        self.choices = choices

    def __repr__(self):
        return f"OneOf({self.choices!r})"


def slot_index(key):
    return KEYS.index(key)


class View:
    """A mutable copy of one state, for one command's changes."""

    def __init__(self, state):
        self.dbs = [list(db) for db in state]

    def get(self, db, key):
        return self.dbs[db][slot_index(key)]

    def put(self, db, key, entry):
        self.dbs[db][slot_index(key)] = entry

    def freeze(self):
        return tuple(tuple(db) for db in self.dbs)


def is_int(v):
    if v == b"0":
        return True
    s = v[1:] if v[:1] == b"-" else v
    return 0 < len(s) <= 18 and s[:1] != b"0" and s.isdigit()


def fmt_score(x):
    return str(int(x)).encode() if x == int(x) else repr(x).encode()


def getrange(s, start, end):
    """Redis's GETRANGE index arithmetic (an end before the start of the string counts as 0)."""
    n = len(s)
    if start < 0 and end < 0 and start > end:
        return s[:0]
    start, end = start + n if start < 0 else start, end + n if end < 0 else end
    start, end = max(start, 0), min(max(end, 0), n - 1)
    return s[start:end + 1] if n and start <= end else s[:0]


def lrange(items, start, end):
    """Redis's LRANGE / LTRIM index arithmetic (an end before the list's start: nothing)."""
    n = len(items)
    start, end = start + n if start < 0 else start, end + n if end < 0 else end
    start = max(start, 0)
    return items[start:min(end, n - 1) + 1] if start <= end and start < n else items[:0]


def run(view, db, cmd, actual=None):
    """Applies one command to `view` (database `db`) as Redis would; returns the expected reply,
    in resp.Conn's form (b"OK", int, bytes, None, list, Err). An error changes nothing. `actual`
    is the reply the server gave, for the commands whose effect Redis leaves to chance (SPOP):
    it is the expected reply when it is one Redis could have given, and the state follows it."""
    name = cmd[0]
    args = cmd[1:]
    if name in ("GETSET", "GETEX"):
        old = view.get(db, args[0])
        if old is not None and old[0] != "s":
            return WRONGTYPE
        if name == "GETSET":
            view.put(db, args[0], ("s", args[1], False))
            return None if old is None else old[1]
        if old is None:
            return None
        if name == "GETSET":
            view.put(db, args[0], ("s", args[1], False))
        elif args[1:]:
            view.put(db, args[0], ("s", old[1], args[1] != "PERSIST"))
        return old[1]
    if name in ("SETRANGE", "GETRANGE"):
        old = view.get(db, args[0])
        if old is not None and old[0] != "s":
            return WRONGTYPE
        value = old[1] if old else b""
        if name == "GETRANGE":
            return getrange(value, int(args[1]), int(args[2]))
        off, part = int(args[1]), args[2]
        if not part:
            return len(value)
        value = value.ljust(off, b"\0")
        value = value[:off] + part + value[off + len(part):]
        view.put(db, args[0], ("s", value, bool(old and old[2])))
        return len(value)
    if name == "SET":
        key, value = args[0], args[1]
        old = view.get(db, key)
        opts = args[2:]
        if "GET" in opts:
            if old is not None and old[0] != "s":
                return WRONGTYPE
        if "NX" in opts and old is not None:
            return None if "GET" not in opts else old[1]
        if "XX" in opts and old is None:
            return None
        ttl = ("KEEPTTL" in opts and old is not None and old[2]) or "EX" in opts
        view.put(db, key, ("s", value, bool(ttl)))
        if "GET" in opts:
            return None if old is None else old[1]
        return b"OK"
    if name in ("GET", "GETDEL", "STRLEN"):
        old = view.get(db, args[0])
        if old is None:
            return 0 if name == "STRLEN" else None
        if old[0] != "s":
            return WRONGTYPE
        if name == "GETDEL":
            view.put(db, args[0], None)
        return len(old[1]) if name == "STRLEN" else old[1]
    if name in ("INCR", "INCRBY"):
        old = view.get(db, args[0])
        by = 1 if name == "INCR" else int(args[1])
        if old is None:
            cur, ttl = 0, False
        elif old[0] != "s":
            return WRONGTYPE
        elif not is_int(old[1]):
            return NOT_INT
        else:
            cur, ttl = int(old[1]), old[2]
        view.put(db, args[0], ("s", str(cur + by).encode(), ttl))
        return cur + by
    if name == "APPEND":
        old = view.get(db, args[0])
        if old is not None and old[0] != "s":
            return WRONGTYPE
        value = (old[1] if old else b"") + args[1]
        view.put(db, args[0], ("s", value, bool(old and old[2])))
        return len(value)
    if name in ("DEL", "UNLINK", "EXISTS", "TOUCH"):
        n = 0
        for key in args:
            if view.get(db, key) is not None:
                n += 1
                if name in ("DEL", "UNLINK"):
                    view.put(db, key, None)
        return n
    if name == "MSET":
        for i in range(0, len(args), 2):
            view.put(db, args[i], ("s", args[i + 1], False))
        return b"OK"
    if name == "MSETNX":
        if any(view.get(db, args[i]) is not None for i in range(0, len(args), 2)):
            return 0
        for i in range(0, len(args), 2):
            view.put(db, args[i], ("s", args[i + 1], False))
        return 1
    if name == "MGET":
        out = []
        for key in args:
            e = view.get(db, key)
            out.append(e[1] if e is not None and e[0] == "s" else None)
        return out
    if name == "TYPE":
        e = view.get(db, args[0])
        return {None: b"none", "s": b"string", "l": b"list", "h": b"hash", "S": b"set",
                "z": b"zset"}[e[0] if e else None]
    if name in ("RENAME", "RENAMENX"):
        src, dst = args
        e = view.get(db, src)
        if e is None:
            return Err("ERR")
        if name == "RENAMENX" and view.get(db, dst) is not None:
            return 0
        if src != dst:
            view.put(db, src, None)
            view.put(db, dst, e)
        return b"OK" if name == "RENAME" else (0 if src == dst else 1)
    if name == "COPY":
        src, dst = args[0], args[1]
        e = view.get(db, src)
        if src == dst:
            return Err("ERR")
        if e is None:
            return 0
        if view.get(db, dst) is not None and "REPLACE" not in args:
            return 0
        view.put(db, dst, e)
        return 1
    if name == "MOVE":
        key, to = args[0], int(args[1])
        if to == db:
            return Err("ERR")
        e = view.get(db, key)
        if e is None or view.get(to, key) is not None:
            return 0
        view.put(db, key, None)
        view.put(to, key, e)
        return 1
    if name == "SWAPDB":
        a, b = int(args[0]), int(args[1])
        view.dbs[a], view.dbs[b] = view.dbs[b], view.dbs[a]
        return b"OK"
    if name == "FLUSHDB":
        view.dbs[db] = [None] * len(KEYS)
        return b"OK"
    if name in ("DBSIZE", "KEYS", "RANDOMKEY"):  # the database's keys at one moment
        present = [KEYS[i].encode() for i, e in enumerate(view.dbs[db]) if e is not None]
        if name == "DBSIZE":
            return len(present)
        if name == "KEYS":
            return present
        return OneOf(present) if present else None
    if name == "EXPIRE":
        e = view.get(db, args[0])
        if e is None:
            return 0
        view.put(db, args[0], (e[0], e[1], True))
        return 1
    if name == "PERSIST":
        e = view.get(db, args[0])
        if e is None or not e[2]:
            return 0
        view.put(db, args[0], (e[0], e[1], False))
        return 1
    if name == "TTL":
        e = view.get(db, args[0])
        return -2 if e is None else (ANY_POSITIVE if e[2] else -1)
    # Lists.
    if name in ("LPUSH", "RPUSH", "LPUSHX", "RPUSHX"):
        e = view.get(db, args[0])
        if e is not None and e[0] != "l":
            return WRONGTYPE
        if e is None and name.endswith("X"):
            return 0
        items = e[1] if e else ()
        for v in args[1:]:
            items = (v,) + items if name[0] == "L" else items + (v,)
        view.put(db, args[0], ("l", items, bool(e and e[2])))
        return len(items)
    if name in ("LPOP", "RPOP"):
        e = view.get(db, args[0])
        if e is None:
            return None
        if e[0] != "l":
            return WRONGTYPE
        items = e[1]
        v, rest = (items[0], items[1:]) if name == "LPOP" else (items[-1], items[:-1])
        view.put(db, args[0], ("l", rest, e[2]) if rest else None)
        return v
    if name in ("LRANGE", "LLEN"):
        e = view.get(db, args[0])
        if e is None:
            return [] if name == "LRANGE" else 0
        if e[0] != "l":
            return WRONGTYPE
        return list(e[1]) if name == "LRANGE" else len(e[1])
    if name == "LMOVE":
        src, dst, wherefrom, whereto = args
        e = view.get(db, src)
        if e is None:
            return None
        if e[0] != "l":
            return WRONGTYPE
        d = view.get(db, dst)
        if d is not None and d[0] != "l":
            return WRONGTYPE
        items = e[1]
        v, rest = (items[0], items[1:]) if wherefrom == "LEFT" else (items[-1], items[:-1])
        if src == dst:  # a rotation: the key stays, with its TTL
            view.put(db, src, ("l", (v,) + rest if whereto == "LEFT" else rest + (v,), e[2]))
            return v
        view.put(db, src, ("l", rest, e[2]) if rest else None)
        items = d[1] if d else ()
        items = (v,) + items if whereto == "LEFT" else items + (v,)
        view.put(db, dst, ("l", items, bool(d and d[2])))
        return v
    if name in ("LINSERT", "LSET", "LREM", "LTRIM", "LINDEX", "LPOS", "LMPOP"):
        key = args[1] if name == "LMPOP" else args[0]
        e = view.get(db, key)
        if e is not None and e[0] != "l":
            return WRONGTYPE
        items = list(e[1]) if e else []
        ttl = bool(e and e[2])
        if name == "LINDEX":
            i = int(args[1])
            i = i + len(items) if i < 0 else i
            return items[i] if 0 <= i < len(items) else None
        if name == "LPOS":
            return items.index(args[1]) if args[1] in items else None
        if name == "LINSERT":
            if e is None:
                return 0
            if args[2] not in items:
                return -1
            at = items.index(args[2]) + (1 if args[1] == "AFTER" else 0)
            items.insert(at, args[3])
        elif name == "LSET":
            if e is None:
                return Err("ERR")
            i = int(args[1])
            i = i + len(items) if i < 0 else i
            if not 0 <= i < len(items):
                return Err("ERR")
            items[i] = args[2]
        elif name == "LREM":
            count, v, removed = int(args[1]), args[2], 0
            order = range(len(items) - 1, -1, -1) if count < 0 else range(len(items))
            keep = [True] * len(items)
            for i in order:
                if items[i] == v and (count == 0 or removed < abs(count)):
                    keep[i] = False
                    removed += 1
            items = [x for x, k in zip(items, keep) if k]
            view.put(db, key, ("l", tuple(items), ttl) if items else None)
            return removed
        elif name == "LTRIM":
            items = list(lrange(items, int(args[1]), int(args[2])))
            view.put(db, key, ("l", tuple(items), ttl) if items else None)
            return b"OK"
        else:  # LMPOP 1 key LEFT|RIGHT COUNT n
            if not items:
                return None
            n = int(args[4])
            taken = items[:n] if args[2] == "LEFT" else items[::-1][:n]
            items = items[len(taken):] if args[2] == "LEFT" else items[:len(items) - len(taken)]
            view.put(db, key, ("l", tuple(items), ttl) if items else None)
            return [key.encode(), taken]
        view.put(db, key, ("l", tuple(items), ttl))
        return len(items) if name == "LINSERT" else b"OK"
    # Hashes.
    if name in ("HSETNX", "HKEYS", "HVALS", "HSTRLEN"):
        e = view.get(db, args[0])
        if e is not None and e[0] != "h":
            return WRONGTYPE
        fields = dict(e[1]) if e else {}
        if name == "HKEYS":
            return sorted(fields)
        if name == "HVALS":
            return sorted(fields.values())
        if name == "HSTRLEN":
            return len(fields.get(args[1], b""))
        if args[1] in fields:
            return 0
        fields[args[1]] = args[2]
        view.put(db, args[0], ("h", frozenset(fields.items()), bool(e and e[2])))
        return 1
    if name in ("HSET", "HDEL", "HGET", "HINCRBY", "HGETALL", "HLEN", "HEXISTS"):
        e = view.get(db, args[0])
        if e is not None and e[0] != "h":
            return WRONGTYPE
        fields, ttl = dict(e[1]) if e else {}, bool(e and e[2])
        if name == "HGET":
            return fields.get(args[1])
        if name == "HEXISTS":
            return int(args[1] in fields)
        if name == "HLEN":
            return len(fields)
        if name == "HGETALL":
            return sorted(fields.items())
        if name == "HSET":
            added = 0
            for i in range(1, len(args), 2):
                added += args[i] not in fields
                fields[args[i]] = args[i + 1]
            view.put(db, args[0], ("h", frozenset(fields.items()), ttl))
            return added
        if name == "HDEL":
            removed = 0
            for f in args[1:]:
                removed += fields.pop(f, None) is not None
            view.put(db, args[0], ("h", frozenset(fields.items()), ttl) if fields else None)
            return removed
        cur = fields.get(args[1], b"0")
        if not is_int(cur):
            return Err("ERR")
        fields[args[1]] = str(int(cur) + int(args[2])).encode()
        view.put(db, args[0], ("h", frozenset(fields.items()), ttl))
        return int(cur) + int(args[2])
    # Sets.
    if name in ("SADD", "SREM", "SISMEMBER", "SCARD", "SMEMBERS"):
        e = view.get(db, args[0])
        if e is not None and e[0] != "S":
            return WRONGTYPE
        members, ttl = set(e[1]) if e else set(), bool(e and e[2])
        if name == "SISMEMBER":
            return int(args[1] in members)
        if name == "SCARD":
            return len(members)
        if name == "SMEMBERS":
            return sorted(members)
        n = 0
        for m in args[1:]:
            if name == "SADD" and m not in members:
                members.add(m)
                n += 1
            elif name == "SREM" and m in members:
                members.remove(m)
                n += 1
        view.put(db, args[0], ("S", frozenset(members), ttl) if members else None)
        return n
    if name in ("SPOP", "SRANDMEMBER", "SMISMEMBER", "SMOVE"):
        e = view.get(db, args[0])
        if name == "SMOVE":
            d = view.get(db, args[1])
            if e is None:
                return 0
            if e[0] != "S" or (d is not None and d[0] != "S"):
                return WRONGTYPE
            m = args[2]
            if args[0] == args[1]:
                return int(m in e[1])
            if m not in e[1]:
                return 0
            rest = e[1] - {m}
            view.put(db, args[0], ("S", rest, e[2]) if rest else None)
            view.put(db, args[1], ("S", (d[1] if d else frozenset()) | {m}, bool(d and d[2])))
            return 1
        if e is not None and e[0] != "S":
            return WRONGTYPE
        members = e[1] if e else frozenset()
        if name == "SMISMEMBER":
            return [int(m in members) for m in args[1:]]
        if name == "SRANDMEMBER":  # any member
            if not members:
                return None
            return actual if actual in members else Err("MISMATCH")
        # SPOP: the members the reply names, when it could have named them.
        if len(args) == 1:
            if not members:
                return None
            if actual not in members:
                return Err("MISMATCH")
            taken = {actual}
        else:
            want = min(int(args[1]), len(members))
            if not isinstance(actual, list) or len(set(actual)) != len(actual) or len(actual) != want \
                    or not set(actual) <= members:
                return Err("MISMATCH")
            taken = set(actual)
        rest = members - taken
        view.put(db, args[0], ("S", rest, e[2]) if rest else None)
        return actual
    if name in ("SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE", "SINTERCARD"):
        srcs = args[1:]
        sets = []
        for k in srcs:
            e = view.get(db, k)
            if e is not None and e[0] != "S":
                return WRONGTYPE
            sets.append(e[1] if e else frozenset())
        if name in ("SINTERSTORE", "SINTERCARD"):
            out = frozenset.intersection(*sets)
        elif name == "SUNIONSTORE":
            out = frozenset.union(*sets)
        else:
            out = sets[0].difference(*sets[1:])
        if name == "SINTERCARD":
            return len(out)
        view.put(db, args[0], ("S", out, False) if out else None)
        return len(out)
    if name in ("ZUNIONSTORE", "ZINTERSTORE"):
        zs = []
        for k in args[2:]:
            e = view.get(db, k)
            if e is not None and e[0] not in ("S", "z"):
                return WRONGTYPE
            zs.append({} if e is None else dict(e[1]) if e[0] == "z" else {m: 1 for m in e[1]})
        if name == "ZUNIONSTORE":
            keys_ = set().union(*zs)
        else:
            keys_ = set(zs[0]).intersection(*zs[1:])
        out = {m: sum(z.get(m, 0) for z in zs) for m in keys_}
        view.put(db, args[0], ("z", frozenset(out.items()), False) if out else None)
        return len(out)
    if name in ("ZRANGEBYSCORE", "ZRANK", "ZMPOP"):
        key = args[1] if name == "ZMPOP" else args[0]
        e = view.get(db, key)
        if e is not None and e[0] != "z":
            return WRONGTYPE
        scores = dict(e[1]) if e else {}
        ordered = sorted(scores.items(), key=lambda ms: (ms[1], ms[0]))
        if name == "ZRANK":
            ms = [m for m, _ in ordered]
            return ms.index(args[1]) if args[1] in ms else None
        if name == "ZRANGEBYSCORE":
            lo, hi = int(args[1]), int(args[2])
            return [x for m, s in ordered if lo <= s <= hi for x in (m, fmt_score(s))]
        if not ordered:  # ZMPOP 1 key MIN|MAX COUNT n
            return None
        taken = (ordered if args[2] == "MIN" else ordered[::-1])[:int(args[4])]
        for m, _ in taken:
            del scores[m]
        view.put(db, key, ("z", frozenset(scores.items()), e[2]) if scores else None)
        return [key.encode(), [[m, fmt_score(s)] for m, s in taken]]
    if name == "SORT":
        e = view.get(db, args[0])
        if e is None:
            items = []
        elif e[0] == "l":
            items = list(e[1])
        elif e[0] == "S":
            items = list(e[1])
        elif e[0] == "z":
            items = [m for m, _ in sorted(e[1], key=lambda ms: (ms[1], ms[0]))]
        else:
            return WRONGTYPE
        items.sort()
        if "STORE" not in args:
            return items
        dst = args[args.index("STORE") + 1]
        view.put(db, dst, ("l", tuple(items), False) if items else None)
        return len(items)
    # Sorted sets (integer scores).
    if name in ("ZADD", "ZINCRBY", "ZRANGE", "ZPOPMIN", "ZSCORE", "ZCARD", "ZREM"):
        e = view.get(db, args[0])
        if e is not None and e[0] != "z":
            return WRONGTYPE
        scores, ttl = dict(e[1]) if e else {}, bool(e and e[2])
        ordered = sorted(scores.items(), key=lambda ms: (ms[1], ms[0]))
        if name == "ZRANGE":
            return [x for m, s in ordered for x in (m, fmt_score(s))]
        if name == "ZSCORE":
            return fmt_score(scores[args[1]]) if args[1] in scores else None
        if name == "ZCARD":
            return len(scores)
        if name == "ZPOPMIN":
            if not ordered:
                return []
            m, s = ordered[0]
            del scores[m]
            view.put(db, args[0], ("z", frozenset(scores.items()), ttl) if scores else None)
            return [m, fmt_score(s)]
        if name == "ZREM":
            n = int(scores.pop(args[1], None) is not None)
            view.put(db, args[0], ("z", frozenset(scores.items()), ttl) if scores else None)
            return n
        if name == "ZADD":
            n = int(args[2] not in scores)
            scores[args[2]] = int(args[1])
            view.put(db, args[0], ("z", frozenset(scores.items()), ttl))
            return n
        scores[args[2]] = scores.get(args[2], 0) + int(args[1])
        view.put(db, args[0], ("z", frozenset(scores.items()), ttl))
        return fmt_score(scores[args[2]])
    # Blocking pops (one key, a short timeout): a reply is the pop at some moment of the command's
    # interval — at once, or when a push served it; a null reply means the key was empty when the
    # command ran (else it pops or fails at once).
    if name in ("BLPOP", "BRPOP", "BZPOPMIN"):
        r = run(view, db, [{"BLPOP": "LPOP", "BRPOP": "RPOP", "BZPOPMIN": "ZPOPMIN"}[name], args[0]])
        if isinstance(r, Err) or r is None or r == []:
            return None if r == [] else r
        return [args[0].encode(), *r] if name == "BZPOPMIN" else [args[0].encode(), r]
    if name == "BLMOVE":
        return run(view, db, ["LMOVE", *args[:4]])
    raise AssertionError(f"no model of {name}")


def normalize(cmd, reply):
    """What of a reply the model predicts: the order of HGETALL and SMEMBERS is Redis's hash
    order, so they are compared sorted."""
    if isinstance(reply, list) and cmd and cmd[0] == "HGETALL":
        return sorted(zip(reply[0::2], reply[1::2]))
    if isinstance(reply, list) and cmd and cmd[0] in ("SMEMBERS", "HKEYS", "HVALS", "KEYS"):
        return sorted(reply)
    return reply


def matches(expected, actual):
    if isinstance(expected, Err):
        return isinstance(actual, resp.ReplyError) and (
            expected.code is None or str(actual).split(" ", 1)[0] == expected.code)
    if isinstance(actual, resp.ReplyError):
        return False
    if expected is ANY_POSITIVE:
        return isinstance(actual, int) and actual > 0
    if isinstance(expected, OneOf):
        return actual in expected.choices
    if isinstance(expected, list):
        return (isinstance(actual, list) and len(actual) == len(expected)
                and all(matches(e, a) for e, a in zip(expected, actual)))
    return expected == actual


# ---------------------------------------------------------------------------------------------
# Operations: what a client sends as one unit (a command, a MULTI/EXEC block, a script).

SCRIPT = """
local i = 1
local function take()
  local n = tonumber(ARGV[i])
  local t = {}
  for j = 1, n do t[j] = ARGV[i + j] end
  i = i + n + 1
  return t
end
local first = take()
local second = take()
redis.call(unpack(first))
return redis.call(unpack(second))
"""


class Op:
    """One unit a client sent: `kind` "cmd" (cmds[0]), "multi" (MULTI cmds EXEC), or "script" (EVAL
    of cmds[0] then cmds[1], returning the second's reply). `db` is the connection's database.
    inv / ret: monotonic ns before sending, after the reply (ret None: no reply, a crash)."""
    __slots__ = ("client", "db", "kind", "cmds", "inv", "ret", "reply", "deadline")

    def __init__(self, client, db, kind, cmds):
        self.client, self.db, self.kind, self.cmds = client, db, kind, cmds
        self.inv = self.ret = None
        self.deadline = None  # without a reply: when the server was killed (it ran by then or never)
        self.reply = None

    def wire(self):
        if self.kind == "cmd":
            return [self.cmds[0]]
        if self.kind == "multi":
            return [["MULTI"], *self.cmds, ["EXEC"]]
        argv = []
        for c in self.cmds:
            argv += [str(len(c))] + list(c)
        keys = sorted({a for c in self.cmds for a in c[1:] if a in KEYS})
        return [["EVAL", SCRIPT, str(len(keys)), *keys, *argv]]

    def replies(self):
        """How many replies its wire form gets."""
        return len(self.wire())

    def apply(self, state):
        """(new state, True) when the model gives the reply the server gave, else (None, False)."""
        if self.kind == "keyspace":
            return (state, True) if state == self.reply else (None, False)
        view = View(state)
        if self.kind == "cmd":
            expected = run(view, self.db, self.cmds[0], self.reply)
            if not matches(expected, normalize(self.cmds[0], self.reply)):
                return None, False
            return (state if isinstance(expected, Err) else view.freeze()), True
        if self.kind == "multi":
            replies = self.reply  # [OK, QUEUED..., exec reply]
            exec_reply = replies[-1]
            if not isinstance(exec_reply, list) or len(exec_reply) != len(self.cmds):
                return None, False
            db = self.db
            for c, actual in zip(self.cmds, exec_reply):
                before = view.freeze()
                expected = run(view, db, c, actual)
                if isinstance(expected, Err):
                    view = View(before)
                if not matches(expected, normalize(c, actual)):
                    return None, False
            return view.freeze(), True
        first = run(view, self.db, self.cmds[0])
        if isinstance(first, Err):
            return (state, True) if isinstance(self.reply, resp.ReplyError) else (None, False)
        after_first = view.freeze()
        second = run(view, self.db, self.cmds[1], self.reply)
        if isinstance(second, Err):
            second = Err(None)  # a script's error names the script too
            view = View(after_first)
        if not matches(second, normalize(self.cmds[1], self.reply)):
            return None, False
        return view.freeze(), True

    def __repr__(self):
        t = lambda ns: "-" if ns is None else f"{ns / 1e6:.3f}"  # noqa: E731
        if self.kind == "keyspace":
            return f"the keyspace after a restart [{t(self.inv)}..{t(self.ret)} ms]: {self.reply}"
        body = (" ".join(map(str, self.cmds[0])) if self.kind == "cmd" else
                f"{self.kind.upper()}[" + "; ".join(" ".join(map(str, c)) for c in self.cmds) + "]")
        return f"c{self.client}/db{self.db} [{t(self.inv)}..{t(self.ret)} ms] {body} -> {self.reply!r}"


class Generator:
    def __init__(self, rng, db, chance_ok=True):
        self.rng, self.db = rng, db
        self.chance_ok = chance_ok  # SPOP, SRANDMEMBER: not when a command may go unanswered

    def key(self):
        return self.rng.choice(KEYS)

    def value(self):
        return self.rng.choice(VALUES)

    def command(self, in_script=False):
        r = self.rng
        k = self.key()
        pick = r.randrange(100)
        if pick < 10:
            opts = r.choice([[], [], ["NX"], ["XX"], ["GET"], ["KEEPTTL"], ["EX", "100"], ["NX", "GET"]])
            return ["SET", k, self.value(), *opts]
        if pick < 18:
            return [r.choice(["GET", "GET", "GETDEL", "STRLEN", "TYPE", "TTL"]), k]
        if pick < 26:
            return r.choice([["INCR", k], ["INCRBY", k, str(r.randint(-5, 5))], ["APPEND", k, self.value()]])
        if pick < 34:
            return [r.choice(["DEL", "EXISTS", "MGET", "UNLINK", "TOUCH"]), k, self.key()]
        if pick < 38:
            return [r.choice(["MSET", "MSETNX"]), k, self.value(), self.key(), self.value()]
        if pick < 43:
            name = r.choice(["RENAME", "RENAMENX", "COPY"])
            return [name, k, self.key()] + (["REPLACE"] if name == "COPY" and r.random() < 0.4 else [])
        if pick < 46:
            return ["EXPIRE", k, "1000"] if r.random() < 0.6 else ["PERSIST", k]
        if pick < 56:
            return r.choice([["LPUSH", k, self.value()], ["RPUSH", k, self.value(), self.value()],
                             ["LPOP", k], ["RPOP", k], ["LRANGE", k, "0", "-1"], ["LLEN", k],
                             ["RPUSHX", k, self.value()],
                             ["LMOVE", k, self.key(), r.choice(["LEFT", "RIGHT"]), r.choice(["LEFT", "RIGHT"])]])
        if pick < 66:
            f = r.choice(FIELDS)
            return r.choice([["HSET", k, f, self.value()], ["HGET", k, f], ["HDEL", k, f],
                             ["HINCRBY", k, f, str(r.randint(-3, 3))], ["HGETALL", k], ["HLEN", k],
                             ["HEXISTS", k, f], ["HSET", k, FIELDS[0], self.value(), FIELDS[1], self.value()]])
        if pick < 75:
            m = r.choice(MEMBERS)
            return r.choice([["SADD", k, m], ["SADD", k, m, r.choice(MEMBERS)], ["SREM", k, m],
                             ["SISMEMBER", k, m], ["SCARD", k], ["SMEMBERS", k]])
        if pick < 85:
            m = r.choice(MEMBERS)
            return r.choice([["ZADD", k, str(r.randint(-2, 3)), m], ["ZINCRBY", k, str(r.randint(-2, 2)), m],
                             ["ZRANGE", k, "0", "-1", "WITHSCORES"], ["ZPOPMIN", k], ["ZSCORE", k, m],
                             ["ZCARD", k], ["ZREM", k, m]])
        if pick < 89:
            return ["MOVE", k, str(1 - self.db)] if r.random() < 0.4 else self.more(k, in_script)
        if (pick < 90 or 92 <= pick < 96) and not in_script:  # Redis refuses them in scripts
            t = r.choice(["0.01", "0.02", "0.05"])
            return r.choice([["BLPOP", k, t], ["BRPOP", k, t], ["BZPOPMIN", k, t],
                             ["BLMOVE", k, self.key(), r.choice(["LEFT", "RIGHT"]), r.choice(["LEFT", "RIGHT"]), t]])
        if pick < 91:
            return ["SWAPDB", "0", "1"]
        if pick < 92:
            return ["FLUSHDB"]
        if pick < 98:
            return ["GET", k]
        return r.choice([["DBSIZE"], ["KEYS", "*"], ["RANDOMKEY"]])  # the database as a whole

    def more(self, k, in_script):
        """The rest of the commands the model knows, less often each."""
        r = self.rng
        i = lambda lo, hi: str(r.randint(lo, hi))  # noqa: E731
        side = lambda: r.choice(["LEFT", "RIGHT"])  # noqa: E731
        m = r.choice(MEMBERS)
        cmds = [["GETSET", k, self.value()], ["GETEX", k], ["GETEX", k, "PERSIST"], ["GETEX", k, "EX", "100"],
                ["SETRANGE", k, i(0, 3), r.choice([b"", b"ab", b"Z"])], ["GETRANGE", k, i(-3, 3), i(-3, 3)],
                ["LINSERT", k, r.choice(["BEFORE", "AFTER"]), self.value(), self.value()],
                ["LSET", k, i(-2, 2), self.value()], ["LREM", k, i(-2, 2), self.value()],
                ["LTRIM", k, i(-3, 2), i(-3, 2)], ["LINDEX", k, i(-2, 2)], ["LPOS", k, self.value()],
                ["LMPOP", "1", k, side(), "COUNT", i(1, 3)], ["HSETNX", k, r.choice(FIELDS), self.value()],
                ["HKEYS", k], ["HVALS", k], ["HSTRLEN", k, r.choice(FIELDS)],
                ["SMISMEMBER", k, m, r.choice(MEMBERS)], ["SMOVE", k, self.key(), m],
                [r.choice(["SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE"]), k, self.key(), self.key()],
                ["SINTERCARD", "2", k, self.key()],
                [r.choice(["ZUNIONSTORE", "ZINTERSTORE"]), k, "2", self.key(), self.key()],
                ["ZRANGEBYSCORE", k, i(-2, 1), i(0, 3), "WITHSCORES"], ["ZRANK", k, m],
                ["ZMPOP", "1", k, r.choice(["MIN", "MAX"]), "COUNT", i(1, 3)],
                ["SORT", k, "ALPHA"], ["SORT", k, "ALPHA", "STORE", self.key()]]
        if not in_script and self.chance_ok:  # the reply decides the effect (not known in a script)
            cmds += [["SPOP", k], ["SPOP", k, i(1, 3)], ["SRANDMEMBER", k]]
        return r.choice(cmds)

    def op(self, client):
        r = self.rng.random()
        if r < 0.08:
            return Op(client, self.db, "multi", [self.command() for _ in range(self.rng.randint(1, 4))])
        if r < 0.14:
            return Op(client, self.db, "script", [self.command(True), self.command(True)])
        return Op(client, self.db, "cmd", [self.command()])


# ---------------------------------------------------------------------------------------------
# Running the clients.

class Client(threading.Thread):
    def __init__(self, index, db, ctx, seed):
        super().__init__(daemon=True)
        self.index, self.db, self.ctx = index, db, ctx
        self.rng = random.Random(seed)
        self.gen = Generator(self.rng, db, chance_ok=ctx.kills == 0)
        self.error = None

    def connect(self):
        while not self.ctx.stop.is_set():
            if self.ctx.crashing.is_set():  # the restarted server's keyspace is read first
                time.sleep(0.01)
                continue
            try:
                c = resp.Conn(self.ctx.keg.port, timeout=60)
                if self.db:
                    if c.call("SELECT", str(self.db)) != b"OK":
                        raise RuntimeError("SELECT failed")
                return c
            except (OSError, ConnectionError):
                time.sleep(0.02)
        return None

    def run(self):
        try:
            self._run()
        except Exception as e:  # noqa: BLE001 — reported by the main thread
            self.error = e

    def _run(self):
        ctx = self.ctx
        logical = self.index  # a new logical client after each reconnection (a crash)
        conn = self.connect()
        while conn is not None and not ctx.stop.is_set():
            ops = []
            for _ in range(self.rng.choice([1, 1, 1, 2, 3, 4])):
                ops.append(self.gen.op(logical))
            wire = [c for op in ops for c in op.wire()]
            with ctx.lock:
                ctx.history.setdefault(logical, [])
                ctx.history[logical].extend(ops)
            now = time.monotonic_ns()
            for op in ops:
                op.inv = now
            try:
                conn.send(wire)
                for op in ops:
                    replies = [conn.read() for _ in range(op.replies())]
                    op.ret = time.monotonic_ns()
                    op.reply = replies[0] if op.kind != "multi" else replies
            except (OSError, ConnectionError):
                if not ctx.crashing.is_set() and not ctx.stop.is_set():
                    raise
                conn.close()
                # The ops without a reply stay in the history with ret None: in flight at the crash.
                with ctx.lock:
                    ctx.next_logical += 1
                    logical = ctx.next_logical
                conn = self.connect()
                continue
            ctx.ops_done += len(ops)
            if self.rng.random() < 0.7:  # think time: fewer ops to search, more ordered by real time
                time.sleep(self.rng.uniform(0, 0.003))
        if conn is not None:
            conn.close()


class Filler(threading.Thread):
    """Writes and overwrites 16 KiB values in database 2, so data files fill, seal and compact."""

    def __init__(self, ctx, seed):
        super().__init__(daemon=True)
        self.ctx, self.rng = ctx, random.Random(seed)

    def run(self):
        conn = None
        while not self.ctx.stop.is_set():
            try:
                if conn is None:
                    conn = resp.Conn(self.ctx.keg.port, timeout=60)
                    conn.call("SELECT", "2")
                k = f"fill:{self.rng.randrange(64)}"
                conn.send([["SET", k, os.urandom(8) * 2048], ["DEL", f"fill:{self.rng.randrange(64)}"]])
                conn.read()
                conn.read()
                time.sleep(0.002)
            except (OSError, ConnectionError):
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.02)


class Chaos(threading.Thread):
    def __init__(self, ctx, seed, keg_only=True):
        super().__init__(daemon=True)
        self.ctx, self.rng, self.keg_only = ctx, random.Random(seed), keg_only
        self.log = []  # (monotonic ns after it, what): for a failure's report
        self.events = {}

    def note(self, what, detail=""):
        self.events[what] = self.events.get(what, 0) + 1
        self.log.append((time.monotonic_ns(), f"{what} {detail}".rstrip()))

    def run(self):
        ctx, r = self.ctx, self.rng
        while not ctx.stop.is_set():
            time.sleep(r.uniform(0.02, 0.15))
            if ctx.crashing.is_set():
                continue
            what = r.randrange(100) if self.keg_only else 70 + r.randrange(30)
            try:
                if what < 20:
                    ctx.keg.call("COMPACT")
                    self.note("COMPACT")
                elif what < 45:
                    ctx.keg.call("DEBUG", "DROP-PAGE-CACHE")
                    self.note("DEBUG DROP-PAGE-CACHE")
                elif what < 55:
                    ms = r.choice([0, 0, 1, 3])
                    ctx.keg.call("DEBUG", "COLD-READ-DELAY", str(ms))
                    self.note("DEBUG COLD-READ-DELAY", ms)
                elif what < 63:
                    us = r.choice([0, 0, 50, 300])
                    ctx.keg.call("DEBUG", "APPLY-PAUSE", str(us))
                    self.note("DEBUG APPLY-PAUSE", us)
                elif what < 70:  # a large collection's head and elements read 20-100 us apart
                    us = r.choice([0, 0, 20, 100])
                    ctx.keg.call("DEBUG", "READ-GAP", str(us))
                    self.note("DEBUG READ-GAP", us)
                elif what < 84:
                    ctx.keg.call("CLIENT", "PAUSE", str(r.choice([5, 20])), r.choice(["WRITE", "ALL"]))
                    self.note("CLIENT PAUSE")
                elif what < 78 or what >= 84:
                    ctx.keg.proc.send_signal(signal.SIGSTOP)
                    time.sleep(r.uniform(0.005, 0.05))
                    ctx.keg.proc.send_signal(signal.SIGCONT)
                    self.note("SIGSTOP / SIGCONT")
            except resp.ReplyError as e:
                if not str(e).startswith("ERR Compaction"):  # one already running
                    raise
            except (OSError, ConnectionError):
                if not ctx.crashing.is_set():
                    raise


class RedisServer(Keg):
    """redis-server in keg's place (--against-redis): checks the model, not keg."""

    def __init__(self, data_dir, log):
        super().__init__(data_dir, log=log)
        os.makedirs(data_dir, exist_ok=True)

    def start(self, timeout=120):
        import subprocess
        from server import die_with_parent
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir], stdout=self.log, stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent)
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            try:
                if self.call("PING") == b"PONG":
                    return time.monotonic() - t0
            except (OSError, ConnectionError):
                time.sleep(0.01)
        raise RuntimeError("redis-server never answered PING")


class Context:
    def __init__(self, keg, seconds, kills=0):
        self.keg, self.seconds, self.kills = keg, seconds, kills
        self.stop = threading.Event()
        self.crashing = threading.Event()
        self.lock = threading.Lock()
        self.history = {}
        self.kills_ns = []  # when each SIGKILLed server was gone
        self.next_logical = 1000
        self.ops_done = 0


# ---------------------------------------------------------------------------------------------
# The search.

READS = frozenset(("GET", "STRLEN", "TYPE", "TTL", "EXISTS", "TOUCH", "MGET", "LRANGE", "LLEN", "HGET",
                   "HGETALL", "HLEN", "HEXISTS", "SISMEMBER", "SCARD", "SMEMBERS", "ZRANGE", "ZSCORE",
                   "ZCARD", "GETRANGE", "LINDEX", "LPOS", "HKEYS", "HVALS", "HSTRLEN", "SRANDMEMBER",
                   "SMISMEMBER", "SINTERCARD", "ZRANGEBYSCORE", "ZRANK"))
# Writes whose reply says they changed nothing: zero removed, moved or added, or a null pop.
NOTHING_DONE = {"LMPOP": None, "ZMPOP": None, "SMOVE": 0, "HSETNX": 0, "LINSERT": 0, "LREM": 0,
                "SPOP": None, "GETEX": None, "DEL": 0, "UNLINK": 0, "SREM": 0, "HDEL": 0, "ZREM": 0, "RENAMENX": 0, "COPY": 0,
                "MOVE": 0, "MSETNX": 0, "EXPIRE": 0, "PERSIST": 0, "LPUSHX": 0, "RPUSHX": 0,
                "LPOP": None, "RPOP": None, "LMOVE": None, "BLPOP": None, "BRPOP": None,
                "BLMOVE": None, "BZPOPMIN": None, "GETDEL": None}


def _changes_nothing(cmd, reply):
    """True when `cmd` with `reply` leaves every state it can run in as it was."""
    if isinstance(reply, resp.ReplyError) or cmd[0] in READS or (cmd[0] == "SORT" and "STORE" not in cmd):
        return True
    if cmd[0] == "ZPOPMIN":
        return reply == []
    if cmd[0] == "SET" and "GET" not in cmd and ("NX" in cmd or "XX" in cmd):
        return reply is None
    return cmd[0] in NOTHING_DONE and reply == NOTHING_DONE[cmd[0]]


def changes_nothing(op):
    """True when the op, acknowledged with its reply, changed nothing whatever the state was. Such
    an op, when it fits the state the search is in, is placed at once without trying the others
    there: placing it later could only add constraints (it changes no state, and placing it
    removes its real-time bound on the rest). Without this, k concurrent reads make 2^k nodes."""
    if op.ret is None:
        return False
    if op.kind == "keyspace":
        return True
    if op.kind == "cmd":
        return _changes_nothing(op.cmds[0], op.reply)
    if op.kind == "multi":
        r = op.reply[-1]
        return isinstance(r, list) and len(r) == len(op.cmds) and all(
            _changes_nothing(c, x) for c, x in zip(op.cmds, r))
    # A script: only the second command's reply is known.
    return isinstance(op.reply, resp.ReplyError) and op.cmds[0][0] in READS or (
        op.cmds[0][0] in READS and op.cmds[1][0] in READS)


def check(history, budget=5_000_000):
    """Returns (True, None) when the history is linearizable, else (False, report). A search that
    visits `budget` nodes without an answer counts as a failure (reported as undecided)."""
    clients = [ops for _, ops in sorted(history.items()) if ops]
    n = len(clients)
    # A client's ops with a reply come first (replies come in order); the rest were in flight.
    done = [sum(1 for op in ops if op.ret is not None) for ops in clients]
    for ops, d in zip(clients, done):
        assert all(op.ret is not None for op in ops[:d]) and all(op.ret is None for op in ops[d:])
    noop = [[changes_nothing(op) for op in ops] for ops in clients]
    empty = tuple(tuple([None] * len(KEYS)) for _ in range(DBS))
    start = (tuple([0] * n), empty)
    seen = {start}
    stack = [start]
    best = (0, start)
    total = sum(done)
    nodes = 0
    while stack:
        idx, state = stack.pop()
        nodes += 1
        if nodes > budget:
            break
        progress = sum(min(i, d) for i, d in zip(idx, done))
        if progress > best[0]:
            best = (progress, (idx, state))
        if all(i >= d for i, d in zip(idx, done)):
            return True, f"{total} acknowledged operations, {nodes} search nodes"
        # Real time: the next op of a client may come next only if no op still to place had its
        # reply before it was sent. The earliest reply among the next ops bounds them all. An op
        # in flight at a crash ran before the server was gone, or never: it bounds the others by
        # that moment, until it is placed or dropped.
        min_ret = min((clients[c][idx[c]].ret if idx[c] < done[c] else clients[c][idx[c]].deadline)
                      for c in range(n) if idx[c] < len(clients[c]))
        children = []
        for c in range(n):
            if idx[c] >= len(clients[c]):
                continue
            op = clients[c][idx[c]]
            if op.ret is None:
                # In flight at a crash: it never ran, nor the client's later ops (always possible,
                # whatever the time), or it ran before the crash (below).
                drop = (idx[:c] + (len(clients[c]),) + idx[c + 1:], state)
                if drop not in seen:
                    seen.add(drop)
                    children.append((op.deadline, drop))
            if op.inv > min_ret:
                continue
            if noop[c][idx[c]]:
                _, ok = op.apply(state)
                if ok:  # the only child (changes_nothing)
                    child = (idx[:c] + (idx[c] + 1,) + idx[c + 1:], state)
                    children = [] if child in seen else [(0, child)]
                    seen.add(child)
                    break
                continue
            if op.ret is not None:
                new_state, ok = op.apply(state)
            else:
                new_state, ok = _apply_unacked(op, state) if op.deadline >= op.inv else (None, False)
            if ok:
                nidx = idx[:c] + (idx[c] + 1,) + idx[c + 1:]
                child = (nidx, new_state)
                if child not in seen:
                    seen.add(child)
                    children.append((op.ret if op.ret is not None else op.deadline, child))
        # Depth first, the child whose op replied earliest on top.
        children.sort(key=lambda x: -x[0])
        stack.extend(ch for _, ch in children)
    idx, state = best[1]
    verdict = "undecided: the search gave up" if stack else "not linearizable"
    lines = [f"{verdict}: {best[0]} of {total} acknowledged operations placed at best "
             f"({nodes} search nodes); the model's state there:"]
    for db in range(DBS):
        lines.append(f"  db{db}: " + ", ".join(f"{k}={state[db][i]!r}" for i, k in enumerate(KEYS)
                                                 if state[db][i] is not None))
    lines.append("the next operation of each client there (none of them fits):")
    for c in range(n):
        if idx[c] < len(clients[c]):
            lines.append("  " + repr(clients[c][idx[c]]))
            for op in clients[c][idx[c] + 1:idx[c] + 3]:
                lines.append("    then " + repr(op))
    lines.append("the last operations placed:")
    placed = sorted((op for c in range(n) for op in clients[c][max(0, idx[c] - 3):idx[c]]),
                    key=lambda op: op.ret or op.inv)
    lines += ["  " + repr(op) for op in placed[-12:]]
    return False, "\n".join(lines)


def _apply_unacked(op, state):
    """An op in flight at a crash, taken as having happened: any effect the model allows with any
    reply. Its reply is unknown, so each possible outcome is the model's own."""
    view = View(state)
    if op.kind == "cmd":
        expected = run(view, op.db, op.cmds[0])
        return (state if isinstance(expected, Err) else view.freeze()), True
    if op.kind == "multi":
        for c in op.cmds:
            before = view.freeze()
            if isinstance(run(view, op.db, c), Err):
                view = View(before)
        return view.freeze(), True
    if isinstance(run(view, op.db, op.cmds[0]), Err):
        return state, True
    after_first = view.freeze()
    if isinstance(run(view, op.db, op.cmds[1]), Err):
        return after_first, True
    return view.freeze(), True


def keyspace(conn):
    """The model's view of a server's keys (both databases), read with plain commands."""
    out = []
    for db in range(DBS):
        conn.call("SELECT", str(db))
        row = []
        for k in KEYS:
            t = conn.call("TYPE", k)
            if t == b"none":
                row.append(None)
                continue
            ttl = conn.call("TTL", k) > 0
            if t == b"string":
                row.append(("s", conn.call("GET", k), ttl))
            elif t == b"list":
                row.append(("l", tuple(conn.call("LRANGE", k, 0, -1)), ttl))
            elif t == b"hash":
                r = conn.call("HGETALL", k)
                row.append(("h", frozenset(zip(r[0::2], r[1::2])), ttl))
            elif t == b"set":
                row.append(("S", frozenset(conn.call("SMEMBERS", k)), ttl))
            else:
                r = conn.call("ZRANGE", k, 0, -1, "WITHSCORES")
                row.append(("z", frozenset((m, int(float(s))) for m, s in zip(r[0::2], r[1::2])), ttl))
        out.append(tuple(row))
    return tuple(out)


def check_model(server, seed, steps):
    """One client's random operations against redis-server, one at a time: after each, the model's
    state must equal the server's keyspace. Finds a mistake in the model at the command that
    makes it (the concurrent check can only say that no order fits)."""
    for db in (0, 1):
        gen = Generator(random.Random(seed + db), db)
        conn, probe = server.conn(), server.conn()
        conn.call("FLUSHALL")
        conn.call("SELECT", str(db))
        state = keyspace(probe)
        for step in range(steps):
            op = gen.op(0)
            wire = op.wire()
            conn.send(wire)
            replies = [conn.read() for _ in wire]
            op.reply = replies[0] if op.kind != "multi" else replies
            new, ok = op.apply(state)
            real = keyspace(probe)
            if not ok or new != real:
                print(f"FAIL (seed {seed}): the model is wrong at step {step} in db{db}: {op!r}\n"
                      f"  model before: {state}\n  model after:  {new}\n  server after: {real}")
                return 1
            state = new
        conn.close()
        probe.close()
    print(f"PASS: the model followed redis-server for {steps} operations in each database")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--clients", type=int, default=6)
    p.add_argument("--policy", default="everysec")
    p.add_argument("--kills", type=int, default=0)
    p.add_argument("--io-threads", type=int, default=3)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--against-redis", action="store_true",
                   help="run the clients against redis-server (no keg chaos): checks the model")
    p.add_argument("--save", metavar="FILE", help="on a failure, write the history there (pickle)")
    p.add_argument("--recheck", metavar="FILE", help="check a history --save wrote, and exit")
    p.add_argument("--check-model", type=int, metavar="STEPS", default=0,
                   help="check the model against redis-server, one operation at a time, and exit")
    a = p.parse_args()
    if a.kills and a.policy != "always":
        p.error("--kills needs --policy always (under everysec an acknowledged write may be lost)")
    if a.recheck:
        import pickle
        with open(a.recheck, "rb") as f:
            history = pickle.load(f)
        ok, report = check(history)
        print(report if not ok else "PASS: linearizable")
        return 0 if ok else 1
    seed = a.seed if a.seed is not None else random.randrange(1 << 30)
    # Odd seeds: collections of two or more elements are stored per element (docs/types.md), and
    # converted there from whole and back as they grow and shrink.
    tiny = ["--hash-max-listpack-entries", "1", "--set-max-listpack-entries", "1",
            "--set-max-intset-entries", "1", "--zset-max-listpack-entries", "1",
            "--list-max-listpack-size", "1"] if seed % 2 else []
    print(f"seed {seed}: {a.clients} clients, {a.seconds} s, appendfsync {a.policy}, "
          f"io-threads {a.io_threads}, {a.kills} kills, collections stored "
          f"{'per element from 2 elements' if tiny else 'whole (small)'}", flush=True)
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="keg-lin-") as tmp:
        if a.check_model:
            redis = RedisServer(os.path.join(tmp, "data"), log=os.path.join(tmp, "redis.log"))
            redis.start()
            try:
                return check_model(redis, seed, a.check_model)
            finally:
                redis.stop()
        if a.against_redis:
            keg = RedisServer(os.path.join(tmp, "data"), log=os.path.join(tmp, "redis.log"))
        else:
            keg = Keg(os.path.join(tmp, "data"), "--appendfsync", a.policy, "--io-threads",
                      str(a.io_threads), "--enable-debug-command", "yes", "--data-file-size", "1mb",
                      "--compaction-frag-trigger", "20", *tiny, log=os.path.join(tmp, "keg.log"))
        keg.start()
        ctx = Context(keg, a.seconds, a.kills)
        clients = [Client(i, 0 if i % 3 else 1, ctx, rng.randrange(1 << 30)) for i in range(a.clients)]
        filler = Filler(ctx, rng.randrange(1 << 30))
        chaos = Chaos(ctx, rng.randrange(1 << 30), keg_only=not a.against_redis)
        for t in (*clients, filler, chaos):
            t.start()
        # The kills and restarts come from this thread: the server dies with the thread that
        # started it (PR_SET_PDEATHSIG), so it must outlive the run.
        t0 = time.monotonic()
        for at in sorted(rng.uniform(0.1, 0.9) * a.seconds for _ in range(a.kills)):
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            ctx.crashing.set()
            keg.kill()
            ctx.kills_ns.append(time.monotonic_ns())
            chaos.note("SIGKILL and restart")
            keg.start()
            # What the restart recovered, read before any client is back: an op of its own, whose
            # reply is the whole keyspace.
            snap = Op(999_000 + len(ctx.kills_ns), 0, "keyspace", [])
            snap.inv = time.monotonic_ns()
            conn = keg.conn()
            snap.reply = keyspace(conn)
            conn.close()
            snap.ret = time.monotonic_ns()
            ctx.history[snap.client] = [snap]
            ctx.crashing.clear()
        time.sleep(max(0.0, t0 + a.seconds - time.monotonic()))
        ctx.stop.set()
        if keg.alive():
            keg.proc.send_signal(signal.SIGCONT)
        for t in (*clients, filler, chaos):
            t.join(timeout=120)
        errors = [t.error for t in clients if t.error is not None]
        cold = ""
        if not a.against_redis and keg.alive():
            info = keg.call("INFO", "keg").decode()
            cold = ", ".join(line.strip() for line in info.splitlines()
                             if line.startswith(("cold_read_commands:", "cold_read_keys:")))
        status = keg.stop()
        if errors:
            print(f"FAIL (seed {seed}): a client failed: {errors[0]!r}")
            print(keg.log_text()[-3000:])
            return 1
        if status not in (0, None):
            print(f"FAIL (seed {seed}): keg-server exited with {status}")
            print(keg.log_text()[-3000:])
            return 1
        ops = sum(len(v) for v in ctx.history.values())
        print(f"{ops} operations by {len(ctx.history)} connections; chaos: "
              + ", ".join(f"{k} {v}" for k, v in sorted(chaos.events.items()))
              + (f"; {cold}" if cold else ""), flush=True)
        for ops in ctx.history.values():
            for op in ops:
                if op.ret is None:
                    # Sent after the kill, on a connection not yet seen dead: it never ran.
                    op.deadline = min((k for k in ctx.kills_ns if k >= op.inv), default=op.inv - 1)
        t0 = time.monotonic()
        ok, report = check(ctx.history)
        print(f"checked in {time.monotonic() - t0:.1f} s: {report.splitlines()[0]}")
        if not ok:
            print(f"FAIL (seed {seed}):\n{report}")
            if a.save:
                import pickle
                with open(a.save, "wb") as f:
                    pickle.dump(ctx.history, f)
                with open(a.save + ".chaos", "w") as f:
                    f.writelines(f"{t / 1e6:.3f} ms {what}\n" for t, what in chaos.log)
                print(f"history written to {a.save} (--recheck {a.save})")
            return 1
        print("PASS: linearizable")
        return 0


if __name__ == "__main__":
    sys.exit(main())
