/* Shared by the libFuzzer targets. fuzz-common.c, linked into each, has
 * LLVMFuzzerInitialize(): GLib set up so that a g_return_if_fail() hit by
 * hostile input is a crash the fuzzer reports, not a log line. */
#pragma once

#include <glib.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* abort() with a reason: the fuzzer saves the input that broke an invariant. */
#define FUZZ_CHECK(cond)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      g_printerr ("%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      abort ();                                                                \
    }                                                                          \
  } while (0)
