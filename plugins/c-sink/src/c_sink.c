/* c-sink: a consign destination plugin written in C, proving the C route
 * (clang-14 + wit-bindgen c bindings in gen/ + wasm-component-ld).
 *
 * deliver: every file of the batch not already delivered is PUT to
 * {endpoint}/{name} with the body streamed by the host from the batch file
 * (file range: the bytes never enter this component), header X-Batch-Id.
 * 2xx ok; 401/403 auth; 408/429/5xx retryable (Retry-After seconds
 * honoured); anything else rejected with the status and the start of the
 * body. part-accepted after each file.
 *
 * check: HEAD {endpoint}; any reply below 500 other than 401/403 is
 * reachable.
 *
 * Memory: strings returned to the host are heap copies (the bindings'
 * post-return functions free them); the batch the host passes in is owned
 * by deliver and freed before it returns. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "destination.h"

#define PLUGIN_NAME "c-sink"
#define PLUGIN_VERSION "1.0.0"
#define PLUGIN_DESCRIPTION "PUTs every file of a batch to {endpoint}/{name} (C example plugin)"
#define SNIPPET_MAX 200

typedef destination_string_t wstr;

/* ---- a growable byte string ---- */

typedef struct {
    char *p;
    size_t len, cap;
} sb;

static void sb_reserve(sb *s, size_t extra) {
    if (s->len + extra <= s->cap) return;
    size_t cap = s->cap ? s->cap * 2 : 64;
    while (cap < s->len + extra) cap *= 2;
    s->p = realloc(s->p, cap);
    if (!s->p) abort();
    s->cap = cap;
}

static void sb_add_n(sb *s, const char *p, size_t n) {
    sb_reserve(s, n);
    memcpy(s->p + s->len, p, n);
    s->len += n;
}

static void sb_add(sb *s, const char *z) { sb_add_n(s, z, strlen(z)); }
static void sb_add_w(sb *s, const wstr *w) { sb_add_n(s, (const char *)w->ptr, w->len); }

static void sb_add_u64(sb *s, uint64_t v) {
    char buf[24];
    int i = 24;
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    sb_add_n(s, buf + i, (size_t)(24 - i));
}

/* Append ASCII-printable text only (component strings must be UTF-8; a
 * partner's body may not be), at most max bytes. */
