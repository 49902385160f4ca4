#!/usr/bin/env node
// channel.js — an independent NATS client (the `nats` package from npm) on
// conat channels, for the conatfs interop tests.  It knows nothing of
// conatfs: callers pass the subject as docs/nats-mapping.md defines it
// ("conat." T(scope) ".pubsub." T(name) ["." T(path)]).
//
//   node channel.js URL pub SUBJECT...   publishes stdin, byte for byte, as one message
//                                        on each SUBJECT, in order
//   node channel.js URL sub SUBJECT N    prints "ready" once the server knows the
//                                        subscription, then N messages, each as one
//                                        line of JSON: {"subject": ..., "data": ...}
//                                        (so a newline in a message stays in it)
//
// Exit status: 0 done, 1 anything else (message on stderr).
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

function writeLine(text) {
  return new Promise((resolve) => process.stdout.write(text + "\n", resolve));
}

async function run(nc, cmd, args) {
  switch (cmd) {
    case "pub": {
      const data = await readStdin();
      for (const subject of args) nc.publish(subject, data);
      await nc.flush();
      return 0;
    }
    case "sub": {
      const sub = nc.subscribe(args[0], { max: Number(args[1]) });
      await nc.flush(); // the server knows the interest now
      await writeLine("ready");
      for await (const m of sub) {
        const data = Buffer.from(m.data).toString("utf8");
        await writeLine(JSON.stringify({ subject: m.subject, data }));
      }
      return 0;
    }
    default:
      throw new Error(`unknown command ${cmd}`);
  }
}

async function main() {
  const [url, cmd, ...args] = process.argv.slice(2);
  if (!url || !cmd) {
    process.stderr.write("usage: node channel.js URL pub SUBJECT... | sub SUBJECT N\n");
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
    process.stderr.write(`channel.js: ${err && err.message ? err.message : err}\n`);
    process.exit(1);
  },
);
