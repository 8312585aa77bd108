/**
 * The web chat page in a real headless Chromium against the real gateway (`deno task start`
 * with stories260K as a subprocess on a free loopback port; no mocks): a message streams in
 * delta by delta, the cache panel shows the session's StreamingLLM settings and statistics, and
 * Cancel stops a long generation. Skipped, with a message, when /usr/bin/chromium is missing
 * (CI installs it: .ci/run).
 */
import assert from "node:assert/strict";
import { type BrowserContext, chromium } from "playwright-core";

const CHROMIUM = "/usr/bin/chromium";
const REPO = new URL("../../", import.meta.url).pathname;
const MODEL = new URL("../../../shared/models/stories260K/stories260K.bin", import.meta.url).pathname;
const WINDOW = 64;
const SCREENSHOT = "/tmp/sinkstream_web_chat.png";

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

const haveChromium = exists(CHROMIUM);
if (!haveChromium) {
  console.warn(`SKIPPED web chat browser test: ${CHROMIUM} not found (apt-get install -y chromium)`);
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** In-page script: snapshot the last assistant message's text on every DOM mutation of the log. */
const RECORD_SNAPSHOTS = `(() => {
  globalThis.__snapshots = [];
  const log = document.getElementById("log");
  new MutationObserver(() => {
    const last = log.querySelector(".msg.assistant:last-child .text");
    if (last) globalThis.__snapshots.push(last.textContent ?? "");
  }).observe(log, { childList: true, subtree: true, characterData: true });
})()`;

/** In-page script: click Cancel the moment the next reply shows its first text (mid-stream). */
const CANCEL_ON_FIRST_TEXT = `(() => {
  const log = document.getElementById("log");
  const before = log.querySelectorAll(".msg.assistant").length;
  const obs = new MutationObserver(() => {
    const msgs = log.querySelectorAll(".msg.assistant");
    const last = msgs[msgs.length - 1];
    if (msgs.length > before && (last.querySelector(".text")?.textContent ?? "") !== "") {
      obs.disconnect();
      globalThis.__cancelClickedAt = last.querySelector(".text").textContent;
      document.getElementById("cancel").click();
    }
  });
  obs.observe(log, { childList: true, subtree: true, characterData: true });
})()`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface RunningGateway {
  url: string;
  log: () => string;
  stop: () => Promise<void>;
}

async function startGateway(): Promise<RunningGateway> {
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["task", "start", "--host", "127.0.0.1", "--port", String(port), "--window", String(WINDOW)],
    cwd: REPO,
    env: { SINKSTREAM_MODEL: MODEL },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let output = "";
  const decoder = new TextDecoder();
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) {
      output = (output + decoder.decode(chunk, { stream: true })).slice(-8000);
    }
  };
  const pumped = Promise.all([pump(child.stdout), pump(child.stderr)]);
  let exited = false;
  child.status.then(() => (exited = true));
  const stop = async () => {
    if (!exited) child.kill("SIGTERM");
    const timer = setTimeout(() => !exited && child.kill("SIGKILL"), 10_000);
    await child.status;
    clearTimeout(timer);
    await pumped;
  };
  const url = `http://127.0.0.1:${port}`;
  // First start may compile the native library (make -C csrc): allow time for it.
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (exited) {
      await pumped;
      throw new Error(`gateway exited during start-up:\n${output}`);
    }
    try {
      const res = await fetch(`${url}/healthz`);
      await res.body?.cancel();
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`gateway not healthy within 120 s:\n${output}`);
    }
    await sleep(100);
  }
  return { url, log: () => output, stop };
}

