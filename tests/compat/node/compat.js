// Unmodified Node.js clients against keg-server: ioredis 5 and 6, node-redis 4 and 5, the
// Lua-based libraries on top of them: redlock (locks) and rate-limiter-flexible, and pub/sub:
// ioredis 6 (RESP3) and node-redis 5 subscribers, two Socket.IO servers with
// @socket.io/redis-adapter exchanging broadcasts through keg, and the Bull job queue.
// Usage: KEG_SERVER=/path/to/keg-server node compat.js   (exit 0 when every check passes)
'use strict';
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function startKeg() {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'keg_compat_node_'));
  const proc = spawn(process.env.KEG_SERVER || 'keg-server',
                     ['--port', String(port), '--dir', path.join(dir, 'data'),
                      '--logfile', path.join(dir, 'keg.log')], { stdio: 'inherit' });
  for (let i = 0; i < 400; i++) {
    const ok = await new Promise((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => { c.destroy(); resolve(true); });
      c.on('error', () => resolve(false));
    });
    if (ok) return { port, proc, dir };
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('keg-server did not start');
}

// The protocol a connection speaks, from the server's CLIENT INFO line ("... resp=3").
async function respOf(info) { return Number(/resp=(\d)/.exec(String(info))[1]); }

async function ioredisChecks(name, Redis, port, expectResp) {
  const r = new Redis({ port, lazyConnect: true, connectionName: 'compat-' + name });
  await r.connect();  // runs ioredis's INFO ready check
  assert.equal(await respOf(await r.client('INFO')), expectResp, name + ' protocol');
  assert.equal(await r.client('GETNAME'), 'compat-' + name);
  const k = name + ':k';
  assert.equal(await r.set(k, 'v1'), 'OK');
  assert.equal(await r.get(k), 'v1');
  assert.equal(await r.exists(k, k, name + ':none'), 2);
  assert.equal(await r.del(k), 1);
  assert.equal(await r.get(k), null);
  // Pipeline.
  const p = r.pipeline();
  for (let i = 0; i < 500; i++) p.set(`${name}:p${i}`, String(i));
  p.get(`${name}:p499`);
  const res = await p.exec();
  assert.equal(res.length, 501);
  assert.deepEqual(res[500], [null, '499']);
  // MULTI / EXEC.
  const tx = await r.multi().set(name + ':t', '1').incr(name + ':t').get(name + ':t').exec();
  assert.deepEqual(tx, [[null, 'OK'], [null, 2], [null, '2']]);
  // Buffer values.
  const buf = Buffer.from([0, 1, 2, 13, 10, 255, 0]);
  assert.equal(await r.set(Buffer.from(name + ':bin'), buf), 'OK');
  assert.deepEqual(await r.getBuffer(name + ':bin'), buf);
  // Errors.
  await assert.rejects(r.call('NOSUCHCOMMAND', 'x'), (e) => {
    assert.ok(e instanceof Redis.ReplyError, 'ReplyError');
    assert.match(e.message, /^ERR unknown command 'NOSUCHCOMMAND'/);
    return true;
  });
  await r.set(name + ':s', 'abc');
  await assert.rejects(r.incr(name + ':s'), /ERR value is not an integer or out of range/);
  await r.quit();
}

async function nodeRedisChecks(name, redis, port, options, expectResp) {
  const c = redis.createClient({ socket: { port, host: '127.0.0.1' }, name: 'compat-' + name, ...options });
  c.on('error', () => {});
  await c.connect();
  assert.equal(await respOf(await c.sendCommand(['CLIENT', 'INFO'])), expectResp, name + ' protocol');
  const k = name + ':k';
  assert.equal(await c.set(k, 'v1'), 'OK');
  assert.equal(await c.get(k), 'v1');
  assert.equal(await c.exists([k, k, name + ':none']), 2);
  assert.equal(await c.del(k), 1);
  assert.equal(await c.get(k), null);
  // Pipeline (commands issued together are sent in one write).
  const replies = await Promise.all(Array.from({ length: 500 }, (_, i) => c.set(`${name}:p${i}`, String(i))));
  assert.equal(replies.length, 500);
  assert.equal(await c.get(`${name}:p499`), '499');
  // MULTI / EXEC.
  const tx = await c.multi().set(name + ':t', '1').incr(name + ':t').get(name + ':t').exec();
  assert.deepEqual(tx, ['OK', 2, '2']);
  // Buffer values.
  const buf = Buffer.from([0, 1, 2, 13, 10, 255, 0]);
  await c.set(name + ':bin', buf);
  const back = redis.commandOptions
    ? await c.get(redis.commandOptions({ returnBuffers: true }), name + ':bin')
    : await c.withTypeMapping({ [redis.RESP_TYPES.BLOB_STRING]: Buffer }).get(name + ':bin');
  assert.deepEqual(Buffer.from(back), buf);
  // Errors.
  await assert.rejects(c.sendCommand(['NOSUCHCOMMAND', 'x']), (e) => {
    assert.match(e.message, /^ERR unknown command 'NOSUCHCOMMAND'/);
    return true;
  });
  await c.set(name + ':s', 'abc');
  await assert.rejects(c.incr(name + ':s'), /ERR value is not an integer or out of range/);
  await c.quit();
}

