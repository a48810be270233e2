/* health.c — GET /v1/health: unauthenticated liveness, for load balancers and `make run`,
 * and the warm pool's figures (sandbox/pool.h): counts only, nothing of any team's. */
#include "api/api.h"
#include "sandbox/pool.h"

#ifndef AI2IN_VERSION
#define AI2IN_VERSION "0.1.0"
#endif

int api_health(struct api_request *req, struct api_response *resp, struct error *e) {
        resp->status = 200;
        resp->body = json_pack("{s:s, s:s, s:o}", "status", "ok", "version", AI2IN_VERSION, "pool", pool_stats_json(req->eng));
        return 0;
}
