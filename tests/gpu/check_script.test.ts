/**
 * tests/gpu/check.sh is the one command a GPU session runs for issue #4 (docs/gpu_runbook.md): one
 * try inside 15 minutes of device time. These tests rehearse it on the CPU. With SS_CHECK_EMULATOR=1
 * the script builds the CUDA backend against the CUDA emulator (csrc/tests/cuda_emu) and runs its
 * real stages at small sizes: correctness (CUDA vs CPU backend on stories260K, fp16 / own kernels /
 * bf16, batch 1 and 8, device sampling), the decode benchmark at a tiny shape, the PyTorch stage when
 * torch can be imported (it is skipped with a row in the table otherwise), and the summary. The test
 * checks that every stage passed and that the table the runbook copies into BENCHMARKS.md is whole.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

async function runCheck(env: Record<string, string>) {
  const out = await Deno.makeTempDir({ prefix: "sinkstream-gpu-check-" });
  const res = await new Deno.Command("bash", {
    args: ["tests/gpu/check.sh"],
    cwd: ROOT,
    env: { ...env, OUT: out },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(900_000),
  }).output();
  const log = new TextDecoder().decode(res.stdout) + new TextDecoder().decode(res.stderr);
  return { code: res.code, log, out };
}

Deno.test("gpu check script: without a GPU and without the emulator it says SKIP and exits 0", async () => {
  const r = await runCheck({ SS_CHECK_EMULATOR: "0", PATH: "/usr/bin:/bin" });
  assert.equal(r.code, 0, r.log);
  assert.match(r.log, /SKIP: tests\/gpu\/check\.sh: no NVIDIA GPU visible/);
  await Deno.remove(r.out, { recursive: true });
});

Deno.test("gpu check script: the emulator rehearsal passes every stage and writes the whole table", async () => {
  const r = await runCheck({ SS_CHECK_EMULATOR: "1", SS_GPU_TEST_STEPS: "4" });
  assert.equal(r.code, 0, r.log.slice(-6000));
  const table = await Deno.readTextFile(`${r.out}/gpu_table.md`);
  assert.match(table, /^# GPU check \d{4}-\d\d-\d\d — CUDA emulator rehearsal/);
  for (const stage of ["build", "correctness: CUDA vs CPU", "benchmark: ours"]) {
    assert.match(table, new RegExp(`\\| ${stage}[^|]*\\| PASS \\|`), `${stage} row:\n${table}`);
  }
  assert.match(
    table,
    /\| benchmark: PyTorch eager StreamingLLM \| (PASS|SKIPPED \(torch not importable[^)]*\)) \|/,
  );
  for (const batch of [1, 8, 32]) {
    assert.match(
      table,
      new RegExp(`^\\| ${batch} \\| \\d+\\.\\d \\| (\\d+\\.\\d|n/a) \\|`, "m"),
      `batch ${batch}`,
    );
  }
  assert.match(table, /- batch-1 roofline: [\d.]+ tok\/s .* ours = [\d.]+% of roofline/);
  assert.match(table, /- batch 32 aggregate \/ batch 1 = [\d.]+x/);
  for (const mm of ["qkv", "o", "gate_up", "down", "lm_head"]) {
    assert.match(
      table,
      new RegExp(`- batch-1 GEMV ${mm} \\(\\d+x\\d+\\) alone: [\\d.]+ us, \\d+ GB/s = \\d+% of copy`),
    );
  }
  assert.match(table, /- batch-1 step \d+ us = GEMVs alone \d+ us \+ everything else -?\d+ us/);
  assert.match(table, /- ours: model=tiny-llama-fp16-random, setup_s=[\d.]+, gemm=own kernels \(wmma/);
  // the correctness block: ten scenario lines (5 passes x batch 1 and 8), all ok, and the summary
  const passes = "fp16|fp16-own-kernels|bf16|fp16-hd64-gqa4|fp16-hd128-gqa2";
  const scenarios = table.match(new RegExp(`^ {2}(${passes}) batch [18] +ok: decode steps 4, `, "gm")) ?? [];
  assert.equal(scenarios.length, 10, table);
  assert.match(table, /gpu_test_cuda_vs_cpu: \d+ checks, 0 failed/);
  const log = await Deno.readTextFile(`${r.out}/gpu_check.log`);
  assert.match(log, /BENCH ours batch=32 tok_s=[\d.]+ step_ms=[\d.]+ stream_pos=\d+ n_evicted=\d+ graphs=on/);
  await Deno.remove(r.out, { recursive: true });
});
