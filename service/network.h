/* Network policy of the downloads: URLs safe to log, the proxy to use. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* @url as logs may show it: scheme, host, port and path, without the
 * user:password@ part and without query or fragment (a presigned URL's
 * signature lives there). "(invalid URL)" for anything that does not parse.
 * Pure; free with g_free(). */
char *ota_url_for_log (const char *url);

/* Checks an [ota] proxy= value: empty, or http://[user:password@]host:port
 * with nothing after the port but an optional "/". The message names what is
 * wrong without quoting the value (it may hold a password). */
gboolean ota_proxy_url_check (const char *proxy, GError **error);

/* The proxy resolver for downloads. @proxy (checked with
 * ota_proxy_url_check()) non-empty: every download goes through it, except
 * hosts that @no_proxy lists. Empty: @https_proxy for https URLs and
 * @http_proxy for http URLs (either may be NULL or empty: direct), hosts in
 * @no_proxy direct ("*" alone: everything direct). @no_proxy is the usual
 * comma-separated list of host names, ".domain" suffixes, addresses and
 * CIDR ranges. Returns NULL when nothing is proxied (@error unset), or
 * NULL with @error set when a proxy URL is invalid (the message names the
 * variable but never quotes its value).
 *
 * A GSimpleProxyResolver: unlike the default resolver of GLib it reads no
 * dconf/GSettings and starts no thread. */
GProxyResolver *ota_proxy_resolver_new (const char *proxy, const char *https_proxy,
                                        const char *http_proxy, const char *no_proxy,
                                        GError **error);

/* ota_proxy_resolver_new() with the standard environment: https_proxy or
 * HTTPS_PROXY, http_proxy (lower case only, as curl: a CGI environment sets
 * HTTP_PROXY from a request header), no_proxy or NO_PROXY. */
GProxyResolver *ota_proxy_resolver_new_from_env (const char *proxy, GError **error);

G_END_DECLS
