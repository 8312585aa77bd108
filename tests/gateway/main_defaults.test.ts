/**
 * `deno task start` checks the configured session defaults (--policy / --sinks / --window) with the
 * engine's own validator right after the engine is created: settings every response would fail with
 * (sinks >= window) stop the start with one line and exit code 2, instead of a server whose every
 * response fails. Runs gateway/main.ts as a subprocess on the CPU backend.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { ensureNativeLibrary } from "../../runtime/ffi.ts";
import { modelPath } from "./_gateway.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

function cli(args: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "gateway/main.ts", "--model", modelPath(), "--port", "0", "--threads", "1", ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).spawn();
}

Deno.test("start with --sinks 8 --window 8: exit 2 with one line naming the settings", async () => {
  await ensureNativeLibrary(); // build outside the subprocess's time limit
  const out = await cli(["--sinks", "8", "--window", "8"]).output();
  const stderr = new TextDecoder().decode(out.stderr).trim();
  assert.equal(out.code, 2, stderr);
  assert.equal(stderr.split("\n").length, 1, `expected one line, got:\n${stderr}`);
  assert.match(stderr, /^sinkstream: --policy streaming --sinks 8 --window 8: /);
  assert.match(stderr, /n_sinks 8 outside \[0, capacity 8\)/); // the engine's own message
  assert.doesNotMatch(new TextDecoder().decode(out.stdout), /listening/);
});

Deno.test("start with valid defaults (--sinks 4 --window 8) listens", async () => {
  const child = cli(["--sinks", "4", "--window", "8"]);
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!seen.includes("listening on")) {
    const { value, done } = await reader.read();
    if (done) break;
    seen += value;
  }
  child.kill("SIGTERM");
  await reader.cancel();
  const status = await child.status;
  await child.stderr.cancel();
  assert.match(seen, /sinkstream: listening on http:\/\/127\.0\.0\.1:\d+\//);
  assert.equal(status.code, 0);
});