// redlock 5 on ioredis 5: acquire, contention, extend, release (all Lua scripts: EVALSHA).
async function redlockChecks(port) {
  const Redis = require('ioredis5');
  const Redlock = require('redlock').default;
  const a = new Redis({ port });
  const b = new Redis({ port });
  const lockA = new Redlock([a], { retryCount: 0 });
  const lockB = new Redlock([b], { retryCount: 0 });
  const lock = await lockA.acquire(['res:1'], 2000);
  assert.ok(await a.pttl('res:1') > 1000);
  // Another owner cannot take it while it is held.
  await assert.rejects(lockB.acquire(['res:1'], 2000));
  const extended = await lock.extend(5000);
  assert.ok(await a.pttl('res:1') > 3000);
  await extended.release();
  assert.equal(await a.exists('res:1'), 0);
  // Now the other owner can; its lock is not releasable by a stale handle of the first.
  const lockOfB = await lockB.acquire(['res:1'], 2000);
  await assert.rejects(lock.release());
  assert.equal(await a.exists('res:1'), 1);
  await lockOfB.release();
  // using(): a routine under a lock, several keys at once.
  let ran = false;
  await lockA.using(['res:2', 'res:3'], 1000, async () => { ran = true; });
  assert.ok(ran);
  assert.equal(await a.exists('res:2', 'res:3'), 0);
  a.disconnect();
  b.disconnect();
}

// rate-limiter-flexible's RateLimiterRedis (a Lua script per consume): points, blocking, reset.
async function rateLimiterChecks(port) {
  const Redis = require('ioredis5');
  const { RateLimiterRedis } = require('rate-limiter-flexible');
  const client = new Redis({ port, enableOfflineQueue: false });
  await new Promise((r) => client.once('ready', r));
  const limiter = new RateLimiterRedis({ storeClient: client, keyPrefix: 'rl', points: 5, duration: 2 });
  for (let i = 0; i < 5; i++) {
    const res = await limiter.consume('user1');
    assert.equal(res.remainingPoints, 4 - i);
  }
  await assert.rejects(limiter.consume('user1'), (res) => {
    assert.equal(res.remainingPoints, 0);
    assert.ok(res.msBeforeNext > 0 && res.msBeforeNext <= 2000);
    return true;
  });
  assert.equal((await limiter.get('user1')).consumedPoints, 6);
  assert.equal((await limiter.consume('user2', 2)).remainingPoints, 3);
  await limiter.delete('user1');
  assert.equal((await limiter.consume('user1')).remainingPoints, 4);
  client.disconnect();
}

// Bull 4 (job queue: Lua scripts, lists with BRPOPLPUSH, sorted sets for delayed jobs and
// retries' backoff, pub/sub): 1,000 jobs, a tenth of them delayed, every seventh failing its
// first attempt and retried; each completes exactly once, the delayed ones not before their delay.
async function bullChecks(port) {
  const Queue = require('bull');
  const queue = new Queue('keg-jobs', { redis: { port, host: '127.0.0.1' } });
  const total = 1000;
  const done = new Map();  // i -> attempts made when it completed
  const added = new Map();  // i -> [time added, delay]
  let failures = 0;
  const finished = new Promise((resolve, reject) => {
    queue.on('completed', (job) => {
      const i = job.data.i;
      if (done.has(i)) reject(new Error('job ' + i + ' completed twice'));
      done.set(i, job.attemptsMade);
      if (done.size === total) resolve();
    });
    queue.on('failed', () => { failures++; });
    queue.on('error', reject);
  });
  queue.process(8, async (job) => {
    const { i } = job.data;
    const [at, delay] = added.get(i);
    if (delay > 0 && Date.now() < at + delay) throw new Error('delayed job ' + i + ' ran early');
    if (i % 7 === 0 && job.attemptsMade === 0) throw new Error('first attempt of ' + i + ' fails');
    return i * 2;
  });
  const jobs = [];
  for (let i = 0; i < total; i++) {
    const delay = i % 10 === 3 ? 50 + (i % 150) : 0;
    added.set(i, [Date.now(), delay]);
    jobs.push({ data: { i }, opts: { attempts: 3, backoff: { type: 'fixed', delay: 20 }, delay, removeOnComplete: false } });
  }
  await queue.addBulk(jobs);
  await Promise.race([finished, new Promise((_, rej) => setTimeout(() => rej(new Error(
    `timed out: ${done.size} of ${total} completed, ${failures} failed attempts`)), 60000))]);
  const retried = Math.floor((total - 1) / 7) + 1;
  assert.equal(failures, retried);
  for (let i = 0; i < total; i++) assert.equal(done.get(i), i % 7 === 0 ? 1 : 0, 'attempts of job ' + i);
  const counts = await queue.getJobCounts();
  assert.equal(counts.completed, total);
  assert.equal(counts.failed, 0);
  assert.equal(counts.waiting + counts.active + counts.delayed, 0);
  const last = (await queue.getCompleted(0, 0))[0];
  assert.equal(last.returnvalue, last.data.i * 2);
  await queue.close();
}

