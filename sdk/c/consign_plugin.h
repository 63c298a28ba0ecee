/*
 * consign native destination plugins: the C ABI.
 *
 * A native plugin is a shared library (.so) loaded with libloading. It runs
 * inside the engine's process with the engine's rights: there is NO sandbox,
 * no memory limit, no deadline and no capability check. Load native plugins
 * only from vendors you trust as much as the engine itself; prefer WASM
 * components (sdk/wit) for everything else.
 *
 * The library exports two symbols:
 *
 *   uint32_t consign_plugin_abi_version(void);
 *       returns CONSIGN_PLUGIN_ABI_VERSION the plugin was built with; the host
 *       refuses any other value before calling anything else.
 *
 *   const struct consign_plugin_vtable *consign_plugin_vtable(void);
 *       returns a pointer to a static vtable (valid while the library is loaded).
 *       (The typedef is consign_plugin_vtable_t: C does not allow a typedef and a
 *       function with the same name; the struct tag lives in its own namespace.)
 *
 * Lifecycle: every call gets its own instance: create -> deliver or check ->
 * destroy. Keep no state between calls except what create rebuilds from the
 * config. `batch->files` lists only the parts not yet delivered.
 *
 * Threading: the host runs calls of one library on several threads at once,
 * one call at a time per batch; make create, deliver, check, destroy and any
 * global state thread-safe.
 * Strings are NUL-terminated UTF-8. Pointers the host passes are valid only
 * during the call. The plugin fills `consign_outcome` (fixed-size buffers,
 * truncated by the plugin if longer), so no memory crosses the boundary.
 */
#ifndef CONSIGN_PLUGIN_H
#define CONSIGN_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CONSIGN_PLUGIN_ABI_VERSION 1u

/* outcome status */
#define CONSIGN_OK 0        /* delivered / check passed */
#define CONSIGN_RETRYABLE 1 /* transient: retried with backoff (retry_after_seconds honoured when > 0) */
#define CONSIGN_AUTH 2      /* credentials refused: the delivery is suspended */
#define CONSIGN_REJECTED 3  /* the partner refused the content (code + message): manual queue */
#define CONSIGN_PERMANENT 4 /* will not fix itself: manual queue */

typedef struct consign_file {
    uint32_t part;      /* position in the batch, stable across attempts */
    const char *kind;   /* "data", "sha256", "md5", "manifest", "done" */
    const char *name;   /* final name the partner should see */
    const char *path;   /* local path of the assembled file (read it; never modify it) */
    uint64_t size;      /* bytes */
    const char *sha256; /* lower-case hex */
    uint64_t records;   /* records in the file (0 for sidecars) */
} consign_file;

typedef struct consign_batch {
    const char *id;       /* batch id: stable across attempts (idempotency key) */
    const char *delivery; /* the delivery's name */
    uint64_t record_count;
    const char *cut_at; /* RFC 3339, UTC */
    const char *zone;   /* IANA zone of the delivery */
    const consign_file *files;
    size_t file_count;
} consign_batch;

typedef struct consign_outcome {
    int32_t status;               /* CONSIGN_OK ... CONSIGN_PERMANENT */
    uint32_t retry_after_seconds; /* CONSIGN_RETRYABLE: 0 = let the policy decide */
    char code[64];                /* CONSIGN_REJECTED: the partner's code */
    char message[1024];           /* one line for the operator (receipt or error); no secrets */
} consign_outcome;

typedef struct consign_plugin_vtable {
    const char *name;    /* must equal the manifest's name */
    const char *version; /* must equal the manifest's version */
    /* Create an instance from the plugin's config (a JSON object). Returns NULL on
     * error after writing a message to err (errlen bytes, NUL-terminated). */
    void *(*create)(const char *config_json, char *err, size_t errlen);
    int32_t (*deliver)(void *instance, const consign_batch *batch, consign_outcome *out);
    int32_t (*check)(void *instance, consign_outcome *out);
    void (*destroy)(void *instance);
} consign_plugin_vtable_t;

uint32_t consign_plugin_abi_version(void);
const struct consign_plugin_vtable *consign_plugin_vtable(void);

#ifdef __cplusplus
}
#endif

#endif /* CONSIGN_PLUGIN_H */
