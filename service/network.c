/* Network policy of the downloads: URLs safe to log, the proxy to use. */
#include "network.h"

#include <string.h>

char *
ota_url_for_log (const char *url)
{
  g_autoptr(GUri) uri = NULL;
  const char *path;

  if (url == NULL)
    return g_strdup ("(invalid URL)");
  uri = g_uri_parse (url, G_URI_FLAGS_ENCODED | G_URI_FLAGS_PARSE_RELAXED, NULL);
  if (uri == NULL || g_uri_get_host (uri) == NULL)
    return g_strdup ("(invalid URL)");
  path = g_uri_get_path (uri);
  /* Rebuilt from the parts that carry no secret: userinfo, query and fragment stay out. */
  return g_uri_join (G_URI_FLAGS_ENCODED, g_uri_get_scheme (uri), NULL, g_uri_get_host (uri),
                     g_uri_get_port (uri), path != NULL ? path : "", NULL, NULL);
}

static gboolean
proxy_error (GError **error, const char *what)
{
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
               "%s (expected http://[user:password@]host:port)", what);
  return FALSE;
}

gboolean
ota_proxy_url_check (const char *proxy, GError **error)
{
  g_autoptr(GUri) uri = NULL;
  const char *path;

  if (proxy == NULL || *proxy == '\0')
    return TRUE;
  uri = g_uri_parse (proxy, G_URI_FLAGS_ENCODED | G_URI_FLAGS_HAS_PASSWORD, NULL);
  if (uri == NULL)
    return proxy_error (error, "not a URL");
  if (g_ascii_strcasecmp (g_uri_get_scheme (uri), "http") != 0)
    return proxy_error (error, "only http:// proxies are supported");
  if (g_uri_get_host (uri) == NULL || *g_uri_get_host (uri) == '\0')
    return proxy_error (error, "no host");
  if (g_uri_get_port (uri) <= 0)
    return proxy_error (error, "no port");
  path = g_uri_get_path (uri);
  if ((path != NULL && *path != '\0' && strcmp (path, "/") != 0) || g_uri_get_query (uri) != NULL ||
      g_uri_get_fragment (uri) != NULL)
    return proxy_error (error, "nothing may follow the port");
  return TRUE;
}

/* An environment value may omit the scheme, as curl allows. */
static char *
proxy_from_env_value (const char *value)
{
  if (value == NULL || *value == '\0')
    return NULL;
  if (strstr (value, "://") == NULL)
    return g_strconcat ("http://", value, NULL);
  return g_strdup (value);
}

static char **
split_no_proxy (const char *no_proxy)
{
  g_auto(GStrv) parts = g_strsplit (no_proxy != NULL ? no_proxy : "", ",", -1);
  g_autoptr(GPtrArray) hosts = g_ptr_array_new_with_free_func (g_free);

  for (gsize i = 0; parts[i] != NULL; i++) {
    g_strstrip (parts[i]);
    if (parts[i][0] != '\0')
      g_ptr_array_add (hosts, g_strdup (parts[i]));
  }
  g_ptr_array_add (hosts, NULL);
  return (char **) g_ptr_array_free (g_steal_pointer (&hosts), FALSE);
}

static gboolean
check_named (const char *name, const char *value, GError **error)
{
  if (ota_proxy_url_check (value, error))
    return TRUE;
  g_prefix_error (error, "%s: ", name);
  return FALSE;
}

GProxyResolver *
ota_proxy_resolver_new (const char *proxy, const char *https_proxy, const char *http_proxy,
                        const char *no_proxy, GError **error)
{
  g_auto(GStrv) ignore = split_no_proxy (no_proxy);
  g_autofree char *https = proxy_from_env_value (https_proxy);
  g_autofree char *http = proxy_from_env_value (http_proxy);
  GSimpleProxyResolver *resolver;

  if (!check_named ("proxy", proxy, error) || !check_named ("https_proxy", https, error) ||
      !check_named ("http_proxy", http, error))
    return NULL;
  if (ignore[0] != NULL && strcmp (ignore[0], "*") == 0 && ignore[1] == NULL)
    return NULL;
  if (proxy != NULL && *proxy != '\0')
    return g_simple_proxy_resolver_new (proxy, ignore);
  if (https == NULL && http == NULL)
    return NULL;
  resolver = G_SIMPLE_PROXY_RESOLVER (g_simple_proxy_resolver_new (NULL, ignore));
  if (https != NULL)
    g_simple_proxy_resolver_set_uri_proxy (resolver, "https", https);
  if (http != NULL)
    g_simple_proxy_resolver_set_uri_proxy (resolver, "http", http);
  return G_PROXY_RESOLVER (resolver);
}

static const char *
getenv_either (const char *lower, const char *upper)
{
  const char *value = g_getenv (lower);

  return value != NULL ? value : g_getenv (upper);
}

GProxyResolver *
ota_proxy_resolver_new_from_env (const char *proxy, GError **error)
{
  return ota_proxy_resolver_new (proxy, getenv_either ("https_proxy", "HTTPS_PROXY"),
                                 g_getenv ("http_proxy"),
                                 getenv_either ("no_proxy", "NO_PROXY"), error);
}
