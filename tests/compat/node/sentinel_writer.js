// A writer through ioredis's Sentinel support, unmodified (tests/compat/test_sentinel.py starts it
// while it fails keg over): SET io<i> i, then WAIT 2 200. Prints "1 <i>" once one replica
// acknowledged write i and "2 <i>" once both did, one line each as it happens; ends when its stdin
// closes, printing "errors <n>".
// Usage: node sentinel_writer.js <slow factor> <sentinel port>...
"use strict";
const Redis = require("ioredis5");

const slow = Number(process.argv[2]);
const ports = process.argv.slice(3).map(Number);
const redis = new Redis({
  sentinels: ports.map((port) => ({ host: "127.0.0.1", port })),
  name: "mymaster",
  // A stopped primary answers nothing: give up on a command, and its connection, after this.
  commandTimeout: 500 * slow,
  maxRetriesPerRequest: 1,
  // WAIT counts the acknowledgements of its own connection's writes: a WAIT queued while
  // reconnecting, or resent on the next connection, would confirm nothing of the SET before it on
  // the old one (and report every replica). Fail such commands instead: the loop repeats the SET.
  enableOfflineQueue: false,
  autoResendUnfulfilledCommands: false,
  // A demoted primary answers writes with READONLY: reconnect, asking the sentinels again.
  reconnectOnError: (err) => err.message.startsWith("READONLY"),
  retryStrategy: () => 50,
  sentinelRetryStrategy: () => 50,
});
redis.on("error", () => {}); // counted where a command fails

let stop = false;
process.stdin.on("close", () => {
  stop = true;
});
process.stdin.resume();

(async () => {
  let errors = 0;
  for (let i = 0; !stop; ) {
    try {
      await redis.set(`io${i}`, String(i));
      const n = await redis.call("WAIT", 2, 200);
      if (n >= 1) process.stdout.write(`1 ${i}\n`);
      if (n >= 2) process.stdout.write(`2 ${i}\n`);
      i += 1;
    } catch (e) {
      errors += 1;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  process.stdout.write(`errors ${errors}\n`);
  redis.disconnect();
  process.exit(0);
})();
