import assert from "node:assert/strict";
import { binnedLogPpl, plotSpec, renderSvg, svgToPng, writePlot } from "../../tools/lib/ppl_plot.ts";

Deno.test("binnedLogPpl: the mean NLL of each bin, at the bin's last position, the short tail included", () => {
  const pts = binnedLogPpl([{ label: "a", nlls: [1, 3, 2, 2, 5] }], 2);
  assert.deepEqual(pts, [
    { policy: "a", position: 2, logppl: 2 },
    { policy: "a", position: 4, logppl: 2 },
    { policy: "a", position: 5, logppl: 5 },
  ]);
  assert.throws(() => binnedLogPpl([], 0), /bin must be a positive integer/);
});

Deno.test("plot: one line per policy, labelled, as SVG and a PNG of twice its size", async () => {
  const series = [
    { label: "dense", nlls: Array.from({ length: 300 }, (_, i) => 1 + i / 50) },
    { label: "streaming (S=4, W=64)", nlls: Array.from({ length: 300 }, () => 1.2) },
  ];
  const opts = {
    title: "test stream",
    bin: 10,
    marks: [{ at: 64, label: "cache full" }],
    width: 400,
    height: 200,
  };
  const svg = await renderSvg(plotSpec(series, opts));
  assert.ok(svg.startsWith("<svg"), svg.slice(0, 40));
  for (
    const text of ["dense", "streaming (S=4, W=64)", "test stream", "cache full", "stream position (tokens)"]
  ) {
    assert.ok(svg.includes(text), `SVG lacks "${text}"`);
  }
  // Two line marks (one path per policy) in the line layer.
  const lines = svg.match(/<path[^>]*aria-roledescription="line mark"/g) ?? [];
  assert.equal(lines.length, 2, `expected 2 line paths, found ${lines.length}`);
  const png = svgToPng(svg);
  assert.deepEqual([...png.slice(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const view = new DataView(png.buffer, png.byteOffset);
  const svgWidth = Number(svg.match(/<svg[^>]* width="(\d+)"/)![1]);
  assert.equal(view.getUint32(16), 2 * svgWidth); // IHDR width

  const dir = await Deno.makeTempDir();
  try {
    const files = await writePlot(`${dir}/fig.png`, series, opts);
    assert.deepEqual(files, { svg: `${dir}/fig.svg`, png: `${dir}/fig.png` });
    assert.ok((await Deno.readTextFile(files.svg)).includes("dense"));
    assert.ok((await Deno.stat(files.png)).size > 1000);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
