/* iv-ota-sign: the device maker's side of signed images. Makes an Ed25519
 * key pair, signs an image for one module and version (printing the text to
 * paste in the console's user-defined field), and verifies such a text the
 * way the agent will. The statement format and the signed bytes come from
 * service/signature.c, shared with the agent. docs/signed-images.md has the
 * whole workflow. Exit codes are part of the interface (see usage). */
#include "protocol.h"
#include "signature.h"
#include "ota-build-config.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

static const char usage[] =
  "Usage: iv-ota-sign keygen KEY\n"
  "       iv-ota-sign sign --key KEY --version V [--module M] [--security-version N] IMAGE\n"
  "       iv-ota-sign verify --key KEY.pub --version V [--module M] IMAGE TEXT\n"
  "\n"
  "Signs firmware images for iv-otad agents that have [security] trusted_keys.\n"
  "\n"
  "  keygen   writes a new Ed25519 private key to KEY (PEM, mode 0600) and its\n"
  "           public key to KEY.pub (PEM, the file devices trust); prints the\n"
  "           key id. Existing files are never overwritten.\n"
  "  sign     prints one line: the text for the firmware's user-defined field\n"
  "           in the console, {\"iv_ota_sig\":{...}}. It signs the module, the\n"
  "           version, the size and SHA-256 of IMAGE, and the security version\n"
  "           (default 0; agents refuse images whose security version is lower\n"
  "           than the highest they installed). An app may add members of its\n"
  "           own beside \"iv_ota_sig\" in that object.\n"
  "  verify   checks TEXT (the user-defined field) as an agent trusting KEY.pub\n"
  "           would for an offer of IMAGE as module M, version V.\n"
  "\n"
  "Options:\n"
  "  --key FILE              private key (sign) or public key (verify)\n"
  "  --version V             the version the cloud offers: 1..32 of [A-Za-z0-9._-]\n"
  "  --module M              the module (fw_type); default \"\", the main firmware\n"
  "  --security-version N    0..4294967295, default 0\n"
  "  -h, --help              this help\n"
  "  --about                 the program's version\n"
  "\n"
  "Exit codes:\n"
  "  0  success (verify: the text is valid for this image)\n"
  "  1  failure: unreadable or invalid key or image, existing key files,\n"
  "     or (verify) a text that an agent would refuse, with the reason\n"
  "  2  usage error\n";

typedef struct {
  char *key;
  char *version;
  char *module;
  char *security_version;
  char **rest;
} Options;

static void
options_clear (Options *o)
{
  g_free (o->key);
  g_free (o->version);
  g_free (o->module);
  g_free (o->security_version);
  g_strfreev (o->rest);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Options, options_clear)

static int G_GNUC_PRINTF (2, 3)
fail (int code, const char *format, ...)
{
  va_list args;
  g_autofree char *message = NULL;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  g_printerr ("iv-ota-sign: %s\n", message);
  if (code == EXIT_USAGE)
    g_printerr ("Try 'iv-ota-sign --help'.\n");
  return code;
}

/* The last OpenSSL error, for messages; "" when there is none. */
static const char *
openssl_reason (void)
{
  unsigned long code = ERR_get_error ();
  const char *reason = code != 0 ? ERR_reason_error_string (code) : NULL;

  ERR_clear_error ();
  return reason != NULL ? reason : "invalid data";
}

/* ---- keygen ---- */

/* O_EXCL: a key is never overwritten, least of all a private one. */
static gboolean
write_new_file (const char *path, mode_t mode, const char *data, gsize length, GError **error)
{
  int fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  gboolean ok;

  if (fd < 0) {
    int saved = errno;
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "cannot create %s: %s%s", path,
                 g_strerror (saved), saved == EEXIST ? " (remove it first to make a new key)" : "");
    return FALSE;
  }
  /* The umask must not widen nor narrow what was asked. */
  ok = fchmod (fd, mode) == 0 && write (fd, data, length) == (ssize_t) length && fsync (fd) == 0;
  if (!ok) {
    int saved = errno;
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "cannot write %s: %s", path,
                 g_strerror (saved));
  }
  close (fd);
  if (!ok)
    unlink (path);
  return ok;
}

