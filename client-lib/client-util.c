/* Small helpers of libiv-ota: strings, error texts, debug lines, and freeing
 * handles and observers. */
#include "client.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void
client_copy_string (char *dest, size_t size, const char *source)
{
  size_t len = strnlen (source, size - 1);

  memcpy (dest, source, len);
  dest[len] = '\0';
}

void
client_set_error (char *buffer, size_t len, const char *format, ...)
{
  va_list args;

  va_start (args, format);
  if (vsnprintf (buffer, len, format, args) < 0)
    buffer[0] = '\0';
  va_end (args);
}

static bool debug_enabled;

static void
debug_read_environment (void)
{
  debug_enabled = getenv ("IV_OTA_DEBUG") != NULL;
}

static pthread_once_t debug_once = PTHREAD_ONCE_INIT;

void
client_log_setup (void)
{
  /* Read once: getenv racing with the application's setenv is undefined. */
  pthread_once (&debug_once, debug_read_environment);
}

void
client_log (const char *format, ...)
{
  va_list args;

  client_log_setup ();
  if (!debug_enabled)
    return;
  va_start (args, format);
  fprintf (stderr, "libiv-ota[%d]: ", (int) getpid ());
  vfprintf (stderr, format, args);
  fputc ('\n', stderr);
  va_end (args);
}

void
client_handle_free (iv_ota_module_s *handle)
{
  if (handle == NULL)
    return;
  client_event_free (handle->exit_event);
  free (handle->name);
  free (handle->dir);
  free (handle->agent);
  free (handle);
}

void
client_observer_free (iv_ota_observer_s *observer)
{
  if (observer == NULL)
    return;
  client_event_free (observer->release_event);
  free (observer);
}
