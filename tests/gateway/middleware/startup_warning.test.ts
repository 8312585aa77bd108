/**
 * `deno task start` warns on stderr, in one line, when it serves beyond loopback without an API key.
 * The model path does not exist, so the gateway stops (exit 2) right after the check, before it listens.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));

async function start(args: string[]): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "gateway/main.ts", "--model", "/nonexistent/model.bin", ...args],
    cwd: ROOT,
    env: { SINKSTREAM_MODEL: "", SINKSTREAM_API_KEYS: "", SINKSTREAM_HOST: "" },
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 2);
  return new TextDecoder().decode(out.stderr);
}

Deno.test("startup: one warning line when listening beyond loopback without --api-key", async () => {
  const open = (await start(["--host", "0.0.0.0"])).split("\n").filter((l) => /warning/.test(l));
  assert.equal(open.length, 1);
  assert.match(open[0], /^sinkstream: warning: listening on 0\.0\.0\.0 without --api-key/);
  assert.doesNotMatch(await start(["--host", "0.0.0.0", "--api-key", "k"]), /warning/);
  assert.doesNotMatch(await start(["--host", "127.0.0.1"]), /warning/);
  assert.doesNotMatch(await start(["--host", "::1"]), /warning/);
});
