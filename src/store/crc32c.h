// CRC-32C (Castagnoli), as used by every keg record and hint file. Uses the SSE4.2 crc32
// instruction when the CPU has it (checked once at start-up) and a table otherwise; both give the
// same result. Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>

namespace keg::store::crc32c {

/// Extends `crc` (the value returned by an earlier call, or 0 to start) with `n` bytes.
uint32_t Extend(uint32_t crc, const void* data, size_t n);

/// The CRC-32C of `n` bytes.
inline uint32_t Value(const void* data, size_t n) { return Extend(0, data, n); }

/// True when the hardware path is in use.
bool HardwareAccelerated();

}  // namespace keg::store::crc32c
