// Unmodified Node.js clients against keg-server: ioredis 5 and 6, node-redis 4 and 5, and the
// Lua-based libraries on top of them: redlock (locks) and rate-limiter-flexible.
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
  } finally {
    keg.proc.kill('SIGTERM');
    await new Promise((r) => keg.proc.on('exit', r));
    fs.rmSync(keg.dir, { recursive: true, force: true });
  }
  console.log(failed === 0 ? 'all passed' : `${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}

main();
