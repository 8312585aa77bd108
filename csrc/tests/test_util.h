/* test_util.h — tiny assertion helpers for the C tests (no framework). */
#ifndef SS_TEST_UTIL_H
#define SS_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int ss_test_failures = 0;
static int ss_test_checks = 0;

#define CHECK(cond, ...)                                                   \
  do {                                                                     \
    ss_test_checks++;                                                      \
    if (!(cond)) {                                                         \
      ss_test_failures++;                                                  \
      fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                        \
      fprintf(stderr, "\n");                                               \
    }                                                                      \
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

static inline int test_summary(const char *name) {
  printf("%s: %d checks, %d failed\n", name, ss_test_checks, ss_test_failures);
  return ss_test_failures ? 1 : 0;
}

#endif
