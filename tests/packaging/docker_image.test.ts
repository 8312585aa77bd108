/**
 * The Dockerfile cannot be built here (no Docker engine on these machines), so this checks what can
 * be checked without one: the runtime stage's file set — every `COPY --from=build /app/...` line,
 * read from the Dockerfile itself — is enough to run the gateway. The files are laid out in a temp
 * folder exactly as the image has them, and the image's entrypoint (`deno task start`) runs there
 * with the image's environment (SINKSTREAM_LIB, so nothing is built) until /readyz answers. Also:
 * .dockerignore keeps every build input, and the image runs as a non-root user.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const MODEL = fileURLToPath(new URL("../../../shared/models/stories260K/stories260K.bin", import.meta.url));
const dockerfile = await Deno.readTextFile(`${ROOT}/Dockerfile`);
const runtimeStage = dockerfile.slice(dockerfile.indexOf(" AS runtime"));

/**
 * [source relative to /app, destination relative to WORKDIR /app] of the runtime stage, with
 * Docker's rules: a directory source's contents go into the destination; a file goes to
 * destination/basename when the destination ends in "/" or there are several sources.
 */
async function runtimeCopies(): Promise<[string, string][]> {
  const out: [string, string][] = [];
  for (const line of runtimeStage.split("\n")) {
    const m = /^COPY --from=build (?:--chown=\S+ )?(.+)$/.exec(line.trim());
    if (!m) continue;
    const parts = m[1].split(/\s+/);
    const dest = parts.pop()!.replace(/^\.\//, "");
    for (const src of parts) {
      if (!src.startsWith("/app/")) continue; // the deno binary and its cache
      const rel = src.slice("/app/".length).replace(/\/$/, "");
      const isDir = (await Deno.stat(`${ROOT}/${rel}`)).isDirectory;
      const intoDir = isDir ? false : dest === "" || dest.endsWith("/") || parts.length > 1;
      const target = intoDir ? `${dest.replace(/\/$/, "")}/${rel.split("/").pop()}` : dest.replace(/\/$/, "");
      out.push([rel, target.replace(/^\//, "")]);
    }
  }
  return out;
}

async function copyTree(src: string, dst: string): Promise<void> {
  const st = await Deno.lstat(src);
  if (st.isSymlink) return await Deno.symlink(await Deno.readLink(src), dst);
  if (st.isFile) return await Deno.copyFile(src, dst);
  await Deno.mkdir(dst, { recursive: true });
  for await (const e of Deno.readDir(src)) await copyTree(`${src}/${e.name}`, `${dst}/${e.name}`);
}

Deno.test("Dockerfile: .dockerignore keeps every build input; the image runs as a non-root user", async () => {
  const ignore = (await Deno.readTextFile(`${ROOT}/.dockerignore`)).split("\n").map((l) => l.trim());
  for (const needed of ["csrc", "kernels", "runtime", "gateway", "mod.ts", "deno.json", "deno.lock"]) {
    assert.ok(!ignore.includes(needed), `${needed} must reach the build context`);
  }
  assert.match(runtimeStage, /^USER (?!root|0\b)\S+/m);
  assert.match(runtimeStage, /^EXPOSE 8000$/m);
  assert.match(runtimeStage, /^ENTRYPOINT \["deno", "task", "start"/m);
});

Deno.test({
  name: "Dockerfile: the runtime stage's files alone start the gateway (entrypoint, image env)",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const copies = await runtimeCopies();
  const dests = copies.map(([, d]) => d);
  for (
    const d of ["deno.json", "mod.ts", "runtime", "gateway", "node_modules", "csrc/build/libsinkstream.so"]
  ) {
    assert.ok(dests.includes(d), `runtime stage copies ${d} (got ${dests.join(", ")})`);
  }
  const app = await Deno.makeTempDir({ prefix: "sinkstream-image-" });
  const child = { proc: null as Deno.ChildProcess | null };
  try {
    for (const [src, dst] of copies) {
      await Deno.mkdir(`${app}/${dst}`.replace(/\/[^/]*$/, ""), { recursive: true });
      await copyTree(`${ROOT}/${src}`, `${app}/${dst}`);
    }
    const lib = `${app}/csrc/build/libsinkstream.so`;
    child.proc = new Deno.Command(Deno.execPath(), {
      args: ["task", "start", "--host", "127.0.0.1", "--port", "0"],
      cwd: app,
      env: { SINKSTREAM_LIB: lib, SINKSTREAM_MODEL: MODEL, DENO_NO_UPDATE_CHECK: "1", DENO_NO_PROMPT: "1" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const reader = child.proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    const deadline = Date.now() + 30_000;
    let url: string | undefined;
    while (!url && Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      out += value;
      url = /listening on (http:\/\/\S+?)\/?\s/.exec(out)?.[1];
    }
    assert.ok(url, `the gateway printed its URL: ${out}`);
    const ready = await fetch(`${url}/readyz`);
    assert.equal(ready.status, 200);
    assert.equal((await ready.json()).status, "ready");
    // Nothing was built in the image's tree: the library is the one the image ships.
    const built = await Array.fromAsync(Deno.readDir(`${app}/csrc/build`));
    assert.deepEqual(built.map((e) => e.name), ["libsinkstream.so"]);
    reader.releaseLock();
  } finally {
    if (child.proc) {
      child.proc.kill("SIGTERM");
      await child.proc.status;
      await child.proc.stdout.cancel().catch(() => {});
      await child.proc.stderr.cancel().catch(() => {});
    }
    await Deno.remove(app, { recursive: true });
  }
});