static void sb_add_printable(sb *s, const uint8_t *p, size_t n, size_t max) {
    while (n && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++, n--;
    for (size_t i = 0; i < n && i < max; i++) {
        char c = (p[i] >= 0x20 && p[i] < 0x7f) ? (char)p[i] : (p[i] == '\n' ? ' ' : '?');
        sb_add_n(s, &c, 1);
    }
}

/* Percent-encode one URL path segment. */
static void sb_add_segment(sb *s, const wstr *w) {
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < w->len; i++) {
        uint8_t c = w->ptr[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
            c == '.' || c == '_' || c == '~') {
            sb_add_n(s, (const char *)&c, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            sb_add_n(s, e, 3);
        }
    }
}

/* Hand the buffer over as a component string (heap memory the host's
 * post-return frees); the builder is empty afterwards. */
static wstr sb_take(sb *s) {
    wstr w;
    if (s->len == 0) {
        free(s->p);
        w.ptr = NULL;
        w.len = 0;
    } else {
        w.ptr = (uint8_t *)s->p;
        w.len = s->len;
    }
    s->p = NULL;
    s->len = s->cap = 0;
    return w;
}

static wstr dup(const char *z) {
    wstr w;
    destination_string_dup(&w, z);
    return w;
}

/* ---- config ---- */

/* The endpoint without a trailing '/', or false with err set. */
static bool endpoint(sb *out, destination_error_t *err) {
    wstr key, val;
    destination_string_set(&key, "endpoint");
    if (!consign_destination_host_config_get(&key, &val) || val.len == 0) {
        err->tag = CONSIGN_DESTINATION_TYPES_ERROR_PERMANENT;
        err->val.permanent = dup("c-sink: config `endpoint` is required");
        return false;
    }
    size_t n = val.len;
    while (n && val.ptr[n - 1] == '/') n--;
    sb_add_n(out, (const char *)val.ptr, n);
    destination_string_free(&val);
    return true;
}

/* ---- replies and errors ---- */

static void set_retryable(destination_error_t *err, sb *msg, bool has_after, uint32_t after) {
    err->tag = CONSIGN_DESTINATION_TYPES_ERROR_RETRYABLE;
    err->val.retryable.message = sb_take(msg);
    err->val.retryable.after_seconds.is_some = has_after;
    err->val.retryable.after_seconds.val = after;
}

/* Retry-After as seconds, when the reply carries it as a number. */
static bool retry_after(const consign_destination_host_http_response_t *r, uint32_t *secs) {
    for (size_t i = 0; i < r->headers.len; i++) {
        const wstr *k = &r->headers.ptr[i].f0, *v = &r->headers.ptr[i].f1;
        if (k->len != 11 || memcmp(k->ptr, "retry-after", 11) != 0) continue;
        uint64_t n = 0;
        size_t j = 0;
        while (j < v->len && v->ptr[j] == ' ') j++;
        if (j == v->len) return false;
        for (; j < v->len; j++) {
            if (v->ptr[j] < '0' || v->ptr[j] > '9' || n > 0xffffffffu / 10) return false;
            n = n * 10 + (v->ptr[j] - '0');
        }
        if (n > 0xffffffffu) return false;
        *secs = (uint32_t)n;
        return true;
    }
    return false;
}

/* true for 2xx; otherwise fills err ("{what}: HTTP {status}: {body}"). */
static bool classify(const consign_destination_host_http_response_t *r, const char *method, const wstr *url,
                     destination_error_t *err) {
    uint16_t st = r->status;
    if (st >= 200 && st < 300) return true;
    sb msg = {0};
    sb_add(&msg, method);
    sb_add(&msg, " ");
    sb_add_w(&msg, url);
    sb_add(&msg, ": HTTP ");
    sb_add_u64(&msg, st);
    if (st == 401 || st == 403) {
        sb_add(&msg, ": credentials refused");
        err->tag = CONSIGN_DESTINATION_TYPES_ERROR_AUTH;
        err->val.auth = sb_take(&msg);
    } else if (st == 408 || st == 429 || st >= 500) {
        uint32_t secs = 0;
        bool has = retry_after(r, &secs);
        if (r->body.len) {
            sb_add(&msg, ": ");
            sb_add_printable(&msg, r->body.ptr, r->body.len, SNIPPET_MAX);
        }
        set_retryable(err, &msg, has, secs);
    } else {
        sb code = {0};
        sb_add_u64(&code, st);
        free(msg.p);
        sb body = {0};
        sb_add_printable(&body, r->body.ptr, r->body.len, SNIPPET_MAX);
        err->tag = CONSIGN_DESTINATION_TYPES_ERROR_REJECTED;
        err->val.rejected.code = sb_take(&code);
        err->val.rejected.message = sb_take(&body);
    }
    return false;
}

/* A request that got no reply: denied and TLS are permanent (an operator
 * must act), the rest retryable. The host's message is kept verbatim. */
static void transport_error(const consign_destination_host_http_error_t *e, const char *method, const wstr *url,
                            destination_error_t *err) {
    static const char *what[] = {"denied", "could not connect", "timed out", "TLS failed", "failed"};
    sb msg = {0};
    sb_add(&msg, method);
    sb_add(&msg, " ");
    sb_add_w(&msg, url);
    sb_add(&msg, ": ");
    sb_add(&msg, e->tag <= 4 ? what[e->tag] : "failed");
    sb_add(&msg, ": ");
    sb_add_w(&msg, &e->val.other); /* every case is a string at the same place */
    if (e->tag == CONSIGN_DESTINATION_HOST_HTTP_ERROR_DENIED || e->tag == CONSIGN_DESTINATION_HOST_HTTP_ERROR_TLS) {
        err->tag = CONSIGN_DESTINATION_TYPES_ERROR_PERMANENT;
        err->val.permanent = sb_take(&msg);
    } else {
        set_retryable(err, &msg, false, 0);
    }
}

/* Send one request; true for a 2xx reply, else err is filled. */
static bool send(const char *method, const wstr *url, destination_tuple2_string_string_t *headers, size_t nheaders,
                 consign_destination_host_body_t body, destination_error_t *err) {
    consign_destination_host_http_request_t req;
    destination_string_set(&req.method, method);
    req.url = *url;
    req.headers.ptr = headers;
    req.headers.len = nheaders;
    req.body = body;
    req.timeout_ms.is_some = false;
    req.timeout_ms.val = 0;
    consign_destination_host_http_response_t resp;
    consign_destination_host_http_error_t herr;
    if (!consign_destination_host_http_send(&req, &resp, &herr)) {
        transport_error(&herr, method, url, err);
        consign_destination_host_http_error_free(&herr);
        return false;
    }
    bool ok = classify(&resp, method, url, err);
    consign_destination_host_http_response_free(&resp);
    return ok;
}

/* ---- exports ---- */

void exports_destination_info(destination_plugin_info_t *ret) {
    ret->name = dup(PLUGIN_NAME);
    ret->version = dup(PLUGIN_VERSION);
    ret->description = dup(PLUGIN_DESCRIPTION);
}

static bool delivered(const destination_batch_t *b, uint32_t part) {
    for (size_t i = 0; i < b->already_delivered.len; i++)
        if (b->already_delivered.ptr[i] == part) return true;
    return false;
}

bool exports_destination_deliver(destination_batch_t *batch, destination_receipt_t *ret, destination_error_t *err) {
    bool ok = true;
    sb base = {0};
    size_t sent = 0, skipped = 0;
    uint64_t bytes = 0;
    ret->remote_ids.ptr = NULL;
    ret->remote_ids.len = 0;
    if (!endpoint(&base, err)) {
        ok = false;
        goto done;
    }
    if (batch->files.len) {
        ret->remote_ids.ptr = malloc(batch->files.len * sizeof(wstr));
        if (!ret->remote_ids.ptr) abort();
    }
    for (size_t i = 0; i < batch->files.len; i++) {
        const consign_destination_types_file_info_t *f = &batch->files.ptr[i];
        if (delivered(batch, f->part)) {
            skipped++;
            continue;
        }
        sb url = {0};
        sb_add_n(&url, base.p, base.len);
        sb_add(&url, "/");
        sb_add_segment(&url, &f->name);
        wstr url_w = {(uint8_t *)url.p, url.len};

        destination_tuple2_string_string_t headers[2];
        destination_string_set(&headers[0].f0, "X-Batch-Id");
        headers[0].f1 = batch->id;
        destination_string_set(&headers[1].f0, "Content-Type");
        destination_string_set(&headers[1].f1, "application/octet-stream");

        consign_destination_host_body_t body;
        body.tag = CONSIGN_DESTINATION_HOST_BODY_FILE;
        body.val.file.part = f->part;
        body.val.file.offset = 0;
        body.val.file.len = f->size;

        bool put = send("PUT", &url_w, headers, 2, body, err);
        free(url.p);
        if (!put) {
            ok = false;
            break;
        }
        consign_destination_host_part_accepted(f->part);
        destination_string_dup_n(&ret->remote_ids.ptr[ret->remote_ids.len++], (const char *)f->name.ptr,
                                 f->name.len);
        sent++;
        bytes += f->size;
    }
    if (ok) {
        sb msg = {0};
        sb_add(&msg, "c-sink: put ");
        sb_add_u64(&msg, sent);
        sb_add(&msg, " files (");
        sb_add_u64(&msg, bytes);
        sb_add(&msg, " bytes) to ");
        sb_add_n(&msg, base.p, base.len);
        if (skipped) {
            sb_add(&msg, "; ");
            sb_add_u64(&msg, skipped);
            sb_add(&msg, " already delivered");
        }
        ret->message = sb_take(&msg);
    }
done:
    if (!ok) {
        /* the receipt is not returned: free what it holds */
        destination_list_string_free(&ret->remote_ids);
        ret->remote_ids.ptr = NULL;
        ret->remote_ids.len = 0;
    }
    free(base.p);
    destination_batch_free(batch);
    return ok;
}

bool exports_destination_check(destination_string_t *ret, destination_error_t *err) {
    sb base = {0};
    if (!endpoint(&base, err)) return false;
    wstr url = {(uint8_t *)base.p, base.len};
    consign_destination_host_http_request_t req;
    destination_string_set(&req.method, "HEAD");
    req.url = url;
    req.headers.ptr = NULL;
    req.headers.len = 0;
    req.body.tag = CONSIGN_DESTINATION_HOST_BODY_EMPTY;
    req.timeout_ms.is_some = false;
    req.timeout_ms.val = 0;
    consign_destination_host_http_response_t resp;
    consign_destination_host_http_error_t herr;
    if (!consign_destination_host_http_send(&req, &resp, &herr)) {
        transport_error(&herr, "HEAD", &url, err);
        consign_destination_host_http_error_free(&herr);
        free(base.p);
        return false;
    }
    bool ok = resp.status < 500 && resp.status != 401 && resp.status != 403;
    if (ok) {
        sb msg = {0};
        sb_add(&msg, "c-sink: ");
        sb_add_w(&msg, &url);
        sb_add(&msg, " reachable (HEAD -> HTTP ");
        sb_add_u64(&msg, resp.status);
        sb_add(&msg, ")");
        *ret = sb_take(&msg);
    } else {
        classify(&resp, "HEAD", &url, err);
    }
    consign_destination_host_http_response_free(&resp);
    free(base.p);
    return ok;
}
