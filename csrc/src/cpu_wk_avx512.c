/* cpu_wk_avx512.c — the AVX-512 table of cpu_wkernels.h: not written yet, so CPUs with AVX-512 run
 * the AVX2 table (ss_wkernels_select falls back to it). */
#include <stddef.h>

#include "cpu_wkernels.h"

const ss_wkernels *ss_wkernels_avx512_table(void) { return NULL; }