static char *
pem_of (EVP_PKEY *pkey, gboolean private_key)
{
  BIO *bio = BIO_new (BIO_s_mem ());
  char *data = NULL;
  char *copy = NULL;
  long length;
  int ok;

  if (bio == NULL)
    return NULL;
  ok = private_key ? PEM_write_bio_PrivateKey (bio, pkey, NULL, NULL, 0, NULL, NULL)
                   : PEM_write_bio_PUBKEY (bio, pkey);
  length = BIO_get_mem_data (bio, &data);
  if (ok == 1 && length > 0)
    copy = g_strndup (data, (gsize) length);
  BIO_free (bio);
  return copy;
}

static gboolean
key_id_of (EVP_PKEY *pkey, char key_id[OTA_SIGNATURE_KEY_ID_LEN + 1])
{
  guint8 raw[32];
  size_t length = sizeof raw;

  if (EVP_PKEY_get_raw_public_key (pkey, raw, &length) != 1 || length != sizeof raw)
    return FALSE;
  ota_signature_key_id (raw, key_id);
  return TRUE;
}

static int
cmd_keygen (const char *path)
{
  EVP_PKEY *pkey = EVP_PKEY_Q_keygen (NULL, NULL, "ED25519");
  g_autofree char *private_pem = pkey != NULL ? pem_of (pkey, TRUE) : NULL;
  g_autofree char *public_pem = pkey != NULL ? pem_of (pkey, FALSE) : NULL;
  g_autofree char *pub_path = g_strconcat (path, ".pub", NULL);
  g_autoptr (GError) error = NULL;
  char key_id[OTA_SIGNATURE_KEY_ID_LEN + 1];
  gboolean ids = pkey != NULL && key_id_of (pkey, key_id);

  EVP_PKEY_free (pkey);
  if (private_pem == NULL || public_pem == NULL || !ids)
    return fail (EXIT_FAILED, "cannot make an Ed25519 key: %s", openssl_reason ());
  /* The public one first: a failure leaves no private key without its public half. */
  if (g_file_test (path, G_FILE_TEST_EXISTS | G_FILE_TEST_IS_SYMLINK))
    return fail (EXIT_FAILED, "%s exists (remove it first to make a new key)", path);
  if (!write_new_file (pub_path, 0644, public_pem, strlen (public_pem), &error))
    return fail (EXIT_FAILED, "%s", error->message);
  if (!write_new_file (path, 0600, private_pem, strlen (private_pem), &error)) {
    unlink (pub_path);
    return fail (EXIT_FAILED, "%s", error->message);
  }
  g_print ("key %s: private key %s (keep it secret), public key %s (for devices' trusted_keys)\n",
           key_id, path, pub_path);
  return EXIT_OK;
}

/* ---- the image ---- */

static gboolean
hash_stream (FILE *file, const char *path, guint64 *size, char sha256[OTA_SIGNATURE_SHA256_LEN + 1],
             GError **error)
{
  g_autoptr (GChecksum) checksum = g_checksum_new (G_CHECKSUM_SHA256);
  g_autofree guint8 *buf = g_malloc (1024 * 1024);
  size_t n;

  while ((n = fread (buf, 1, 1024 * 1024, file)) > 0) {
    g_checksum_update (checksum, buf, n);
    *size += n;
  }
  if (ferror (file)) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "cannot read image %s", path);
    return FALSE;
  }
  if (*size == 0 || *size > OTA_PROTOCOL_FILE_SIZE_LIMIT) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                 "image %s: %" G_GUINT64_FORMAT " bytes, outside what an offer can carry (1..2^50)", path, *size);
    return FALSE;
  }
  memcpy (sha256, g_checksum_get_string (checksum), OTA_SIGNATURE_SHA256_LEN + 1);
  return TRUE;
}

static gboolean
hash_image (const char *path, guint64 *size, char sha256[OTA_SIGNATURE_SHA256_LEN + 1], GError **error)
{
  FILE *file = fopen (path, "rbe");
  struct stat st;
  gboolean ok;

  *size = 0;
  if (file == NULL) {
    int saved = errno;
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "cannot read image %s: %s", path,
                 g_strerror (saved));
    return FALSE;
  }
  if (fstat (fileno (file), &st) != 0 || !S_ISREG (st.st_mode)) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_REGULAR_FILE, "image %s is not a regular file", path);
    fclose (file);
    return FALSE;
  }
  ok = hash_stream (file, path, size, sha256, error);
  fclose (file);
  return ok;
}

