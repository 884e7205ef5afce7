/* cloud-relay-latency: round trips app -> broker -> app, and messages per
 * second, either through the agent's shared connection (libiv-ota:
 * iv_ota_publish / iv_ota_subscribe over D-Bus, "relay") or with a client of
 * its own straight to the broker (threaded libmosquitto, "direct"), the
 * baseline measured in the same run by bench/cloud-relay.
 *
 * Usage: cloud-relay-latency relay|direct TOPIC [--port P] [--rounds N] [--burst N] [--size B]
 * Prints one JSON object. */
#include "iv_ota_ext.h"

#include <mosquitto.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  unsigned long received;
} Counter;

static Counter counter = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };

static double
now_s (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void
count_one (void)
{
  pthread_mutex_lock (&counter.lock);
  counter.received++;
  pthread_cond_broadcast (&counter.cond);
  pthread_mutex_unlock (&counter.lock);
}

/* Waits until @n messages were received in all (10 s at most); false on timeout. */
static bool
wait_received (unsigned long n)
{
  struct timespec deadline;
  bool ok = true;

  clock_gettime (CLOCK_REALTIME, &deadline);
  deadline.tv_sec += 10;
  pthread_mutex_lock (&counter.lock);
  while (counter.received < n && ok)
    ok = pthread_cond_timedwait (&counter.cond, &counter.lock, &deadline) == 0;
  ok = counter.received >= n;
  pthread_mutex_unlock (&counter.lock);
  return ok;
}

/* ---- the two ways to the broker ---- */

typedef struct {
  bool (*publish) (const char *topic, const void *payload, size_t size, int qos);
} Way;

static void
on_relay_message (const char *topic, const void *payload, size_t length, void *user_data)
{
  count_one ();
}

static bool
relay_publish (const char *topic, const void *payload, size_t size, int qos)
{
  int rc = iv_ota_publish (topic, payload, size, qos, 0);

  if (rc != IV_ERR_NONE)
    fprintf (stderr, "iv_ota_publish: %s (%s)\n", iv_ota_strerror (rc), iv_ota_last_error ());
  return rc == IV_ERR_NONE;
}

static struct mosquitto *mosq;

static void
on_direct_message (struct mosquitto *m, void *obj, const struct mosquitto_message *msg)
{
  count_one ();
}

static void
on_direct_connect (struct mosquitto *m, void *obj, int rc)
{
  pthread_mutex_lock (&counter.lock);
  *(int *) obj = rc == 0 ? 1 : -1;
  pthread_cond_broadcast (&counter.cond);
  pthread_mutex_unlock (&counter.lock);
}

static void
on_direct_subscribe (struct mosquitto *m, void *obj, int mid, int n, const int *granted)
{
  on_direct_connect (m, obj, 0);
}

static bool
direct_publish (const char *topic, const void *payload, size_t size, int qos)
{
  int rc = mosquitto_publish (mosq, NULL, topic, (int) size, payload, qos, false);

  if (rc != MOSQ_ERR_SUCCESS)
    fprintf (stderr, "mosquitto_publish: %s\n", mosquitto_strerror (rc));
  return rc == MOSQ_ERR_SUCCESS;
}

static bool
wait_flag (int *flag)
{
  struct timespec deadline;

  clock_gettime (CLOCK_REALTIME, &deadline);
  deadline.tv_sec += 10;
  pthread_mutex_lock (&counter.lock);
  while (*flag == 0 && pthread_cond_timedwait (&counter.cond, &counter.lock, &deadline) == 0)
    ;
  pthread_mutex_unlock (&counter.lock);
  return *flag == 1;
}

static bool
direct_setup (int port, const char *topic)
{
  static int connected, subscribed;

  mosquitto_lib_init ();
  mosq = mosquitto_new ("bench-direct-client", true, &connected);
  if (mosq == NULL)
    return false;
  mosquitto_connect_callback_set (mosq, on_direct_connect);
  mosquitto_message_callback_set (mosq, on_direct_message);
  if (mosquitto_connect (mosq, "127.0.0.1", port, 60) != MOSQ_ERR_SUCCESS || mosquitto_loop_start (mosq) != 0 ||
      !wait_flag (&connected))
    return false;
  mosquitto_user_data_set (mosq, &subscribed);
  mosquitto_subscribe_callback_set (mosq, on_direct_subscribe);
  return mosquitto_subscribe (mosq, NULL, topic, 1) == MOSQ_ERR_SUCCESS && wait_flag (&subscribed);
}

/* ---- measures ---- */

static int
compare_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

/* One message at a time, QoS 1: publish, wait for it to come back. */
static bool
measure_latency (const Way *way, const char *topic, const char *payload, size_t size, unsigned rounds,
                 double *median_ms, double *p99_ms)
{
  double *samples = calloc (rounds, sizeof *samples);
  unsigned long base = counter.received;

  for (unsigned i = 0; i < rounds; i++) {
    double start = now_s ();
    if (!way->publish (topic, payload, size, 1) || !wait_received (base + i + 1)) {
      free (samples);
      return false;
    }
    samples[i] = (now_s () - start) * 1000.0;
  }
  qsort (samples, rounds, sizeof *samples, compare_double);
  *median_ms = samples[rounds / 2];
  *p99_ms = samples[(size_t) ((rounds - 1) * 0.99)];
  free (samples);
  return true;
}

/* @burst messages published back to back at @qos; messages per second until
 * the last one came back. */
static bool
measure_rate (const Way *way, const char *topic, const char *payload, size_t size, unsigned burst, int qos,
              double *per_s)
{
  unsigned long base = counter.received;
  double start = now_s ();

  for (unsigned i = 0; i < burst; i++) {
    if (!way->publish (topic, payload, size, qos))
      return false;
  }
  if (!wait_received (base + burst))
    return false;
  *per_s = burst / (now_s () - start);
  return true;
}

int
main (int argc, char **argv)
{
  const char *mode, *topic;
  unsigned rounds = 2000, burst = 5000;
  size_t size = 64;
  int port = 0;
  Way way;
  char *payload;
  double median_ms, p99_ms, qos0_rate, qos1_rate;
  iv_ota_subscription_s *sub = NULL;

  if (argc < 3) {
    fprintf (stderr, "usage: %s relay|direct TOPIC [--port P] [--rounds N] [--burst N] [--size B]\n", argv[0]);
    return 2;
  }
  mode = argv[1];
  topic = argv[2];
  for (int i = 3; i + 1 < argc; i += 2) {
    if (strcmp (argv[i], "--port") == 0)
      port = atoi (argv[i + 1]);
    else if (strcmp (argv[i], "--rounds") == 0)
      rounds = (unsigned) atoi (argv[i + 1]);
    else if (strcmp (argv[i], "--burst") == 0)
      burst = (unsigned) atoi (argv[i + 1]);
    else if (strcmp (argv[i], "--size") == 0)
      size = (size_t) atol (argv[i + 1]);
  }
  payload = malloc (size + 1);
  memset (payload, 'x', size);
  if (strcmp (mode, "relay") == 0) {
    way.publish = relay_publish;
    if (iv_ota_subscribe (topic, on_relay_message, NULL, &sub) != IV_ERR_NONE) {
      fprintf (stderr, "iv_ota_subscribe: %s\n", iv_ota_last_error ());
      return 1;
    }
  } else {
    way.publish = direct_publish;
    if (!direct_setup (port, topic)) {
      fprintf (stderr, "cannot connect to the broker on port %d\n", port);
      return 1;
    }
  }
  /* A warm-up round, then the measures. */
  if (!measure_latency (&way, topic, payload, size, rounds / 10 + 1, &median_ms, &p99_ms) ||
      !measure_latency (&way, topic, payload, size, rounds, &median_ms, &p99_ms) ||
      !measure_rate (&way, topic, payload, size, burst, 0, &qos0_rate) ||
      !measure_rate (&way, topic, payload, size, burst, 1, &qos1_rate)) {
    fprintf (stderr, "%s: a message did not come back\n", mode);
    return 1;
  }
  printf ("{\"mode\": \"%s\", \"payload_bytes\": %zu, \"rounds\": %u, \"latency_median_ms\": %.3f, "
          "\"latency_p99_ms\": %.3f, \"burst\": %u, \"qos0_msgs_per_s\": %.0f, \"qos1_msgs_per_s\": %.0f}\n",
          mode, size, rounds, median_ms, p99_ms, burst, qos0_rate, qos1_rate);
  if (sub != NULL)
    iv_ota_unsubscribe (sub);
  if (mosq != NULL) {
    mosquitto_disconnect (mosq);
    mosquitto_loop_stop (mosq, false);
    mosquitto_destroy (mosq);
  }
  free (payload);
  return 0;
}
