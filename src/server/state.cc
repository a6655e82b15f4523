#include "server/state.h"

#include <spdlog/spdlog.h>

namespace keg::server {

void ServerState::ApplyConfigLocked() {
  timeout.store(static_cast<uint32_t>(config.timeout), std::memory_order_relaxed);
  maxclients.store(config.maxclients, std::memory_order_relaxed);
  protected_mode.store(config.protected_mode, std::memory_order_relaxed);
  acl.SetDefaultPassword(config.requirepass);  // only when requirepass changed (ACL SETUSER default stays)
  acl.log_max_len.store(config.acllog_max_len, std::memory_order_relaxed);
  proto_max_bulk_len.store(config.proto_max_bulk_len, std::memory_order_relaxed);
  limits.query_buffer_limit.store(static_cast<uint64_t>(config.client_query_buffer_limit));
  limits.output_hard_limit.store(static_cast<uint64_t>(config.output_hard));
  limits.output_soft_limit.store(static_cast<uint64_t>(config.output_soft));
  limits.output_soft_seconds.store(static_cast<uint32_t>(config.output_soft_seconds));
  limits.tcp_keepalive.store(static_cast<uint32_t>(config.tcp_keepalive));
  slowlog.slower_than_us.store(config.slowlog_log_slower_than, std::memory_order_relaxed);
  slowlog.max_len.store(config.slowlog_max_len, std::memory_order_relaxed);
  latency.threshold_ms.store(config.latency_monitor_threshold, std::memory_order_relaxed);
  latency_tracking.store(config.latency_tracking, std::memory_order_relaxed);
  debug_command.store(config.enable_debug_command == "yes"     ? 1
                      : config.enable_debug_command == "local" ? 2
                                                               : 0,
                      std::memory_order_relaxed);
  switch (config.loglevel) {
    case LogLevel::kDebug:
    case LogLevel::kVerbose:
      spdlog::set_level(spdlog::level::debug);
      break;
    case LogLevel::kNotice:
      spdlog::set_level(spdlog::level::info);
      break;
    case LogLevel::kWarning:
      spdlog::set_level(spdlog::level::warn);
      break;
  }
  config_epoch.fetch_add(1, std::memory_order_release);
}

}  // namespace keg::server
