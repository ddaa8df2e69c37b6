/*
 * Cached views that more than one module reads or invalidates, in Redis:
 *
 *   social:user:<id>      a user's public view (users module)
 *   social:author:<id>    the user as a post's author (posts module)
 *   social:ugen:<id>      bumped by every change of the user's views
 *   social:authorsgen     bumped by every change of any user's views
 *   social:feed:<E>:<id>  the user's home feed (posts module; <E> is
 *                         the epoch of the posts module's caches)
 *   social:feedgen:<id>   bumped when the feed is invalidated
 *
 * A reader that missed reads the generation before it asks PostgreSQL and
 * fills only if the generation did not move meanwhile, so that a fill
 * never puts back what a concurrent write invalidated.  A generation
 * lives 60 s after its last bump: far longer than a fill may take.
 */

#include "ngx_social_core_module.h"


/* ARGV[1]: how many users lose their views; then those, then the users
 * whose feeds are invalidated */
static ngx_social_redis_script_t  ngx_social_cache_forget_script = {
    ngx_string(
        "local n = tonumber(ARGV[1]) "
        "local e = redis.call('GET', 'social:epoch') or '0' "
        "if n > 0 then "
        "  if redis.call('EXISTS', '" NGX_SOCIAL_CACHE_AUTHORS_GEN "') == 1 "
        "  then redis.call('INCR', '" NGX_SOCIAL_CACHE_AUTHORS_GEN "') "
        "  else " NGX_SOCIAL_CACHE_LUA_AUTHORS_GEN_NX "end "
        "end "
        "for i = 2, #ARGV do "
        "  local id, g = ARGV[i] "
        "  if i <= n + 1 then "
        "    redis.call('DEL', 'social:user:' .. id, "
        "               'social:author:' .. id) "
        "    g = 'social:ugen:' .. id "
        "  else "
        "    redis.call('DEL', 'social:feed:' .. e .. ':' .. id) "
        "    g = 'social:feedgen:' .. id "
        "  end "
        "  redis.call('INCR', g) "
        "  redis.call('PEXPIRE', g, " NGX_SOCIAL_CACHE_GEN_TTL ") "
        "end "
        "return #ARGV - 1"),
    { 0 }, 1
};


ngx_int_t
ngx_social_cache_init(ngx_conf_t *cf)
{
    return ngx_social_redis_script_register(cf,
                                            &ngx_social_cache_forget_script);
}


/*
 * The views of n users and the feeds of m users are invalidated; as
 * ngx_social_redis_command() for r, handler and the result.
 */

ngx_int_t
ngx_social_cache_forget(ngx_http_request_t *r, ngx_str_t *users,
    ngx_uint_t n, ngx_str_t *feeds, ngx_uint_t m,
    ngx_social_redis_handler_pt handler, void *data)
{
    u_char                    count[NGX_INT_T_LEN];
    ngx_uint_t                i;
    const char              **argv;
    size_t                   *argvlen;
    ngx_social_redis_argv_t   args;

    argv = ngx_palloc(r->pool, (n + m + 1) * sizeof(char *));
    argvlen = ngx_palloc(r->pool, (n + m + 1) * sizeof(size_t));

    if (argv == NULL || argvlen == NULL) {
        return NGX_ERROR;
    }

    argv[0] = (const char *) count;
    argvlen[0] = ngx_sprintf(count, "%ui", n) - count;

    for (i = 0; i < n + m; i++) {
        argv[i + 1] = (const char *) (i < n ? users[i] : feeds[i - n]).data;
        argvlen[i + 1] = (i < n ? users[i] : feeds[i - n]).len;
    }

    args.argc = n + m + 1;
    args.argv = argv;
    args.argvlen = argvlen;

    return ngx_social_redis_eval(r, &ngx_social_cache_forget_script, 0, &args,
                                 handler, data);
}
