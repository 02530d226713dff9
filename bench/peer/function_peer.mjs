// The peer in function_bench's table: a function host in Node.js with the official `nats` npm
// client, running the same JavaScript with `vm` (compiled once, a fresh context per request, as
// nex gives each invocation a fresh global) and the same WebAssembly with `node:wasi` (compiled
// once, a fresh instance per request; stdin/stdout wired to the message, as nex does).
//
//   NATS_URL=... NEX_NPM_DIR=tests/interop node bench/peer/function_peer.mjs FN.js FN.wasm
//
// Serves bench.peer.js and bench.peer.wasm; prints "ready" once subscribed.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import vm from "node:vm";
import { WASI } from "node:wasi";

const require = createRequire(`${process.env.NEX_NPM_DIR}/package.json`);
const { connect } = require("nats");
const [jsPath, wasmPath] = process.argv.slice(2);

const nc = await connect({ servers: process.env.NATS_URL });
const script = new vm.Script(readFileSync(jsPath, "utf8"), { filename: jsPath });
const module = await WebAssembly.compile(readFileSync(wasmPath));
const encoder = new TextEncoder();

function toBytes(value) {
  if (value === undefined || value === null) return new Uint8Array();
  if (typeof value === "string") return encoder.encode(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  return encoder.encode(JSON.stringify(value));
}

nc.subscribe("bench.peer.js", {
  queue: "bench.peer.js",
  callback: async (err, m) => {
    if (err) return;
    const context = vm.createContext({ console: { log() {}, error() {} } });
    try {
      const fn = script.runInContext(context);
      m.respond(toBytes(await fn(m.subject, m.data)));
    } catch (e) {
      m.respond(encoder.encode(String(e)));
    }
  },
});

nc.subscribe("bench.peer.wasm", {
  queue: "bench.peer.wasm",
  callback: async (err, m) => {
    if (err) return;
    const wasi = new WASI({ version: "preview1", args: ["echo.wasm", m.subject], env: {}, returnOnExit: true });
    const imports = { ...wasi.wasiImport };
    let instance;
    const out = [];
    let offset = 0;
    const view = () => new DataView(instance.exports.memory.buffer);
    imports.fd_read = (fd, iovs, count, nread) => {
      if (fd !== 0) return 8;
      const dv = view();
      let total = 0;
      for (let i = 0; i < count; i++) {
        const buf = dv.getUint32(iovs + 8 * i, true), len = dv.getUint32(iovs + 8 * i + 4, true);
        const n = Math.min(len, m.data.length - offset);
        new Uint8Array(instance.exports.memory.buffer, buf, n).set(m.data.subarray(offset, offset + n));
        offset += n;
        total += n;
        if (n < len) break;
      }
      dv.setUint32(nread, total, true);
      return 0;
    };
    imports.fd_write = (fd, iovs, count, nwritten) => {
      const dv = view();
      let total = 0;
      for (let i = 0; i < count; i++) {
        const buf = dv.getUint32(iovs + 8 * i, true), len = dv.getUint32(iovs + 8 * i + 4, true);
        if (fd === 1) out.push(new Uint8Array(instance.exports.memory.buffer, buf, len).slice());
        total += len;
      }
      dv.setUint32(nwritten, total, true);
      return 0;
    };
    try {
      instance = await WebAssembly.instantiate(module, { wasi_snapshot_preview1: imports });
      wasi.start(instance);
      const size = out.reduce((n, b) => n + b.length, 0);
      const reply = new Uint8Array(size);
      let at = 0;
      for (const b of out) { reply.set(b, at); at += b.length; }
      m.respond(reply);
    } catch (e) {
      m.respond(encoder.encode(String(e)));
    }
  },
});

await nc.flush();
console.log("ready");
await nc.closed();
