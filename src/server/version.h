#pragma once

namespace keg::server {
/// What keg reports as redis_version and in HELLO: clients pick features (RESP3) from it.
inline constexpr const char* kRedisVersion = "7.0.15";
/// The same as a number (redis.REDIS_VERSION_NUM): 0x00MMmmpp.
inline constexpr int kRedisVersionNum = 0x0007000f;
/// keg's own version (INFO keg_version, the startup log).
inline constexpr const char* kKegVersion = "0.1.0";
}  // namespace keg::server
