/*
 * json.h — a small, bounded JSON (RFC 8259) parser for config.json,
 * model.safetensors.index.json and safetensors headers.
 *
 * The whole document is parsed into a flat array of nodes (no recursion:
 * nesting is tracked on a fixed stack of SS_JSON_MAX_DEPTH levels). Strings
 * are unescaped (\uXXXX incl. surrogate pairs -> UTF-8; a lone surrogate
 * becomes U+FFFD) into one buffer, each NUL-terminated. Input need not be
 * NUL-terminated. Parsing never reads outside [text, text + len).
 */
#ifndef SS_JSON_H
#define SS_JSON_H

#include <stddef.h>
#include <stdint.h>

#define SS_JSON_MAX_DEPTH 64
#define SS_JSON_NONE ((size_t)-1)

typedef enum ss_json_type {
  SS_JSON_NULL,
  SS_JSON_BOOL,
  SS_JSON_NUMBER,
  SS_JSON_STRING,
  SS_JSON_ARRAY,
  SS_JSON_OBJECT,
} ss_json_type;

typedef struct ss_json {
  ss_json_type type;
  int boolean;         /* BOOL */
  double number;       /* NUMBER */
  const char *str;     /* STRING: unescaped, NUL-terminated (may hold inner NULs) */
  size_t str_len;
  const char *key;     /* member name when the parent is an object, else NULL */
  size_t key_len;
  size_t n_children;   /* ARRAY / OBJECT */
  size_t first, last;  /* child node indices (SS_JSON_NONE when empty) */
  size_t next;         /* next sibling (SS_JSON_NONE when last) */
} ss_json;

typedef struct ss_json_doc {
  ss_json *nodes; /* nodes[0] is the root */
  size_t n_nodes, cap_nodes;
  char *strings;  /* storage of every unescaped string and key */
  size_t strings_len;
  char error[160]; /* parse error with byte offset */
} ss_json_doc;

/* Parse text[0..len). Returns 0, -1 on a syntax error (doc->error says what
 * and where) or -2 when out of memory. Free with ss_json_free either way. */
int ss_json_parse(ss_json_doc *doc, const char *text, size_t len);
void ss_json_free(ss_json_doc *doc);

static inline const ss_json *ss_json_root(const ss_json_doc *doc) { return doc->n_nodes ? &doc->nodes[0] : NULL; }
/* First child / next sibling, NULL at the end. */
const ss_json *ss_json_first(const ss_json_doc *doc, const ss_json *v);
const ss_json *ss_json_next(const ss_json_doc *doc, const ss_json *v);
/* Member `key` of an object (the last one if repeated, like most parsers),
 * NULL when absent or when obj is not an object. */
const ss_json *ss_json_get(const ss_json_doc *doc, const ss_json *obj, const char *key);
/* 1 and *out when v is a number with an integral value in int64 range. */
int ss_json_as_int64(const ss_json *v, int64_t *out);

#endif /* SS_JSON_H */