// Pub/sub with ioredis 6 (RESP3: messages are pushes, the connection still runs commands) and
// node-redis 5 (its own subscriber connection): channels, patterns, order.
async function pubsubChecks(port) {
  const Redis = require('ioredis6').default;
  const sub = new Redis({ port });
  const pub = new Redis({ port });
  const got = [];
  sub.on('message', (ch, msg) => got.push(['message', ch, msg]));
  sub.on('pmessage', (pat, ch, msg) => got.push(['pmessage', pat, ch, msg]));
  assert.equal(await sub.subscribe('news', 'sport'), 2);
  assert.equal(await sub.psubscribe('n*'), 3);
  assert.equal(await sub.set('k', 'still runs commands'), 'OK');  // RESP3: no subscribed context
  assert.equal(await pub.publish('news', 'a'), 2);
  assert.equal(await pub.publish('sport', 'b'), 1);
  for (let i = 0; i < 100; i++) await pub.publish('nums', String(i));
  for (let i = 0; i < 100 && got.length < 103; i++) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(got.slice(0, 3), [['message', 'news', 'a'], ['pmessage', 'n*', 'news', 'a'], ['message', 'sport', 'b']]);
  assert.deepEqual(got.slice(3).map((m) => m[3]), Array.from({ length: 100 }, (_, i) => String(i)));
  sub.disconnect();
  pub.disconnect();

  const redis = require('redis5');
  const c = redis.createClient({ socket: { port, host: '127.0.0.1' } });
  c.on('error', () => {});
  await c.connect();
  const s = c.duplicate();
  s.on('error', () => {});
  await s.connect();
  const seen = [];
  await s.subscribe('chat', (msg, ch) => seen.push([ch, msg]));
  await s.pSubscribe('ch*', (msg, ch) => seen.push(['p:' + ch, msg]));
  assert.equal(await c.publish('chat', 'hi'), 2);
  for (let i = 0; i < 100 && seen.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(seen.sort(), [['chat', 'hi'], ['p:chat', 'hi']]);
  assert.equal((await c.pubSubNumSub('chat')).chat, 1);
  await s.unsubscribe('chat');
  assert.equal(await c.publish('chat', 'again'), 1);  // the pattern only
  await s.quit();
  await c.quit();
}

// node-redis 5's client-side cache (RESP3, CLIENT TRACKING on): a repeated GET is served from its
// cache, and another client's SET invalidates it (the next GET sees the new value).
async function clientSideCacheChecks(port) {
  const redis = require('redis5');
  const { BasicClientSideCache } = require('redis5');
  const cache = new BasicClientSideCache({ ttl: 0, maxEntries: 0 });
  const c = redis.createClient({ socket: { port, host: '127.0.0.1' }, RESP: 3, clientSideCache: cache });
  const w = redis.createClient({ socket: { port, host: '127.0.0.1' } });
  c.on('error', () => {});
  w.on('error', () => {});
  await c.connect();
  await w.connect();
  await w.set('csc:k', 'v1');
  assert.equal(await c.get('csc:k'), 'v1');  // a miss: fetched, and cached
  assert.equal(await c.get('csc:k'), 'v1');  // a hit
  assert.equal(cache.stats().hitCount, 1);
  assert.equal(await c.sendCommand(['CLIENT', 'GETREDIR']), 0);  // tracking on, no redirection
  await w.set('csc:k', 'v2');  // keg pushes the invalidation to c
  let seen = null;
  for (let i = 0; i < 100 && seen !== 'v2'; i++) {
    seen = await c.get('csc:k');
    if (seen !== 'v2') await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(seen, 'v2');
  await c.quit();
  await w.quit();
}

// Two Socket.IO servers joined by @socket.io/redis-adapter (over ioredis 5) through keg: a
// broadcast, a room emit and fetchSockets() from one server reach the clients of the other.
async function socketIoChecks(port) {
  const http = require('node:http');
  const { Server } = require('socket.io');
  const { io: connectClient } = require('socket.io-client');
  const { createAdapter } = require('@socket.io/redis-adapter');
  const Redis = require('ioredis5');
  const servers = [];
  const clients = [];
  const redisClients = [];
  try {
    for (let i = 0; i < 2; i++) {
      const pub = new Redis({ port });
      const sub = pub.duplicate();
      redisClients.push(pub, sub);
      const httpServer = http.createServer();
      const io = new Server(httpServer, { adapter: createAdapter(pub, sub) });
      io.on('connection', (socket) => {
        socket.on('join', (room, ack) => { socket.join(room); ack('joined'); });
      });
      await new Promise((r) => httpServer.listen(0, '127.0.0.1', r));
      servers.push({ io, httpServer, port: httpServer.address().port });
    }
    for (const srv of servers) {
      const c = connectClient(`http://127.0.0.1:${srv.port}`, { transports: ['websocket'], reconnection: false });
      await new Promise((resolve, reject) => { c.on('connect', resolve); c.on('connect_error', reject); });
      clients.push(c);
    }
    // Each adapter subscribes on its own connection: wait until both servers see each other (the
    // adapter counts them with PUBSUB NUMSUB), as a message published before a subscription is
    // in place reaches nobody (pub/sub is fire and forget, in Redis too).
    for (let i = 0; i < 200 && (await servers[0].io.of('/').adapter.serverCount()) < 2; i++) {
      await new Promise((r) => setTimeout(r, 25));
    }
    assert.equal(await servers[1].io.of('/').adapter.serverCount(), 2);
    const received = (client, event) => new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no ' + event)), 5000);
      client.once(event, (msg) => { clearTimeout(t); resolve(msg); });
    });
    // Broadcast from server 0 reaches the client of server 1 (and its own).
    const both = Promise.all([received(clients[0], 'hello'), received(clients[1], 'hello')]);
    servers[0].io.emit('hello', 'world');
    assert.deepEqual(await both, ['world', 'world']);
    // A room on server 0, emitted to from server 1.
    assert.equal(await clients[0].emitWithAck('join', 'room1'), 'joined');
    const inRoom = received(clients[0], 'roomy');
    servers[1].io.to('room1').emit('roomy', 42);
    assert.equal(await inRoom, 42);
    // fetchSockets() asks every server (a request and its responses through keg; the adapter
    // counts the servers with PUBSUB NUMSUB).
    const sockets = await servers[1].io.fetchSockets();
    assert.equal(sockets.length, 2);
  } finally {
    for (const c of clients) c.close();
    for (const s of servers) {
      s.io.close();
      s.httpServer.close();
    }
    for (const r of redisClients) r.disconnect();
  }
}

