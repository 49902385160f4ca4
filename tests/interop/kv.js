#!/usr/bin/env node
// kv.js — an independent NATS client (the `nats` package from npm) for the
// conatfs interop tests.  It knows nothing of conatfs: callers pass the
// bucket and key names as docs/nats-mapping.md defines them (channels:
// channel.js).
//
//   node kv.js URL put BUCKET KEY        value from stdin
//   node kv.js URL get BUCKET KEY        value to stdout; exit 2 if absent
//   node kv.js URL del BUCKET KEY
//   node kv.js URL dump BUCKET           JSON: {key: base64 value} of every key
//   node kv.js URL info BUCKET           JSON: {storage, replicas, values}
//   node kv.js URL buckets               one KV bucket per line, sorted
//
// Exit status: 0 done, 2 not found, 1 anything else (message on stderr).
"use strict";

const { connect } = require("nats");

function readStdin() {
  return new Promise((resolve, reject) => {
    const chunks = [];
    process.stdin.on("data", (c) => chunks.push(c));
    process.stdin.on("end", () => resolve(new Uint8Array(Buffer.concat(chunks))));
    process.stdin.on("error", reject);
  });
}

function writeStdout(data) {
  return new Promise((resolve) => process.stdout.write(data, resolve));
}

async function bucket(nc, name) {
  // bindOnly: use the bucket as conatfs made it, never create one.
  return nc.jetstream().views.kv(name, { bindOnly: true });
}

async function run(nc, cmd, args) {
  switch (cmd) {
    case "put": {
      const kv = await bucket(nc, args[0]);
      await kv.put(args[1], await readStdin());
      return 0;
    }
    case "get": {
      const kv = await bucket(nc, args[0]);
      const e = await kv.get(args[1]);
      if (e === null || e.operation !== "PUT") return 2;
      await writeStdout(Buffer.from(e.value));
      return 0;
    }
    case "del": {
      const kv = await bucket(nc, args[0]);
      await kv.delete(args[1]);
      return 0;
    }
    case "dump": {
      const kv = await bucket(nc, args[0]);
      const out = {};
      const keys = [];
      for await (const k of await kv.keys()) keys.push(k);
      for (const k of keys) {
        const e = await kv.get(k);
        if (e !== null && e.operation === "PUT") out[k] = Buffer.from(e.value).toString("base64");
      }
      await writeStdout(JSON.stringify(out) + "\n");
      return 0;
    }
    case "info": {
      const st = await (await bucket(nc, args[0])).status();
      const info = { storage: st.storage, replicas: st.replicas, values: st.values };
      await writeStdout(JSON.stringify(info) + "\n");
      return 0;
    }
    case "buckets": {
      const jsm = await nc.jetstreamManager();
      const names = [];
      for await (const s of jsm.streams.list()) {
        if (s.config.name.startsWith("KV_")) names.push(s.config.name.slice(3));
      }
      names.sort();
      await writeStdout(names.map((n) => n + "\n").join(""));
      return 0;
    }
    default:
      throw new Error(`unknown command ${cmd}`);
  }
}

async function main() {
  const [url, cmd, ...args] = process.argv.slice(2);
  if (!url || !cmd) {
    process.stderr.write("usage: node kv.js URL put|get|del|dump|info|buckets ...\n");
    return 1;
  }
  const nc = await connect({ servers: url, timeout: 5000 });
  try {
    return await run(nc, cmd, args);
  } finally {
    await nc.drain();
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`kv.js: ${err && err.message ? err.message : err}\n`);
    process.exit(1);
  },
);