/* ---- sign ---- */

static EVP_PKEY *
load_private_key (const char *path, GError **error)
{
  g_autofree char *data = NULL;
  gsize length = 0;
  BIO *bio;
  EVP_PKEY *pkey;

  if (!g_file_get_contents (path, &data, &length, error))
    return NULL;
  bio = BIO_new_mem_buf (data, (int) MIN (length, (gsize) G_MAXINT));
  pkey = bio != NULL ? PEM_read_bio_PrivateKey (bio, NULL, NULL, NULL) : NULL;
  BIO_free (bio);
  if (pkey == NULL || EVP_PKEY_get_base_id (pkey) != EVP_PKEY_ED25519) {
    EVP_PKEY_free (pkey);
    ERR_clear_error ();
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                 "%s: not an Ed25519 private key in PEM (iv-ota-sign keygen makes one)", path);
    return NULL;
  }
  return pkey;
}

static gboolean
sign_statement (EVP_PKEY *pkey, OtaSignatureStatement *statement)
{
  EVP_MD_CTX *ctx = EVP_MD_CTX_new ();
  gsize length = 0;
  g_autofree char *message = ota_signature_message (statement, &length);
  size_t sig_length = OTA_SIGNATURE_ED25519_LEN;
  gboolean ok;

  ok = ctx != NULL && EVP_DigestSignInit (ctx, NULL, NULL, NULL, pkey) == 1 &&
       EVP_DigestSign (ctx, statement->signature, &sig_length, (const guint8 *) message, length) == 1 &&
       sig_length == OTA_SIGNATURE_ED25519_LEN;
  EVP_MD_CTX_free (ctx);
  return ok;
}

static gboolean
parse_security_version (const char *text, guint32 *value)
{
  guint64 v = 0;

  if (text == NULL) {
    *value = 0;
    return TRUE;
  }
  if (!g_ascii_string_to_unsigned (text, 10, 0, OTA_SIGNATURE_SECURITY_VERSION_MAX, &v, NULL))
    return FALSE;
  *value = (guint32) v;
  return TRUE;
}

static int
check_names (const Options *o)
{
  if (o->key == NULL || o->version == NULL)
    return fail (EXIT_USAGE, "--key and --version are required");
  if (!ota_protocol_version_is_valid (o->version))
    return fail (EXIT_USAGE, "--version \"%s\": 1..32 characters of [A-Za-z0-9._-], not . or ..", o->version);
  if (!ota_protocol_module_is_valid (o->module != NULL ? o->module : ""))
    return fail (EXIT_USAGE, "--module \"%s\": 1..32 characters of [A-Za-z0-9._-], or \"\"", o->module);
  return EXIT_OK;
}

static int
cmd_sign (const Options *o)
{
  g_auto (OtaSignatureStatement) statement = { 0 };
  g_autoptr (GError) error = NULL;
  g_autofree char *json = NULL;
  EVP_PKEY *pkey;
  int rc = check_names (o);

  if (rc != EXIT_OK)
    return rc;
  if (g_strv_length (o->rest) != 1)
    return fail (EXIT_USAGE, "sign takes one IMAGE");
  if (!parse_security_version (o->security_version, &statement.security_version))
    return fail (EXIT_USAGE, "--security-version \"%s\": a number in 0..4294967295", o->security_version);
  statement.module = g_strdup (o->module != NULL ? o->module : "");
  statement.version = g_strdup (o->version);
  if (!hash_image (o->rest[0], &statement.size, statement.sha256, &error))
    return fail (EXIT_FAILED, "%s", error->message);
  if ((pkey = load_private_key (o->key, &error)) == NULL)
    return fail (EXIT_FAILED, "%s", error->message);
  if (!key_id_of (pkey, statement.key_id) || !sign_statement (pkey, &statement)) {
    EVP_PKEY_free (pkey);
    return fail (EXIT_FAILED, "cannot sign: %s", openssl_reason ());
  }
  EVP_PKEY_free (pkey);
  json = ota_signature_statement_to_json (&statement);
  g_print ("{\"" OTA_SIGNATURE_MEMBER "\":%s}\n", json);
  return EXIT_OK;
}

