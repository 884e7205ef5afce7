/* iv-ota publish and iv-ota subscribe: the device's cloud connection, which
 * the agent shares with apps (iv_ota_publish, iv_ota_subscribe), for people
 * at a shell. Messages arrive on the library thread; the main thread only
 * waits for a signal or for the count of messages asked for. */
#include "iv-ota-cli.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char cli_usage_publish[] =
  "Usage: iv-ota publish [--qos 0|1] [--queue] TOPIC PAYLOAD\n"
  "\n"
  "Publishes PAYLOAD (the argument's bytes; \"-\" reads up to 64 KiB from standard\n"
  "input, any bytes) on TOPIC through the agent's connection to the cloud, the\n"
  "device's only one (D-Bus org.iv.Ota.Cloud.Publish). Apps may use the topics\n"
  "of the agent's [cloud] allowed_topics; by default the device's namespace:\n"
  "topics whose levels contain the product id followed by the device name.\n"
  "\n"
  "Options:\n"
  "  --qos 0|1   QoS 1 (default) returns once the broker acknowledged it;\n"
  "              QoS 0 once the agent wrote it\n"
  "  --queue     while the agent is offline, it keeps the message and publishes\n"
  "              it after the reconnect (instead of exit code 7)\n"
  "\n"
  "Exit codes: 0, 1 refused (the offline queue is full), 2 usage (bad topic,\n"
  "payload over 64 KiB), 3 no agent, 4 topic not allowed, 7 offline.\n";

const char cli_usage_subscribe[] =
  "Usage: iv-ota subscribe [--count N] FILTER...\n"
  "\n"
  "Prints the messages on the topics the MQTT FILTERs match ('+' a level, '#'\n"
  "the rest), received through the agent's connection to the cloud (D-Bus\n"
  "org.iv.Ota.Cloud), one line each: the topic, a space, the payload (bytes\n"
  "that are not printable as \\xNN, a backslash as \\\\). Every topic a filter can\n"
  "match must be allowed: \"#\" is refused. \"subscribed to FILTER\" on standard\n"
  "error says when each subscription is active. Runs until SIGINT or SIGTERM.\n"
  "\n"
  "Options:\n"
  "  --count N   exit after N messages\n"
  "\n"
  "Exit codes: 0, 1 refused by the broker, 2 usage, 3 no agent, 4 filter not allowed.\n";

/* ---- publish ---- */

static bool
read_stdin (char *buffer, size_t size, size_t *length)
{
  size_t n = fread (buffer, 1, size, stdin);

  *length = n;
  if (ferror (stdin))
    return false;
  return n < size || fgetc (stdin) == EOF; /* more than @size: too big */
}

static int
publish_report (const char *topic, int code)
{
  if (code == IV_ERR_DEVICE_OFFLINE) {
    cli_error ("publish on %s: the agent is offline (%s); --queue keeps the message until it is back", topic,
               iv_ota_last_error ());
    return EXIT_OFFLINE;
  }
  return cli_report_failure ("publish", code);
}

