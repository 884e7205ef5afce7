/* fanout-observer: one libiv-ota observer process for the fan-out benchmark.
 *
 * Watches every module through iv_ota_observer_add() and prints, with the
 * CLOCK_MONOTONIC and CLOCK_REALTIME microseconds at which the library thread
 * delivered it, the same lines as ota-bench-app:
 *
 *   MONO REAL subscribed                     (the agent is seen: events flow)
 *   MONO REAL ready MODULE VERSION PATH SIZE MD5
 *   MONO REAL error MESSAGE
 *
 * Runs until killed. The bus comes from IV_OTA_BUS (bench/run sets "session"). */
#include "iv_ota_ext.h"

#include <inttypes.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static long long
clock_usec (clockid_t clock)
{
  struct timespec ts;

  clock_gettime (clock, &ts);
  return (long long) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
on_event (const iv_ota_event_s *event, void *user_data)
{
  long long mono = clock_usec (CLOCK_MONOTONIC);
  long long real = clock_usec (CLOCK_REALTIME);
  int *subscribed = user_data;

  if (event->type == IV_OTA_EVENT_AGENT && event->agent_present && !*subscribed) {
    *subscribed = 1;
    printf ("%lld %lld subscribed\n", mono, real);
  } else if (event->type == IV_OTA_EVENT_READY) {
    printf ("%lld %lld ready %s %s %s %" PRIu64 " %s\n", mono, real, event->module, event->version,
            event->path, event->total, event->md5);
  }
}

int
main (void)
{
  static int subscribed;
  iv_ota_observer_s *observer = NULL;
  int rc;

  setvbuf (stdout, NULL, _IOLBF, 0);
  rc = iv_ota_observer_add (on_event, &subscribed, &observer);
  if (rc != IV_ERR_NONE) {
    printf ("%lld %lld error %s: %s\n", clock_usec (CLOCK_MONOTONIC), clock_usec (CLOCK_REALTIME),
            iv_ota_strerror (rc), iv_ota_last_error ());
    return 1;
  }
  for (;;)
    pause ();
  return 0;
}
