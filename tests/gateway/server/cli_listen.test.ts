/**
 * `deno task start` on a port that is already taken (issue #12): one line on stderr naming the address
 * and the reason, exit code 2, no stack trace.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { modelPath } from "../_gateway.ts";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));

Deno.test("cli: starting on a busy port prints one line and exits 2", async () => {
  const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (busy.addr as Deno.NetAddr).port;
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "gateway/main.ts",
        "--model",
        modelPath(),
        "--host",
        "127.0.0.1",
        "--port",
        String(port),
      ],
      cwd: ROOT,
      stdout: "null",
      stderr: "piped",
      signal: AbortSignal.timeout(60_000),
    }).output();
    const stderr = new TextDecoder().decode(out.stderr).trim();
    assert.equal(out.code, 2, stderr);
    assert.equal(stderr, `sinkstream: cannot listen on 127.0.0.1:${port}: address in use`);
  } finally {
    busy.close();
  }
});
