/* cpu_wk_select.c — which kernel table of cpu_wkernels.h this CPU runs (cpuid + the OS's saved
 * register state, xgetbv), and the choice by name. */
#include <string.h>

#include "cpu_wkernels.h"

const ss_wkernels *ss_wkernels_avx2_table(void);   /* cpu_wk_avx2.c */
const ss_wkernels *ss_wkernels_avx512_table(void); /* cpu_wk_avx512.c */

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

typedef struct cpu_features {
  int avx2, avx512;
} cpu_features;

static unsigned long long xgetbv0(void) {
  unsigned int lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return ((unsigned long long)hi << 32) | lo;
}

static cpu_features detect(void) {
  cpu_features f = {0, 0};
  unsigned int a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
  if (!osxsave || !avx) return f;
  unsigned long long xcr0 = xgetbv0();
  int ymm = (xcr0 & 0x6) == 0x6, zmm = (xcr0 & 0xe6) == 0xe6;
  if (__get_cpuid_max(0, NULL) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  int avx2 = (b >> 5) & 1, avx512f = (b >> 16) & 1, avx512bw = (b >> 30) & 1, avx512vl = (b >> 31) & 1;
  int vnni = (c >> 11) & 1;
  f.avx2 = ymm && avx2 && fma && f16c;
  f.avx512 = f.avx2 && zmm && avx512f && avx512bw && avx512vl && vnni;
  return f;
}
#else
typedef struct cpu_features {
  int avx2, avx512;
} cpu_features;
static cpu_features detect(void) {
  cpu_features f = {0, 0};
  return f;
}
#endif

const ss_wkernels *ss_wkernels_avx2(void) { return detect().avx2 ? ss_wkernels_avx2_table() : NULL; }
const ss_wkernels *ss_wkernels_avx512(void) { return detect().avx512 ? ss_wkernels_avx512_table() : NULL; }

const ss_wkernels *ss_wkernels_select(const char *isa) {
  if (isa && *isa) {
    if (!strcmp(isa, "portable")) return ss_wkernels_portable();
    if (!strcmp(isa, "avx2")) return ss_wkernels_avx2();
    if (!strcmp(isa, "avx512")) return ss_wkernels_avx512();
    return NULL;
  }
  /* AVX-512 only when asked for (SS_CPU_ISA=avx512) until it has run on a machine that has it (cpu_wk_avx512.c) */
  const ss_wkernels *k = ss_wkernels_avx2();
  return k ? k : ss_wkernels_portable();
}
