#!/usr/bin/env node
// inotify-put.js — an independent NATS client (the `nats` package from npm)
// that changes one key of a conatfs store, for tests/e2e/test_inotify.py.
// It knows nothing of conatfs: the caller passes the bucket and key names
// as docs/nats-mapping.md defines them.
//
//   node inotify-put.js URL BUCKET KEY VALUE    put VALUE
//   node inotify-put.js URL BUCKET KEY          delete KEY
"use strict";

const { connect } = require("nats");

async function main() {
  const [url, bucket, key, value] = process.argv.slice(2);
  const nc = await connect({ servers: url });
  try {
    const kv = await nc.jetstream().views.kv(bucket, { bindOnly: true });
    if (value === undefined) await kv.delete(key);
    else await kv.put(key, new TextEncoder().encode(value));
  } finally {
    await nc.drain();
  }
}

main().catch((err) => {
  console.error(err.message);
  process.exit(1);
});
