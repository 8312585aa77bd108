/* test_util.h — tiny assertion helpers for the C tests (no framework). */
#ifndef SS_TEST_UTIL_H
#define SS_TEST_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int ss_test_failures = 0;
static int ss_test_checks = 0;

/* Failures printed; later ones are only counted (a wrong formula can fail thousands of cases). */
#define SS_TEST_MAX_PRINTED 50

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    ss_test_checks++;                                                          \
    if (!(cond) && ++ss_test_failures <= SS_TEST_MAX_PRINTED) {                \
      fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                            \
      fprintf(stderr, "\n");                                                   \
    }                                                                          \
  } while (0)

/* Path under the shared test material folder ($SS_SHARED, default ../../shared). */
static inline const char *shared_path(const char *rel) {
  static char buf[8][4096];
  static int k = 0;
  const char *root = getenv("SS_SHARED");
  if (!root) root = "../../shared";
  char *b = buf[k++ % 8];
  snprintf(b, sizeof buf[0], "%s/%s", root, rel);
  return b;
}

/* Relative L2 error |a - ref| / |ref| of n values (the absolute one when ref is all zeros). */
static inline double rel_l2_error(const float *a, const float *ref, int n) {
  double num = 0, den = 0;
  for (int i = 0; i < n; i++) {
    double d = (double)a[i] - (double)ref[i];
    num += d * d;
    den += (double)ref[i] * ref[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

static inline int test_summary(const char *name) {
  printf("%s: %d checks, %d failed\n", name, ss_test_checks, ss_test_failures);
  return ss_test_failures ? 1 : 0;
}

#endif
