/*
 * Health: GET /healthz answers while the worker runs.
 */

#include "ngx_social_gateway.h"


ngx_int_t
ngx_social_gateway_healthz(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    return ngx_social_send_json(r, NGX_HTTP_OK,
                                json_pack("{s:s}", "status", "ok"));
}