async function main() {
  const keg = await startKeg();
  let failed = 0;
  const run = async (label, fn) => {
    try {
      await fn();
      console.log('ok   ' + label);
    } catch (e) {
      failed++;
      console.log('FAIL ' + label + ': ' + (e && e.stack || e));
    }
  };
  try {
    await run('ioredis 5 (RESP2, INFO ready check)', () => ioredisChecks('ioredis5', require('ioredis5'), keg.port, 2));
    await run('ioredis 6 (defaults: HELLO 3 / RESP3)', () => ioredisChecks('ioredis6', require('ioredis6').default, keg.port, 3));
    await run('node-redis 4 (RESP2)', () => nodeRedisChecks('redis4', require('redis4'), keg.port, {}, 2));
    await run('node-redis 5 (defaults)', () => nodeRedisChecks('redis5', require('redis5'), keg.port, {}, 2));
    await run('node-redis 5 (RESP: 3)', () => nodeRedisChecks('redis5r3', require('redis5'), keg.port, { RESP: 3 }, 3));
    await run('redlock 5 (ioredis 5): acquire, contention, extend, release', () => redlockChecks(keg.port));
    await run('rate-limiter-flexible (RateLimiterRedis)', () => rateLimiterChecks(keg.port));
    await run('pub/sub: ioredis 6 (RESP3) and node-redis 5 subscribers', () => pubsubChecks(keg.port));
    await run('Socket.IO 4 with @socket.io/redis-adapter: two servers through keg', () => socketIoChecks(keg.port));
    await run('node-redis 5 client-side caching (RESP3, CLIENT TRACKING)', () => clientSideCacheChecks(keg.port));
    await run('Bull 4: 1,000 jobs with delays and retries', () => bullChecks(keg.port));
  } finally {
    keg.proc.kill('SIGTERM');
    await new Promise((r) => keg.proc.on('exit', r));
    fs.rmSync(keg.dir, { recursive: true, force: true });
  }
  console.log(failed === 0 ? 'all passed' : `${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}

main();
