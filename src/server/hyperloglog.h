// HyperLogLog sketches in Redis's string format (PFADD, PFCOUNT, PFMERGE), so a sketch moves between
// keg and Redis as the string it is (DUMP / RESTORE, replication, GET / SET). docs/types.md has the
// layout; in short:
//   16-byte header: "HYLL", encoding (0 dense, 1 sparse), 3 unused bytes, the cached cardinality
//                   (8 bytes, little endian; bit 7 of its last byte set: the cache is stale)
//   dense:  16384 registers of 6 bits, packed from the lowest bit of each byte (12288 bytes)
//   sparse: runs of registers: 00xxxxxx  xxxxxx+1 registers of 0 (ZERO)
//                              01xxxxxx yyyyyyyy  (xxxxxx yyyyyyyy)+1 registers of 0 (XZERO)
//                              1vvvvvxx  xx+1 registers of value vvvvv+1 (VAL)
// An element's register is the low 14 bits of its 64-bit MurmurHash64A (seed 0xadc83b19); its value
// is the number of the bit, counting from 1, of the first 1 in the other 50 bits (51 when none).
// The estimate is Ertl's improved raw estimator (as Redis 5+), so keg and Redis count alike.
// Thread: plain functions on values; any thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace keg::server::hll {

inline constexpr size_t kRegisters = 16384;
inline constexpr size_t kHeaderSize = 16;
inline constexpr size_t kDenseSize = kHeaderSize + kRegisters * 6 / 8;
inline constexpr uint8_t kDense = 0;
inline constexpr uint8_t kSparse = 1;
/// The largest register value a sparse VAL run holds; a larger one makes the sketch dense.
inline constexpr uint8_t kSparseMaxValue = 32;

/// Redis's replies for a string that is no sketch, and for a sketch whose runs do not add up.
inline constexpr std::string_view kNotHll = "-WRONGTYPE Key is not a valid HyperLogLog string value.";
inline constexpr std::string_view kCorrupt = "-INVALIDOBJ Corrupted HLL object detected";

/// Redis's isHLLObjectOrReply: the magic, an encoding it knows, and a dense sketch's exact size.
/// The runs of a sparse one are checked where they are read (false from the functions below).
bool IsSketch(std::string_view value);

/// Whether a sketch (IsSketch) is dense; else sparse.
bool IsDense(std::string_view sketch);

/// A new, empty sketch: sparse, its cache valid and 0 (Redis's createHLLObject).
std::string NewSketch();

/// The register and value `element` sets (Redis's hllPatLen).
void Hash(std::string_view element, uint32_t* index, uint8_t* value);

/// The registers of `sketch` (IsSketch) into `regs` (kRegisters bytes), each the larger of its own
/// and the sketch's (a merge: zero `regs` first to read one alone). False when sparse runs do not
/// add up to kRegisters (or go past it: checked before any sum can overflow).
bool MergeInto(std::string_view sketch, uint8_t* regs);

/// The cardinality estimate of `regs`.
uint64_t Estimate(const uint8_t* regs);

/// The estimate of `sketch` read from its runs (no register array; a sparse one costs its length).
/// False when it is corrupt.
bool Count(std::string_view sketch, uint64_t* out);

/// Whether the header's cached cardinality is valid, and that cardinality.
bool CacheValid(std::string_view sketch);
uint64_t CachedCount(std::string_view sketch);
/// Writes `count` into the header as a valid cache.
void SetCache(std::string* sketch, uint64_t count);
/// Marks the header's cache stale (Redis's HLL_INVALIDATE_CACHE: the last byte's bit 7).
void MarkStale(std::string* sketch);

/// Adds `elements` to `sketch` (IsSketch) in place: *changed when a register grew (the cache is then
/// marked stale). A sparse sketch stays sparse while its encoding fits in `sparse_max_bytes`
/// (hll-sparse-max-bytes, header included) and no register passes kSparseMaxValue; else it becomes
/// dense. False (nothing changed) when the sketch is corrupt.
bool Add(std::string* sketch, std::span<const std::string_view> elements, size_t sparse_max_bytes, bool* changed);

/// Sets every register of `sketch` to at least `regs[i]` (PFMERGE's target), dense when `dense`,
/// and marks the cache stale. False when the sketch is corrupt.
bool Raise(std::string* sketch, const uint8_t* regs, bool dense, size_t sparse_max_bytes);

/// Rewrites a sparse sketch dense (PFDEBUG TODENSE / GETREG); the header's cache is kept. False when
/// it is corrupt.
bool ToDense(std::string* sketch);

/// PFDEBUG DECODE: a sparse sketch's runs as text, Redis's words ("z:3 Z:100 v:2,1": ZERO, XZERO,
/// VAL value,length). False when the runs do not add up to the registers (Redis prints whatever
/// runs there are; a hostile 33 MB string of them would make a text five times its size).
bool DescribeSparse(std::string_view sketch, std::string* out);

/// PFSELFTEST: checks the register packing, the sparse and dense encodings against each other and
/// the estimate's error over a range of cardinalities. Empty when all hold, else what failed.
std::string SelfTest();

}  // namespace keg::server::hll
