// interop.js — a Node.js program (the `nats` package) reading and writing
// the same keys as the files of a conatfs mount on the same NATS server.
//
//   npm install nats && node interop.js nats://127.0.0.1:4222 /conat
//
// The store project-demo/settings is the bucket conat_project_2Ddemo-settings
// (the mapping is in docs/nats-mapping.md).
const fs = require("fs");
const path = require("path");
const { connect, StringCodec } = require("nats");

const [server, mount] = process.argv.slice(2);
const dir = path.join(mount, "project-demo", "settings");
const sc = StringCodec();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, fn) {
  for (let i = 0; i < 100; i++) {
    const v = await fn();
    if (v !== undefined) return v;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}

(async () => {
  fs.mkdirSync(dir, { recursive: true });
  const nc = await connect({ servers: server });
  const kv = await nc.jetstream().views.kv("conat_project_2Ddemo-settings", { bindOnly: true });

  await kv.put("from-node", sc.encode("written by nats.js\n"));
  const file = await until("the file", () => {
    try { return fs.readFileSync(path.join(dir, "from-node"), "utf8"); } catch { return undefined; }
  });
  console.log(`file from-node: ${file.trim()}`);

  fs.writeFileSync(path.join(dir, "from-files"), "written through the mount\n");
  const entry = await until("the key", async () => {
    const e = await kv.get("from-files");
    return e && e.value.length ? sc.decode(e.value) : undefined;
  });
  console.log(`key from-files: ${entry.trim()}`);
  await nc.close();
})().catch((err) => { console.error(`interop.js: ${err.message}`); process.exit(1); });
