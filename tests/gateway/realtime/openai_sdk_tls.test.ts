/**
 * The official openai Realtime client, with no test shim at all: the gateway serves TLS with a
 * throw-away CA made by openssl, and the client runs in a child Deno process that trusts that CA
 * (`--cert`), so the SDK builds its wss:// URL and subprotocols exactly as in production.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { sharedEngine } from "../_gateway.ts";
import { createApp } from "../../../gateway/app.ts";
import { ConfigSchema } from "../../../gateway/config/config.ts";

async function openssl(args: string[], cwd: string): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd, stdout: "null", stderr: "piped" }).output();
  if (!out.success) throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(out.stderr)}`);
}

/** A CA and a leaf certificate for 127.0.0.1 signed by it. */
async function makeCerts(dir: string): Promise<{ ca: string; cert: string; key: string }> {
  await openssl([
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "1",
    "-subj",
    "/CN=sinkstream test CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign",
  ], dir);
  await openssl([
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "leaf.key",
    "-out",
    "leaf.csr",
    "-subj",
    "/CN=127.0.0.1",
  ], dir);
  await Deno.writeTextFile(`${dir}/leaf.ext`, "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
  await openssl([
    "x509",
    "-req",
    "-in",
    "leaf.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "leaf.pem",
    "-days",
    "1",
    "-extfile",
    "leaf.ext",
  ], dir);
  return { ca: `${dir}/ca.pem`, cert: `${dir}/leaf.pem`, key: `${dir}/leaf.key` };
}

const hasOpenssl = (() => {
  try {
    return new Deno.Command("openssl", { args: ["version"], stdout: "null", stderr: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
})();
if (!hasOpenssl) console.log("SKIP openai_sdk_tls: openssl is not installed");

Deno.test({
  name: "openai SDK Realtime client over wss:// (TLS, no shim): streamed response with usage",
  ignore: !hasOpenssl,
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "sinkstream-tls-" });
  try {
    const { ca, cert, key } = await makeCerts(dir);
    const { engine, tokenizer } = await sharedEngine();
    const config = ConfigSchema.parse({ port: 0, modelName: "stories260K", apiKeys: ["sk-tls-test"] });
    const gw = createApp({ engine, tokenizer, config, web: false });
    const server = gw.serve({
      hostname: "127.0.0.1",
      port: 0,
      cert: await Deno.readTextFile(cert),
      key: await Deno.readTextFile(key),
    });
    try {
      const client = fileURLToPath(new URL("./_sdk_tls_client.ts", import.meta.url));
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--cert", ca, client, `https://127.0.0.1:${server.addr.port}/v1`, "sk-tls-test"],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stdout = new TextDecoder().decode(out.stdout).trim();
      assert.ok(out.success, `client failed: ${stdout} ${new TextDecoder().decode(out.stderr)}`);
      const r = JSON.parse(stdout.split("\n").at(-1)!);
      assert.equal(r.created.type, "realtime");
      assert.match(r.created.id, /^sess_/);
      assert.equal(r.status, "incomplete");
      assert.equal(r.usage.output_tokens, 12);
      assert.ok(r.usage.input_tokens > 0);
      assert.ok(r.text.length > 0, "streamed text arrived");
    } finally {
      await gw.shutdown();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
