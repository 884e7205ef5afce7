/* iv-ota, the command line: what its commands (iv-ota.c) and its watch
 * (iv-ota-watch.c) share. Everything runs on the main thread, except where
 * iv-ota-watch.c says otherwise. */
#pragma once

#include "iv_ota_ext.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exit codes: part of the interface, documented in iv-ota --help. */
enum {
  EXIT_OK = 0,
  EXIT_FAILED = 1,       /* the agent refused, or a watched update failed */
  EXIT_USAGE = 2,        /* bad command line */
  EXIT_NO_AGENT = 3,     /* no bus, or no agent on it */
  EXIT_NOT_PERMITTED = 4, /* only the module's owner may do this, or the bus policy refused */
  EXIT_NO_SUCH_MODULE = 5, /* the agent knows no such module */
  EXIT_TIMEOUT = 6,      /* watch --timeout ran out */
  EXIT_OFFLINE = 7,      /* publish: the agent is not connected to the cloud */
  EXIT_NOT_ANSWERING = 8, /* the agent owns its name but does not answer */
  EXIT_INTERRUPTED = 130, /* watch --until stopped by SIGINT/SIGTERM first */
};

/* How the main firmware (module "") is shown. */
#define MAIN_LABEL "(main)"
#define STATE_LEN 16

extern const char cli_usage_watch[];
extern const char cli_usage_publish[];
extern const char cli_usage_subscribe[];

/* "iv-ota: <message>" on stderr. */
void cli_error (const char *format, ...) __attribute__ ((format (printf, 1, 2)));
/* The message, the first line of @usage and a pointer to --help; returns EXIT_USAGE. */
int cli_usage_error (const char *usage, const char *format, ...) __attribute__ ((format (printf, 2, 3)));
/* Explains why @what failed with the IV_ERR_* @code; returns the exit code for it. */
int cli_report_failure (const char *what, int code);
/* "the system bus", "the session bus" or the address IV_OTA_BUS names. */
const char *cli_bus_description (void);

/* MAIN_LABEL for "", else @module. */
const char *cli_module_label (const char *module);
/* The module a command line argument names: "" and "." are the main firmware. */
const char *cli_module_from_arg (const char *arg);

/* Monotonic seconds. */
double cli_now (void);
/* "512 B", "12.5 KiB", "64.0 MiB", "1.50 GiB" */
void cli_format_bytes (char *buffer, size_t size, uint64_t bytes);
/* "26.2/64.0 MiB": both in the unit of @total. */
void cli_format_progress_bytes (char *buffer, size_t size, uint64_t done, uint64_t total);
/* "0:07", "12:34", "1:02:03" */
void cli_format_duration (char *buffer, size_t size, double seconds);
/* A last result: "-", "cancelled", "-4 MD5 mismatch: <message>". */
void cli_format_result (char *buffer, size_t size, int code, const char *message);
/* A copy of a text from elsewhere (result messages) safe for a terminal. */
void cli_copy_printable (char *dest, size_t size, const char *source);

/* iv-ota watch ARGS... (@argv[0] is "watch"); returns the exit code. */
int cli_watch (int argc, char **argv);
/* iv-ota publish / subscribe ARGS... (iv-ota-pubsub.c); return the exit code. */
int cli_publish (int argc, char **argv);
int cli_subscribe (int argc, char **argv);