/* ---- verify ---- */

static int
cmd_verify (const Options *o)
{
  g_autoptr (OtaKeyring) keyring = ota_keyring_new ();
  g_auto (OtaSignatureStatement) statement = { 0 };
  g_autoptr (GError) error = NULL;
  const char *paths[] = { o->key, NULL };
  char sha256[OTA_SIGNATURE_SHA256_LEN + 1];
  guint64 size = 0;
  int rc = check_names (o);

  if (rc != EXIT_OK)
    return rc;
  if (g_strv_length (o->rest) != 2)
    return fail (EXIT_USAGE, "verify takes IMAGE and TEXT");
  if (o->security_version != NULL)
    return fail (EXIT_USAGE, "--security-version is for sign: verify reads it from TEXT");
  if (!ota_keyring_add_files (keyring, paths, &error) || !hash_image (o->rest[0], &size, sha256, &error))
    return fail (EXIT_FAILED, "%s", error->message);
  if (!ota_keyring_check (keyring, o->rest[1], o->module != NULL ? o->module : "", o->version, size,
                          &statement, &error))
    return fail (EXIT_FAILED, "refused: %s", error->message);
  if (strcmp (statement.sha256, sha256) != 0)
    return fail (EXIT_FAILED, "refused: %s has SHA-256 %s, the signature is for %s", o->rest[0], sha256,
                 statement.sha256);
  g_print ("valid: key %s signed module \"%s\" version %s, %" G_GUINT64_FORMAT " bytes, sha256 %s, "
           "security version %u\n",
           statement.key_id, statement.module, statement.version, statement.size, statement.sha256,
           statement.security_version);
  return EXIT_OK;
}

/* ---- main ---- */

static gboolean
parse_options (int argc, char **argv, Options *o, GError **error)
{
  GOptionEntry entries[] = {
    { "key", 0, 0, G_OPTION_ARG_FILENAME, &o->key, NULL, NULL },
    { "version", 0, 0, G_OPTION_ARG_STRING, &o->version, NULL, NULL },
    { "module", 0, 0, G_OPTION_ARG_STRING, &o->module, NULL, NULL },
    { "security-version", 0, 0, G_OPTION_ARG_STRING, &o->security_version, NULL, NULL },
    { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &o->rest, NULL, NULL },
    { NULL, 0, 0, 0, NULL, NULL, NULL },
  };
  g_autoptr (GOptionContext) context = g_option_context_new (NULL);

  g_option_context_set_help_enabled (context, FALSE);
  g_option_context_add_main_entries (context, entries, NULL);
  return g_option_context_parse (context, &argc, &argv, error);
}

int
main (int argc, char **argv)
{
  g_auto (Options) options = { 0 };
  g_autoptr (GError) error = NULL;
  const char *command = argc > 1 ? argv[1] : NULL;

  if (command == NULL)
    return fail (EXIT_USAGE, "a command is required: keygen, sign or verify");
  if (g_str_equal (command, "-h") || g_str_equal (command, "--help") || g_str_equal (command, "help")) {
    g_print ("%s", usage);
    return EXIT_OK;
  }
  if (g_str_equal (command, "--about")) {
    g_print ("iv-ota-sign %s\n", PACKAGE_VERSION);
    return EXIT_OK;
  }
  if (!g_str_equal (command, "keygen") && !g_str_equal (command, "sign") && !g_str_equal (command, "verify"))
    return fail (EXIT_USAGE, "unknown command \"%s\"", command);
  for (int i = 2; i < argc; i++) {
    if (g_str_equal (argv[i], "-h") || g_str_equal (argv[i], "--help")) {
      g_print ("%s", usage);
      return EXIT_OK;
    }
  }
  if (!parse_options (argc - 1, argv + 1, &options, &error))
    return fail (EXIT_USAGE, "%s", error->message);
  if (g_str_equal (command, "keygen")) {
    if (options.key != NULL || options.version != NULL || options.module != NULL ||
        options.security_version != NULL || g_strv_length (options.rest) != 1)
      return fail (EXIT_USAGE, "keygen takes one KEY path and no options");
    return cmd_keygen (options.rest[0]);
  }
  return g_str_equal (command, "sign") ? cmd_sign (&options) : cmd_verify (&options);
}
