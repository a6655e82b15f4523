// keg's metrics in the Prometheus text exposition format (version 0.0.4): what `GET /metrics`
// serves. Names follow Prometheus's rules: a `keg_` prefix, base units (seconds, bytes), `_total`
// for counters; histograms for command latency, fsync latency and group-commit sizes.
//
// Thread: any. Reads the counters the rest of the server keeps (relaxed atomics, short locks).
#pragma once

#include <string>

#include "net/http_server.h"
#include "server/state.h"

namespace keg::server {

/// The whole exposition, ending with a newline.
std::string PrometheusText(ServerState& st);

/// The metrics-port endpoints: GET /metrics, /health/live, /health/ready (503 with a JSON reason
/// while loading, shutting down or once writes fail), 404 for any other path. Runs on the HTTP
/// thread; touches the store only while `st.ready`.
net::HttpResponse ServeHttp(ServerState& st, std::string_view path);

}  // namespace keg::server
