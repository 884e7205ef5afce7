/* Shared by the libFuzzer targets: GLib set up so that a g_return_if_fail()
 * hit by hostile input is a crash the fuzzer reports, not a log line. */
#pragma once

#include <glib.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* Rejections are expected by the million: keep their logs out of the output.
 * A critical is fatal, like G_DEBUG=fatal-criticals in the unit tests, but
 * through abort(): GLib's own fatal path raises SIGTRAP, which libFuzzer does
 * not catch, so the input would not be saved. */
static void
fuzz_log_handler (const char *domain, GLogLevelFlags level, const char *message, gpointer user_data)
{
  if (!(level & (G_LOG_FLAG_FATAL | G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL)))
    return;
  g_printerr ("%s: %s\n", domain != NULL ? domain : "(none)", message);
  abort ();
}

static inline void
fuzz_glib_init (void)
{
  g_log_set_default_handler (fuzz_log_handler, NULL);
}

/* abort() with a reason: the fuzzer saves the input that broke an invariant. */
#define FUZZ_CHECK(cond)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      g_printerr ("%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      abort ();                                                                \
    }                                                                          \
  } while (0)