Deno.test({
  name: "web chat: streams a reply, shows cache stats, cancels a long generation (headless Chromium)",
  ignore: !haveChromium,
  // Playwright and the subprocess keep handles the sanitizers don't know about; we close them ourselves.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const gateway = await startGateway();
    const userDataDir = await Deno.makeTempDir({ prefix: "sinkstream-chromium-" });
    let browser: BrowserContext | null = null;
    try {
      // A fresh profile each run (Playwright's way of passing --user-data-dir).
      browser = await chromium.launchPersistentContext(userDataDir, {
        executablePath: CHROMIUM,
        headless: true,
        viewport: { width: 1100, height: 760 },
        args: [
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-quic",
          "--no-first-run",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-sync",
        ],
      });
      const page = browser.pages()[0] ?? await browser.newPage();
      const pageErrors: string[] = [];
      page.on("pageerror", (e) => pageErrors.push(String(e)));
      page.on("console", (m) => {
        if (m.type() === "error") pageErrors.push(m.text());
      });

      await page.goto(gateway.url + "/");
      await page.waitForSelector('#conn[data-state="open"]', { timeout: 15_000 });
      // Settings from session.created, before any response.
      assert.equal(await page.textContent('[data-stat="sinks"]'), "4");
      assert.equal(await page.textContent('[data-stat="window"]'), String(WINDOW));
      assert.equal(await page.textContent('[data-stat="policy"]'), "streaming");
      assert.match((await page.textContent("#session-id")) ?? "", /^sess_/);

      // Record every state the streaming reply passes through (one snapshot per DOM mutation).
      await page.evaluate(RECORD_SNAPSHOTS);

      await page.fill("#input", "Once upon a time, there was a little girl named Lily.");
      await page.click("#send");
      await page.waitForSelector(".msg.user", { timeout: 5_000 });
      const done = await page.waitForSelector(
        '.msg.assistant[data-status="completed"], .msg.assistant[data-status="incomplete"]',
        { timeout: 60_000 },
      );
      const finalText = (await done.$eval(".text", (e) => e.textContent)) ?? "";
      assert.ok(finalText.trim().length > 0, "the reply has text");
      const snapshots = (await page.evaluate("globalThis.__snapshots")) as string[];
      const partial = new Set(snapshots.filter((s) => s !== "" && s !== finalText));
      assert.ok(partial.size >= 2, `expected >= 2 distinct partial states before done, saw ${partial.size}`);
      for (const p of partial) {
        assert.ok(finalText.startsWith(p), `partial state is a prefix of the reply: ${p}`);
      }

      // Stats panel after response.done: the StreamingLLM cache of this session.
      assert.equal(await page.textContent('[data-stat="sinks"]'), "4");
      assert.equal(await page.textContent('[data-stat="window"]'), String(WINDOW));
      assert.equal(await page.textContent('[data-stat="policy"]'), "streaming");
      const num = async (name: string) =>
        Number(((await page.textContent(`[data-stat="${name}"]`)) ?? "").replace(/,/g, ""));
      const cached = await num("cached");
      const seen = await num("seen");
      const evicted = await num("evicted");
      assert.ok(cached > 0 && cached <= WINDOW, `cached ${cached} within the window`);
      assert.ok(seen > 0, `seen ${seen}`);
      assert.equal(evicted, Math.max(0, seen - cached), "evicted = seen - cached");
      assert.match((await page.textContent('[data-stat="usage"]')) ?? "", /^\d+ in \/ \d+ out$/);
      await page.screenshot({ path: SCREENSHOT, fullPage: true });

      // A long generation, cancelled from the UI while it streams.
      await page.click("details.settings > summary");
      await page.fill("#max-tokens", "100000");
      await page.click("#apply");
      await page.click("details.settings > summary");
      await page.evaluate(CANCEL_ON_FIRST_TEXT);
      await page.fill("#input", "Tell me a very long story about a dog and a ball.");
      await page.click("#send");
      const cancelled = await page.waitForSelector(
        ".msg.assistant:last-child[data-status]:not([data-status=in_progress])",
        {
          timeout: 60_000,
        },
      );
      assert.equal(await cancelled.getAttribute("data-status"), "cancelled");
      assert.match((await cancelled.$eval(".status", (e) => e.textContent)) ?? "", /cancelled/);
      const outTokens = Number(/(\d+) out/.exec((await page.textContent('[data-stat="usage"]')) ?? "")?.[1]);
      assert.ok(outTokens > 0 && outTokens < 100000, `cancelled after ${outTokens} tokens`);
      console.log(`streamed ${partial.size} partial states; cancelled after ${outTokens} output tokens`);
      // The page is ready for the next round.
      assert.equal(await page.isDisabled("#send"), false);
      assert.equal(await page.isDisabled("#cancel"), true);
      assert.equal(await page.isHidden("#error"), true, "no error shown");
      assert.deepEqual(pageErrors, []);
    } catch (err) {
      console.error("gateway output:\n" + gateway.log());
      throw err;
    } finally {
      await browser?.close();
      await gateway.stop();
      await Deno.remove(userDataDir, { recursive: true }).catch(() => {});
    }
  },
});
