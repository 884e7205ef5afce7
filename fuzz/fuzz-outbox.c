/* ota_outbox_parse() on arbitrary outbox files: a damaged file must be
 * rejected cleanly (the outbox is then quarantined), never crash the agent. */
#include "outbox.h"

#include "fuzz-common.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr(GPtrArray) entries = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GPtrArray) keys = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GError) error = NULL;

  if (!ota_outbox_parse ((const char *) data, size, entries, keys, &error)) {
    FUZZ_CHECK (error != NULL);
    return 0;
  }
  /* One coalesce key per payload, "" for none: never NULL. */
  FUZZ_CHECK (entries->len == keys->len);
  for (guint i = 0; i < entries->len; i++)
    FUZZ_CHECK (entries->pdata[i] != NULL && keys->pdata[i] != NULL);
  return 0;
}
