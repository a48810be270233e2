/* health.c — GET /v1/health: unauthenticated liveness, for load balancers and `make run`. */
#include "api/api.h"

#ifndef AI2IN_VERSION
#define AI2IN_VERSION "0.1.0"
#endif

int api_health(struct api_request *req, struct api_response *resp, struct error *e) {
        resp->status = 200;
        resp->body = json_pack("{s:s, s:s}", "status", "ok", "version", AI2IN_VERSION);
        return 0;
}