int
cli_publish (int argc, char **argv)
{
  static const struct option options[] = {
    { "qos", required_argument, NULL, 'q' },
    { "queue", no_argument, NULL, 'Q' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  static char buffer[IV_OTA_PUBLISH_MAX_PAYLOAD];
  unsigned int flags = 0;
  const char *payload;
  size_t length;
  int qos = 1, opt, rc;

  optind = 1;
  while ((opt = getopt_long (argc, argv, "+:h", options, NULL)) != -1) {
    if (opt == 'h') {
      fputs (cli_usage_publish, stdout);
      return EXIT_OK;
    } else if (opt == 'q' && (strcmp (optarg, "0") == 0 || strcmp (optarg, "1") == 0)) {
      qos = optarg[0] - '0';
    } else if (opt == 'q') {
      return cli_usage_error (cli_usage_publish, "--qos must be 0 or 1, not %s", optarg);
    } else if (opt == 'Q') {
      flags |= IV_OTA_PUBLISH_QUEUE;
    } else {
      return cli_usage_error (cli_usage_publish, "bad option %s", argv[optind - 1]);
    }
  }
  if (argc - optind != 2)
    return cli_usage_error (cli_usage_publish, "TOPIC and PAYLOAD are required");
  payload = argv[optind + 1];
  length = strlen (payload);
  if (strcmp (payload, "-") == 0) {
    if (!read_stdin (buffer, sizeof buffer, &length))
      return cli_usage_error (cli_usage_publish, "standard input: unreadable or over %d bytes",
                              IV_OTA_PUBLISH_MAX_PAYLOAD);
    payload = buffer;
  }
  rc = iv_ota_publish (argv[optind], payload, length, qos, flags);
  return rc == IV_ERR_NONE ? EXIT_OK : publish_report (argv[optind], rc);
}

/* ---- subscribe ---- */

static struct {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  unsigned long received;
  unsigned long wanted; /* 0: no end */
} inbox = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0 };

/* One line: printable ASCII as it is, anything else escaped, so that a
 * binary payload cannot play with the terminal. */
static void
print_escaped (const unsigned char *bytes, size_t length)
{
  for (size_t i = 0; i < length; i++) {
    if (bytes[i] == '\\')
      fputs ("\\\\", stdout);
    else if (bytes[i] >= 0x20 && bytes[i] < 0x7f)
      putchar (bytes[i]);
    else
      printf ("\\x%02x", bytes[i]);
  }
}

/* Library thread. */
static void
on_message (const char *topic, const void *payload, size_t length, void *user_data)
{
  pthread_mutex_lock (&inbox.lock);
  if (inbox.wanted == 0 || inbox.received < inbox.wanted) {
    print_escaped ((const unsigned char *) topic, strlen (topic));
    putchar (' ');
    print_escaped (payload, length);
    putchar ('\n');
    fflush (stdout);
    inbox.received++;
    pthread_cond_broadcast (&inbox.cond);
  }
  pthread_mutex_unlock (&inbox.lock);
}

static bool
parse_count (const char *text, unsigned long *count)
{
  char *end;

  errno = 0;
  *count = strtoul (text, &end, 10);
  return errno == 0 && *text >= '0' && *text <= '9' && *end == '\0' && *count > 0;
}

/* Until the count is reached or SIGINT/SIGTERM (blocked, taken here). */
static void
subscribe_wait (const sigset_t *signals)
{
  const struct timespec tick = { 0, 100 * 1000 * 1000 };
  bool done = false;

  while (!done) {
    if (sigtimedwait (signals, NULL, &tick) > 0)
      return;
    pthread_mutex_lock (&inbox.lock);
    done = inbox.wanted > 0 && inbox.received >= inbox.wanted;
    pthread_mutex_unlock (&inbox.lock);
  }
}

static int
subscribe_all (char **filters, int n, iv_ota_subscription_s **subscriptions)
{
  for (int i = 0; i < n; i++) {
    int rc = iv_ota_subscribe (filters[i], on_message, NULL, &subscriptions[i]);

    if (rc != IV_ERR_NONE) {
      char what[64];
      snprintf (what, sizeof what, "subscribe to %.40s", filters[i]);
      while (i-- > 0)
        iv_ota_unsubscribe (subscriptions[i]);
      return cli_report_failure (what, rc);
    }
    fprintf (stderr, "iv-ota: subscribed to %s\n", filters[i]);
  }
  return EXIT_OK;
}

int
cli_subscribe (int argc, char **argv)
{
  static const struct option options[] = {
    { "count", required_argument, NULL, 'c' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  iv_ota_subscription_s **subscriptions;
  sigset_t signals;
  int opt, n, rc;

  optind = 1;
  while ((opt = getopt_long (argc, argv, "+:h", options, NULL)) != -1) {
    if (opt == 'h') {
      fputs (cli_usage_subscribe, stdout);
      return EXIT_OK;
    } else if (opt == 'c' && !parse_count (optarg, &inbox.wanted)) {
      return cli_usage_error (cli_usage_subscribe, "--count must be a positive number, not %s", optarg);
    } else if (opt != 'c') {
      return cli_usage_error (cli_usage_subscribe, "bad option %s", argv[optind - 1]);
    }
  }
  if ((n = argc - optind) < 1)
    return cli_usage_error (cli_usage_subscribe, "a FILTER is required");
  /* Blocked before the library thread starts, which inherits the mask. */
  sigemptyset (&signals);
  sigaddset (&signals, SIGINT);
  sigaddset (&signals, SIGTERM);
  pthread_sigmask (SIG_BLOCK, &signals, NULL);
  subscriptions = calloc ((size_t) n, sizeof *subscriptions);
  if (subscriptions == NULL)
    return cli_report_failure ("subscribe", IV_ERR_OTA_NO_RESOURCES);
  rc = subscribe_all (argv + optind, n, subscriptions);
  if (rc == EXIT_OK) {
    subscribe_wait (&signals);
    for (int i = 0; i < n; i++)
      iv_ota_unsubscribe (subscriptions[i]);
  }
  free (subscriptions);
  return rc;
}
