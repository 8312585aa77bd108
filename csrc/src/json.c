/* json.c — bounded, non-recursive JSON parser (see json.h). */
#include "json.h"

#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct parser {
  const char *s;
  size_t len, pos;
  ss_json_doc *doc;
} parser;

static int fail(parser *p, const char *what) {
  snprintf(p->doc->error, sizeof p->doc->error, "%s at byte %zu", what, p->pos);
  return -1;
}

static void skip_ws(parser *p) {
  while (p->pos < p->len) {
    char c = p->s[p->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    p->pos++;
  }
}

/* Append a node; attach it as the last child of `parent` (or none). */
static int new_node(parser *p, ss_json_type type, size_t parent, size_t *out) {
  ss_json_doc *d = p->doc;
  if (d->n_nodes == d->cap_nodes) {
    size_t cap = d->cap_nodes ? d->cap_nodes * 2 : 64;
    if (cap < d->cap_nodes || cap > SIZE_MAX / sizeof(ss_json)) return -2;
    ss_json *n = realloc(d->nodes, cap * sizeof *n);
    if (!n) return -2;
    d->nodes = n;
    d->cap_nodes = cap;
  }
  size_t idx = d->n_nodes++;
  ss_json *v = &d->nodes[idx];
  memset(v, 0, sizeof *v);
  v->type = type;
  v->first = v->last = v->next = SS_JSON_NONE;
  if (parent != SS_JSON_NONE) {
    ss_json *par = &d->nodes[parent];
    if (par->last == SS_JSON_NONE)
      par->first = idx;
    else
      d->nodes[par->last].next = idx;
    par->last = idx;
    par->n_children++;
  }
  *out = idx;
  return 0;
}

static int hex4(parser *p, size_t at, unsigned *out) {
  if (at > p->len || p->len - at < 4) return 0;
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p->s[at + (size_t)i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return 0;
  }
  *out = v;
  return 1;
}

static size_t put_utf8(char *o, unsigned cp) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xc0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xe0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  o[0] = (char)(0xf0 | (cp >> 18));
  o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
  o[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

/* p->s[p->pos] == '"'. Unescape into doc->strings (never longer than the
 * raw text, so the buffer sized len + 1 cannot overflow). */
static int parse_string(parser *p, const char **out, size_t *out_len) {
  ss_json_doc *d = p->doc;
  char *o = d->strings + d->strings_len, *start = o;
  p->pos++; /* opening quote */
  for (;;) {
    if (p->pos >= p->len) return fail(p, "unterminated string");
    unsigned char c = (unsigned char)p->s[p->pos];
    if (c == '"') {
      p->pos++;
      break;
    }
    if (c < 0x20) return fail(p, "control character in string");
    if (c != '\\') {
      *o++ = (char)c;
      p->pos++;
      continue;
    }
    if (p->pos + 1 >= p->len) return fail(p, "unterminated escape");
    char e = p->s[p->pos + 1];
    p->pos += 2;
    switch (e) {
      case '"': *o++ = '"'; break;
      case '\\': *o++ = '\\'; break;
      case '/': *o++ = '/'; break;
      case 'b': *o++ = '\b'; break;
      case 'f': *o++ = '\f'; break;
      case 'n': *o++ = '\n'; break;
      case 'r': *o++ = '\r'; break;
      case 't': *o++ = '\t'; break;
      case 'u': {
        unsigned cp, lo;
        if (!hex4(p, p->pos, &cp)) return fail(p, "bad \\u escape");
        p->pos += 4;
        if (cp >= 0xd800 && cp <= 0xdbff) {
          /* high surrogate: combine with a following \uDC00-\uDFFF */
          if (p->pos + 1 < p->len && p->s[p->pos] == '\\' && p->s[p->pos + 1] == 'u' &&
              hex4(p, p->pos + 2, &lo) && lo >= 0xdc00 && lo <= 0xdfff) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            p->pos += 6;
          } else {
            cp = 0xfffd;
          }
        } else if (cp >= 0xdc00 && cp <= 0xdfff) {
          cp = 0xfffd; /* lone low surrogate */
        }
        o += put_utf8(o, cp);
        break;
      }
      default:
        p->pos -= 1;
        return fail(p, "invalid escape");
    }
  }
  *o = '\0';
  *out = start;
  *out_len = (size_t)(o - start);
  d->strings_len += *out_len + 1;
  return 0;
}

/* Strict JSON number grammar, then strtod on a bounded copy. */
static int parse_number(parser *p, double *out) {
  size_t i = p->pos;
  const char *s = p->s;
  size_t n = p->len;
  if (i < n && s[i] == '-') i++;
  if (i >= n) return fail(p, "bad number");
  if (s[i] == '0') {
    i++;
  } else if (s[i] >= '1' && s[i] <= '9') {
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
  } else {
    return fail(p, "bad number");
  }
  if (i < n && s[i] == '.') {
    i++;
    if (i >= n || s[i] < '0' || s[i] > '9') return fail(p, "bad number fraction");
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    if (i < n && (s[i] == '+' || s[i] == '-')) i++;
    if (i >= n || s[i] < '0' || s[i] > '9') return fail(p, "bad number exponent");
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
  }
  char buf[128];
  size_t k = i - p->pos;
  if (k >= sizeof buf) return fail(p, "number too long");
  memcpy(buf, s + p->pos, k);
  buf[k] = '\0';
  /* strtod follows the C locale's decimal point; adapt if the host changed it. */
  char dp = localeconv()->decimal_point[0];
  if (dp != '.' && dp != '\0') {
    char *dot = strchr(buf, '.');
    if (dot) *dot = dp;
  }
  *out = strtod(buf, NULL);
  p->pos = i;
  return 0;
}

static int parse_literal(parser *p, const char *word) {
  size_t k = strlen(word);
  if (p->len - p->pos < k || memcmp(p->s + p->pos, word, k) != 0) return fail(p, "invalid literal");
  p->pos += k;
  return 0;
}

/* Object member name and the ':' after it. */
static int parse_key(parser *p, const char **key, size_t *key_len) {
  skip_ws(p);
  if (p->pos >= p->len || p->s[p->pos] != '"') return fail(p, "expected a member name");
  int rc = parse_string(p, key, key_len);
  if (rc) return rc;
  skip_ws(p);
  if (p->pos >= p->len || p->s[p->pos] != ':') return fail(p, "expected ':'");
  p->pos++;
  return 0;
}

static int parse_doc(parser *p) {
  size_t stack[SS_JSON_MAX_DEPTH];
  int depth = 0;
  const char *key = NULL;
  size_t key_len = 0;
  ss_json_doc *d = p->doc;
  int rc;
  for (;;) {
    /* ---- one value, member of stack[depth-1] ---- */
    skip_ws(p);
    if (p->pos >= p->len) return fail(p, "unexpected end of input");
    size_t parent = depth ? stack[depth - 1] : SS_JSON_NONE, idx;
    if ((rc = new_node(p, SS_JSON_NULL, parent, &idx))) return rc;
    d->nodes[idx].key = key;
    d->nodes[idx].key_len = key_len;
    key = NULL;
    key_len = 0;
    char c = p->s[p->pos];
    if (c == '{' || c == '[') {
      if (depth == SS_JSON_MAX_DEPTH) return fail(p, "nesting too deep");
      d->nodes[idx].type = c == '{' ? SS_JSON_OBJECT : SS_JSON_ARRAY;
      p->pos++;
      stack[depth++] = idx;
      skip_ws(p);
      if (p->pos < p->len && p->s[p->pos] == (c == '{' ? '}' : ']')) {
        p->pos++;
        depth--; /* empty container: fall through to "after a value" */
      } else {
        if (c == '{' && (rc = parse_key(p, &key, &key_len))) return rc;
        continue;
      }
    } else if (c == '"') {
      const char *str;
      size_t n;
      if ((rc = parse_string(p, &str, &n))) return rc;
      d->nodes[idx].type = SS_JSON_STRING;
      d->nodes[idx].str = str;
      d->nodes[idx].str_len = n;
    } else if (c == 't' || c == 'f') {
      if ((rc = parse_literal(p, c == 't' ? "true" : "false"))) return rc;
      d->nodes[idx].type = SS_JSON_BOOL;
      d->nodes[idx].boolean = c == 't';
    } else if (c == 'n') {
      if ((rc = parse_literal(p, "null"))) return rc;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      double v = 0;
      if ((rc = parse_number(p, &v))) return rc;
      d->nodes[idx].type = SS_JSON_NUMBER;
      d->nodes[idx].number = v;
    } else {
      return fail(p, "unexpected character");
    }
    /* ---- after a value: close finished containers, or go to the next member ---- */
    for (;;) {
      skip_ws(p);
      if (depth == 0) {
        if (p->pos != p->len) return fail(p, "trailing characters after the document");
        return 0;
      }
      if (p->pos >= p->len) return fail(p, "unexpected end of input");
      const ss_json *top = &d->nodes[stack[depth - 1]];
      char t = p->s[p->pos];
      if (t == ',') {
        p->pos++;
        if (top->type == SS_JSON_OBJECT && (rc = parse_key(p, &key, &key_len))) return rc;
        break;
      }
      if (t == (top->type == SS_JSON_OBJECT ? '}' : ']')) {
        p->pos++;
        depth--;
        continue;
      }
      return fail(p, top->type == SS_JSON_OBJECT ? "expected ',' or '}'" : "expected ',' or ']'");
    }
  }
}

int ss_json_parse(ss_json_doc *doc, const char *text, size_t len) {
  memset(doc, 0, sizeof *doc);
  if (len == SIZE_MAX) return -2;
  doc->strings = malloc(len + 1);
  if (!doc->strings) return -2;
  parser p = {text, len, 0, doc};
  int rc = parse_doc(&p);
  if (rc == -2) snprintf(doc->error, sizeof doc->error, "out of memory");
  return rc;
}

void ss_json_free(ss_json_doc *doc) {
  free(doc->nodes);
  free(doc->strings);
  memset(doc, 0, sizeof *doc);
}

const ss_json *ss_json_first(const ss_json_doc *doc, const ss_json *v) {
  return v && v->first != SS_JSON_NONE ? &doc->nodes[v->first] : NULL;
}

const ss_json *ss_json_next(const ss_json_doc *doc, const ss_json *v) {
  return v && v->next != SS_JSON_NONE ? &doc->nodes[v->next] : NULL;
}

const ss_json *ss_json_get(const ss_json_doc *doc, const ss_json *obj, const char *key) {
  if (!obj || obj->type != SS_JSON_OBJECT) return NULL;
  size_t k = strlen(key);
  const ss_json *found = NULL;
  for (const ss_json *c = ss_json_first(doc, obj); c; c = ss_json_next(doc, c))
    if (c->key_len == k && memcmp(c->key, key, k) == 0) found = c;
  return found;
}

int ss_json_as_int64(const ss_json *v, int64_t *out) {
  if (!v || v->type != SS_JSON_NUMBER) return 0;
  double x = v->number;
  /* -2^63 <= x < 2^63 and integral (NaN fails the comparisons) */
  if (!(x >= -9223372036854775808.0 && x < 9223372036854775808.0) || floor(x) != x) return 0;
  *out = (int64_t)x;
  return 1;
}
