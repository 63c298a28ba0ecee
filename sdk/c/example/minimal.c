/* The smallest native plugin: accepts every batch without doing anything.
 * Compiled by plugins/test.sh (as C and as C++) to keep consign_plugin.h
 * usable; a starting point for a C plugin:
 *   cc -shared -fPIC -O2 -I sdk/c -o libminimal.so sdk/c/example/minimal.c */
#include <stdio.h>

#include "consign_plugin.h"

static void *create(const char *config_json, char *err, size_t errlen) {
    (void)config_json;
    (void)err;
    (void)errlen;
    static int instance; /* no state: any non-NULL pointer will do */
    return &instance;
}

static int32_t deliver(void *instance, const consign_batch *batch, consign_outcome *out) {
    (void)instance;
    out->status = CONSIGN_OK;
    out->retry_after_seconds = 0;
    out->code[0] = '\0';
    snprintf(out->message, sizeof out->message, "minimal: accepted %zu files of %s", batch->file_count, batch->id);
    return out->status;
}

static int32_t check(void *instance, consign_outcome *out) {
    (void)instance;
    out->status = CONSIGN_OK;
    out->retry_after_seconds = 0;
    out->code[0] = '\0';
    snprintf(out->message, sizeof out->message, "minimal: nothing to check");
    return out->status;
}

static void destroy(void *instance) { (void)instance; }

static const consign_plugin_vtable_t VTABLE = {"minimal", "1.0.0", create, deliver, check, destroy};

uint32_t consign_plugin_abi_version(void) { return CONSIGN_PLUGIN_ABI_VERSION; }

const struct consign_plugin_vtable *consign_plugin_vtable(void) { return &VTABLE; }
