/* LLVMFuzzerInitialize() of every target (see fuzz-common.h). */
#include "fuzz-common.h"

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

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  g_log_set_default_handler (fuzz_log_handler, NULL);
  return 0;
}
