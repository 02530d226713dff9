// Reads and writes JetStream objects and KV entries with the official JavaScript client (npm
// `nats` v2), so the C++ tests can check that nex's NATS layer interoperates with a client
// nobody here wrote.
//
//   node interop.mjs <nats-url> read  <manifest.json>   verify objects/KV written by nex
//   node interop.mjs <nats-url> write <manifest.json>   write objects/KV for nex to read
//
// manifest: {"object_bucket": B, "objects": [{"name": N, "file": F}],
//            "kv_bucket": K, "kv": [{"key": K, "file": F}]}
// Exits 0 when everything matched, 1 (printing each problem) otherwise.
import { connect } from "nats";
import { readFileSync } from "node:fs";

const [url, mode, manifestPath] = process.argv.slice(2);

// nats.js v2 builds the meta subject with btoa() on the JS string: names outside Latin-1 throw,
// and Latin-1 names are encoded as single bytes where Go (and ADR-20) use UTF-8. Handing the
// client the name's UTF-8 bytes as a "binary string" makes it address the same subject as Go.
// (The object's JSON "name" it writes is then the binary string; nex and Go write UTF-8.)
const wireName = (name) => Buffer.from(name, "utf8").toString("latin1");
const manifest = JSON.parse(readFileSync(manifestPath, "utf8"));
const problems = [];

function streamOf(bytes) {
  let offset = 0;
  return new ReadableStream({
    pull(controller) {
      if (offset >= bytes.length) return controller.close();
      const end = Math.min(offset + 1024 * 1024, bytes.length);
      controller.enqueue(bytes.subarray(offset, end));
      offset = end;
    },
  });
}

async function readAll(stream) {
  const parts = [];
  let size = 0;
  for await (const part of stream) {
    parts.push(part);
    size += part.length;
  }
  return Buffer.concat(parts, size);
}

const nc = await connect({ servers: url });
const js = nc.jetstream();
try {
  const os = await js.views.os(manifest.object_bucket);
  const kv = await js.views.kv(manifest.kv_bucket);
  for (const { name, file } of manifest.objects) {
    const expected = readFileSync(file);
    if (mode === "write") {
      await os.put({ name: wireName(name) }, streamOf(expected));
      continue;
    }
    const result = await os.get(wireName(name));
    if (result === null) {
      problems.push(`object ${JSON.stringify(name)}: not found`);
      continue;
    }
    const data = await readAll(result.data);
    const err = await result.error;
    if (err) problems.push(`object ${JSON.stringify(name)}: ${err.message}`);
    if (!data.equals(expected)) {
      problems.push(`object ${JSON.stringify(name)}: ${data.length} bytes differ from the ${expected.length} expected`);
    }
    if (result.info.size !== expected.length) {
      problems.push(`object ${JSON.stringify(name)}: info.size ${result.info.size} != ${expected.length}`);
    }
  }
  for (const { key, file } of manifest.kv) {
    const expected = readFileSync(file);
    if (mode === "write") {
      await kv.put(key, expected);
      continue;
    }
    const entry = await kv.get(key);
    if (entry === null) {
      problems.push(`kv ${key}: not found`);
    } else if (!Buffer.from(entry.value).equals(expected)) {
      problems.push(`kv ${key}: value differs`);
    }
  }
  if (mode === "read") {
    // The listing must show the names as nex wrote them (proper UTF-8 in the metadata).
    const listed = new Set((await os.list()).map((i) => i.name));
    for (const { name } of manifest.objects) {
      if (!listed.has(name)) problems.push(`object ${JSON.stringify(name)}: missing from list()`);
    }
  }
} catch (e) {
  problems.push(`error: ${e.stack ?? e}`);
} finally {
  await nc.close();
}
for (const p of problems) console.error(p);
console.log(`${mode}: ${manifest.objects.length} objects, ${manifest.kv.length} kv entries, ${problems.length} problems`);
process.exit(problems.length === 0 ? 0 : 1);
