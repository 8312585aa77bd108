/**
 * The perplexity experiment's figure (StreamingLLM's Figure 3): log-perplexity against stream position,
 * one line per policy, drawn by Vega-Lite (compiled to a Vega view, rendered to SVG), then rasterised
 * to PNG by resvg.
 */
import * as vega from "vega";
import * as vl from "vega-lite";
import { Resvg } from "@resvg/resvg-js";

export interface PlotSeries {
  label: string;
  /** -log p of each predicted token; nlls[i] predicts stream token i + 1. */
  nlls: number[];
}

export interface PlotOptions {
  title: string;
  /** Tokens per plotted point: the mean NLL (= log-perplexity) of each bin. */
  bin?: number;
  /** Vertical rules with a label, e.g. the cache size and the training length. */
  marks?: { at: number; label: string }[];
  width?: number;
  height?: number;
}

export interface PlotPoint {
  policy: string;
  position: number;
  logppl: number;
}

/** Binned log-perplexity: one point per `bin` predicted tokens, at the bin's last stream position. */
export function binnedLogPpl(series: PlotSeries[], bin: number): PlotPoint[] {
  if (!Number.isInteger(bin) || bin < 1) throw new Error(`bin must be a positive integer, got ${bin}`);
  const points: PlotPoint[] = [];
  for (const s of series) {
    for (let start = 0; start < s.nlls.length; start += bin) {
      const part = s.nlls.slice(start, start + bin);
      const mean = part.reduce((a, b) => a + b, 0) / part.length;
      points.push({ policy: s.label, position: start + part.length, logppl: mean });
    }
  }
  return points;
}

export function plotSpec(series: PlotSeries[], opts: PlotOptions): vl.TopLevelSpec {
  const points = binnedLogPpl(series, opts.bin ?? 32);
  // Each rule's label on its own line at the top, so labels of nearby rules do not overlap.
  const marks = (opts.marks ?? []).map((m, i) => ({ ...m, row: 4 + 14 * i }));
  const end = Math.max(1, ...series.map((s) => s.nlls.length));
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: opts.title,
    width: opts.width ?? 720,
    height: opts.height ?? 360,
    background: "white",
    layer: [
      {
        data: { values: points },
        mark: { type: "line", strokeWidth: 1.6 },
        encoding: {
          x: {
            field: "position",
            type: "quantitative",
            title: "stream position (tokens)",
            scale: { domain: [0, end], nice: false },
          },
          y: {
            field: "logppl",
            type: "quantitative",
            title: `log perplexity (mean over ${opts.bin ?? 32} tokens)`,
          },
          color: {
            field: "policy",
            type: "nominal",
            sort: series.map((s) => s.label),
            legend: { orient: "bottom", title: null, labelLimit: 400, columns: 2 },
          },
        },
      },
      {
        data: { values: marks },
        mark: { type: "rule", strokeDash: [4, 4], color: "#888" },
        encoding: { x: { field: "at", type: "quantitative" } },
      },
      {
        data: { values: marks },
        mark: { type: "text", align: "left", dx: 3, baseline: "top", color: "#555" },
        encoding: {
          x: { field: "at", type: "quantitative" },
          y: { field: "row", type: "quantitative", scale: null },
          text: { field: "label" },
        },
      },
    ],
  } as vl.TopLevelSpec;
}

export async function renderSvg(spec: vl.TopLevelSpec): Promise<string> {
  const compiled = vl.compile(spec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

export function svgToPng(svg: string, scale = 2): Uint8Array {
  const r = new Resvg(svg, {
    fitTo: { mode: "zoom", value: scale },
    background: "white",
    font: { loadSystemFonts: true, defaultFontFamily: "DejaVu Sans" },
  });
  return r.render().asPng();
}

/** Write FILE as SVG and PNG: FILE.svg and FILE.png (FILE given with or without either extension). */
export async function writePlot(
  file: string,
  series: PlotSeries[],
  opts: PlotOptions,
): Promise<{ svg: string; png: string }> {
  const base = file.replace(/\.(svg|png)$/i, "");
  const svg = await renderSvg(plotSpec(series, opts));
  await Deno.writeTextFile(`${base}.svg`, svg);
  await Deno.writeFile(`${base}.png`, svgToPng(svg));
  return { svg: `${base}.svg`, png: `${base}.png` };
}
