#include "server/hyperloglog.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

namespace keg::server::hll {
namespace {

constexpr size_t kP = 14;       // index bits
constexpr size_t kQ = 64 - kP;  // the bits whose first 1 is counted
constexpr size_t kDenseBytes = kDenseSize - kHeaderSize;
constexpr size_t kEncodingAt = 4;
constexpr size_t kCacheAt = 8;
constexpr uint8_t kStaleBit = 0x80;  // in the cache's last byte
constexpr uint64_t kSeed = 0xadc83b19ULL;

using Histogram = std::array<uint32_t, 64>;

// MurmurHash64A (Austin Appleby's, public domain): the hash Redis's sketches are built with.
// Blocks are read little endian whatever the host, as Redis reads them.
uint64_t Murmur64A(std::string_view data, uint64_t seed) {
  constexpr uint64_t m = 0xc6a4a7935bd1e995ULL;
  constexpr int r = 47;
  const auto* p = reinterpret_cast<const uint8_t*>(data.data());
  const size_t len = data.size();
  uint64_t h = seed ^ (len * m);
  const size_t blocks = len / 8;
  for (size_t i = 0; i < blocks; ++i) {
    uint64_t k = 0;
    for (size_t b = 0; b < 8; ++b) k |= uint64_t{p[i * 8 + b]} << (8 * b);
    k *= m;
    k ^= k >> r;
    k *= m;
    h ^= k;
    h *= m;
  }
  const uint8_t* tail = p + blocks * 8;
  const size_t rest = len & 7;
  if (rest != 0) {
    for (size_t b = rest; b-- > 0;) h ^= uint64_t{tail[b]} << (8 * b);
    h *= m;
  }
  h ^= h >> r;
  h *= m;
  h ^= h >> r;
  return h;
}

uint8_t* Registers(std::string* s) { return reinterpret_cast<uint8_t*>(s->data()) + kHeaderSize; }
const uint8_t* Registers(std::string_view s) { return reinterpret_cast<const uint8_t*>(s.data()) + kHeaderSize; }
uint8_t Encoding(std::string_view s) { return static_cast<uint8_t>(s[kEncodingAt]); }

// Register i of a dense array: bits [6i, 6i + 6), from the lowest bit of each byte up.
uint8_t DenseGet(const uint8_t* p, size_t i) {
  const size_t bit = i * 6;
  const size_t b = bit / 8;
  const unsigned fb = bit % 8;
  unsigned v = p[b] >> fb;
  if (fb > 2) v |= static_cast<unsigned>(p[b + 1]) << (8 - fb);  // (fb <= 2: it fits in byte b)
  return static_cast<uint8_t>(v & 63);
}

void DenseSet(uint8_t* p, size_t i, uint8_t v) {
  const size_t bit = i * 6;
  const size_t b = bit / 8;
  const unsigned fb = bit % 8;
  p[b] = static_cast<uint8_t>((p[b] & ~(63u << fb)) | (static_cast<unsigned>(v) << fb));
  if (fb > 2) {
    p[b + 1] = static_cast<uint8_t>((p[b + 1] & ~(63u >> (8 - fb))) | (static_cast<unsigned>(v) >> (8 - fb)));
  }
}

// Every four registers fill three bytes exactly.
void DenseHistogram(const uint8_t* p, Histogram* h) {
  for (size_t j = 0; j < kDenseBytes; j += 3) {
    const uint32_t w = uint32_t{p[j]} | uint32_t{p[j + 1]} << 8 | uint32_t{p[j + 2]} << 16;
    ++(*h)[w & 63];
    ++(*h)[(w >> 6) & 63];
    ++(*h)[(w >> 12) & 63];
    ++(*h)[(w >> 18) & 63];
  }
}

// Walks the runs of a sparse sketch: fn(first register, length, value, xzero: a two-byte XZERO run)
// for each, in order. False when a run goes past the last register, an XZERO is cut short, or the
// runs stop short of it.
template <typename Fn>
bool ForEachRun(std::string_view sketch, Fn&& fn) {
  const auto* p = reinterpret_cast<const uint8_t*>(sketch.data()) + kHeaderSize;
  const auto* end = reinterpret_cast<const uint8_t*>(sketch.data()) + sketch.size();
  size_t at = 0;  // never past kRegisters: each run is checked before it is added
  while (p < end) {
    size_t len = 0;
    uint8_t value = 0;
    const bool xzero = (*p & 0xc0) == 0x40;
    if ((*p & 0xc0) == 0) {  // ZERO
      len = (*p & 0x3f) + 1u;
      ++p;
    } else if (xzero) {
      if (end - p < 2) return false;
      len = ((static_cast<size_t>(*p & 0x3f) << 8) | p[1]) + 1;
      p += 2;
    } else {  // VAL
      value = static_cast<uint8_t>(((*p >> 2) & 0x1f) + 1);
      len = (*p & 3u) + 1;
      ++p;
    }
    if (len > kRegisters - at) return false;
    fn(at, len, value, xzero);
    at += len;
  }
  return at == kRegisters;
}

bool Decode(std::string_view sketch, uint8_t* regs) {
  if (Encoding(sketch) == kDense) {
    const uint8_t* p = Registers(sketch);
    for (size_t i = 0; i < kRegisters; ++i) regs[i] = DenseGet(p, i);
    return true;
  }
  std::memset(regs, 0, kRegisters);
  return ForEachRun(sketch, [&](size_t at, size_t len, uint8_t v, bool) { std::memset(regs + at, v, len); });
}

// The header of `from` (its cache included) with `encoding`, then the registers so encoded.
std::string EncodeDense(std::string_view header, const uint8_t* regs) {
  std::string out(kDenseSize, '\0');
  std::memcpy(out.data(), header.data(), kHeaderSize);
  out[kEncodingAt] = static_cast<char>(kDense);
  uint8_t* p = Registers(&out);
  for (size_t i = 0; i < kRegisters; ++i) {
    if (regs[i] != 0) DenseSet(p, i, regs[i]);
  }
  return out;
}

uint8_t ValOp(unsigned value, size_t len) {
  return static_cast<uint8_t>(0x80u | ((value - 1) << 2) | static_cast<unsigned>(len - 1));
}

// A run of `len` zero registers as Redis writes it: ZERO up to 64, XZERO past that.
void PutZeros(uint8_t* seq, size_t* n, size_t len) {
  if (len > 64) {
    seq[(*n)++] = static_cast<uint8_t>(0x40 | ((len - 1) >> 8));
    seq[(*n)++] = static_cast<uint8_t>((len - 1) & 0xff);
  } else {
    seq[(*n)++] = static_cast<uint8_t>(len - 1);
  }
}

enum class SetResult { kUnchanged, kChanged, kCorrupt, kPromote };

// Sets register `index` of a sparse sketch to `count` where that raises it, as Redis's
// hllSparseSet does it, step for step, so that the same PFADDs leave the same bytes on keg and on
// Redis (GET, DEBUG DIGEST of a keg replica of Redis): the run holding the register is split into
// at most five (zeros / the old value, the new value, zeros / the old value), then up to five
// opcodes from the one before it are scanned for neighbouring VAL runs of one value to join.
// kPromote: the sketch must become dense (a value past kSparseMaxValue, or past `max_bytes`).
// Like Redis's, it reads the runs only up to the register's: damage past it shows in a count.
SetResult SparseSet(std::string* s, size_t index, uint8_t count, size_t max_bytes) {
  if (count > kSparseMaxValue) return SetResult::kPromote;
  auto at = [s](size_t i) { return static_cast<uint8_t>((*s)[i]); };
  size_t p = kHeaderSize;
  size_t end = s->size();
  size_t first = 0;  // the first register of the run at p
  size_t span = 0;
  size_t prev = kHeaderSize;  // the opcode before p (none: the first)
  while (p < end) {
    size_t oplen = 1;
    const uint8_t op = at(p);
    if ((op & 0xc0) == 0) {
      span = (op & 0x3fu) + 1;
    } else if ((op & 0x80) != 0) {
      span = (op & 3u) + 1;
    } else {
      if (p + 1 >= end) return SetResult::kCorrupt;
      span = ((static_cast<size_t>(op & 0x3f) << 8) | at(p + 1)) + 1;
      oplen = 2;
    }
    if (index <= first + span - 1) break;
    prev = p;
    p += oplen;
    first += span;
  }
  if (span == 0 || p >= end) return SetResult::kCorrupt;
  const uint8_t op = at(p);
  const bool is_xzero = (op & 0xc0) == 0x40;
  const bool is_val = (op & 0x80) != 0;
  bool in_place = false;
  if (is_val) {
    const unsigned old = ((op >> 2) & 0x1fu) + 1;
    if (old >= count) return SetResult::kUnchanged;
    in_place = span == 1;
  } else {
    in_place = !is_xzero && span == 1;
  }
  if (in_place) {
    (*s)[p] = static_cast<char>(ValOp(count, 1));
  } else {
    uint8_t seq[5];
    size_t n = 0;
    const size_t last = first + span - 1;
    if (!is_val) {
      if (index != first) PutZeros(seq, &n, index - first);
      seq[n++] = ValOp(count, 1);
      if (index != last) PutZeros(seq, &n, last - index);
    } else {
      const unsigned cur = ((op >> 2) & 0x1fu) + 1;
      if (index != first) seq[n++] = ValOp(cur, index - first);
      seq[n++] = ValOp(count, 1);
      if (index != last) seq[n++] = ValOp(cur, last - index);
    }
    const size_t oldlen = is_xzero ? 2 : 1;
    if (n > oldlen && s->size() + (n - oldlen) > max_bytes) return SetResult::kPromote;
    s->replace(p, oldlen, reinterpret_cast<const char*>(seq), n);
    end = s->size();
  }
  // Neighbouring VAL runs of one value joined, up to 4 registers a run, within five steps.
  size_t q = prev;
  for (int scan = 5; q < end && scan > 0; --scan) {
    const uint8_t o = at(q);
    if ((o & 0xc0) == 0x40) {
      q += 2;
      continue;
    }
    if ((o & 0xc0) == 0) {
      ++q;
      continue;
    }
    if (q + 1 < end && (at(q + 1) & 0x80) != 0) {
      const unsigned v1 = ((o >> 2) & 0x1fu) + 1;
      const unsigned v2 = ((at(q + 1) >> 2) & 0x1fu) + 1;
      const size_t len = (o & 3u) + 1 + (at(q + 1) & 3u) + 1;
      if (v1 == v2 && len <= 4) {
        (*s)[q + 1] = static_cast<char>(ValOp(v1, len));
        s->erase(q, 1);
        --end;
        continue;  // (the joined run may join the next one)
      }
    }
    ++q;
  }
  MarkStale(s);
  return SetResult::kChanged;
}

// Ertl's sigma and tau ("New cardinality estimation algorithms for HyperLogLog sketches", 2017):
// the series are summed until a term no longer changes the sum.
double Sigma(double x) {
  if (x == 1.0) return std::numeric_limits<double>::infinity();
  double y = 1.0;
  double z = x;
  double prev = 0;
  do {
    x *= x;
    prev = z;
    z += x * y;
    y += y;
  } while (prev != z);
  return z;
}

double Tau(double x) {
  if (x == 0.0 || x == 1.0) return 0.0;
  double y = 1.0;
  double z = 1 - x;
  double prev = 0;
  do {
    x = std::sqrt(x);
    prev = z;
    y *= 0.5;
    z -= (1 - x) * (1 - x) * y;
  } while (prev != z);
  return z / 3;
}

uint64_t EstimateHistogram(const Histogram& h) {
  constexpr double m = static_cast<double>(kRegisters);
  constexpr double alpha_inf = 0.721347520444481703680;  // 1 / (2 ln 2)
  double z = m * Tau((m - h[kQ + 1]) / m);
  for (size_t j = kQ; j >= 1; --j) {
    z += h[j];
    z *= 0.5;
  }
  z += m * Sigma(h[0] / m);
  return static_cast<uint64_t>(std::llround(alpha_inf * m * m / z));
}

}  // namespace

bool IsSketch(std::string_view value) {
  if (value.size() < kHeaderSize || value.substr(0, 4) != "HYLL") return false;
  const uint8_t enc = Encoding(value);
  if (enc > kSparse) return false;
  return enc != kDense || value.size() == kDenseSize;
}

bool IsDense(std::string_view sketch) { return Encoding(sketch) == kDense; }

std::string NewSketch() {
  std::string s(kHeaderSize, '\0');
  std::memcpy(s.data(), "HYLL", 4);
  s[kEncodingAt] = static_cast<char>(kSparse);
  s.push_back(static_cast<char>(0x40 | ((kRegisters - 1) >> 8)));  // one XZERO run of every register
  s.push_back(static_cast<char>((kRegisters - 1) & 0xff));
  return s;
}

void Hash(std::string_view element, uint32_t* index, uint8_t* value) {
  uint64_t h = Murmur64A(element, kSeed);
  *index = static_cast<uint32_t>(h & (kRegisters - 1));
  h >>= kP;
  h |= uint64_t{1} << kQ;  // so the count ends at kQ + 1
  *value = static_cast<uint8_t>(std::countr_zero(h) + 1);
}

bool MergeInto(std::string_view sketch, uint8_t* regs) {
  if (Encoding(sketch) == kDense) {
    const uint8_t* p = Registers(sketch);
    for (size_t i = 0; i < kRegisters; ++i) regs[i] = std::max(regs[i], DenseGet(p, i));
    return true;
  }
  return ForEachRun(sketch, [&](size_t at, size_t len, uint8_t v, bool) {
    if (v == 0) return;
    for (size_t i = at; i < at + len; ++i) regs[i] = std::max(regs[i], v);
  });
}

uint64_t Estimate(const uint8_t* regs) {
  Histogram h{};
  for (size_t i = 0; i < kRegisters; ++i) ++h[regs[i] & 63];
  return EstimateHistogram(h);
}

bool Count(std::string_view sketch, uint64_t* out) {
  Histogram h{};
  if (Encoding(sketch) == kDense) {
    DenseHistogram(Registers(sketch), &h);
  } else if (!ForEachRun(sketch, [&](size_t, size_t len, uint8_t v, bool) { h[v] += static_cast<uint32_t>(len); })) {
    return false;
  }
  *out = EstimateHistogram(h);
  return true;
}

bool CacheValid(std::string_view sketch) { return (static_cast<uint8_t>(sketch[kCacheAt + 7]) & kStaleBit) == 0; }

uint64_t CachedCount(std::string_view sketch) {
  uint64_t v = 0;
  for (size_t b = 0; b < 8; ++b) v |= uint64_t{static_cast<uint8_t>(sketch[kCacheAt + b])} << (8 * b);
  return v;
}

void MarkStale(std::string* s) { (*s)[kCacheAt + 7] = static_cast<char>(static_cast<uint8_t>((*s)[kCacheAt + 7]) | kStaleBit); }

void SetCache(std::string* sketch, uint64_t count) {
  for (size_t b = 0; b < 8; ++b) (*sketch)[kCacheAt + b] = static_cast<char>((count >> (8 * b)) & 0xff);
}

bool Add(std::string* sketch, std::span<const std::string_view> elements, size_t sparse_max_bytes, bool* changed) {
  *changed = false;
  if (Encoding(*sketch) == kDense) {
    uint8_t* p = Registers(sketch);
    for (std::string_view e : elements) {
      uint32_t i = 0;
      uint8_t v = 0;
      Hash(e, &i, &v);
      if (DenseGet(p, i) < v) {
        DenseSet(p, i, v);
        *changed = true;
      }
    }
    if (*changed) MarkStale(sketch);
    return true;
  }
  // Sparse: element by element, as Redis's hllSparseAdd (the same bytes as Redis's), dense from
  // the element that needs it on.
  for (std::string_view e : elements) {
    uint32_t i = 0;
    uint8_t v = 0;
    Hash(e, &i, &v);
    if (Encoding(*sketch) == kDense) {
      uint8_t* p = Registers(sketch);
      if (DenseGet(p, i) < v) {
        DenseSet(p, i, v);
        *changed = true;
      }
      continue;
    }
    switch (SparseSet(sketch, i, v, sparse_max_bytes)) {
      case SetResult::kUnchanged:
        break;
      case SetResult::kChanged:
        *changed = true;
        break;
      case SetResult::kCorrupt:
        return false;
      case SetResult::kPromote:
        if (!ToDense(sketch)) return false;
        if (DenseGet(Registers(sketch), i) < v) DenseSet(Registers(sketch), i, v);
        *changed = true;
        break;
    }
  }
  if (*changed) MarkStale(sketch);
  return true;
}

bool Raise(std::string* sketch, const uint8_t* regs, bool dense, size_t sparse_max_bytes) {
  if (dense && !ToDense(sketch)) return false;
  // Register by register, as Redis's PFMERGE sets them (a sparse target's bytes are Redis's).
  for (size_t i = 0; i < kRegisters; ++i) {
    if (regs[i] == 0) continue;
    if (Encoding(*sketch) == kSparse) {
      const SetResult r = SparseSet(sketch, i, regs[i], sparse_max_bytes);
      if (r == SetResult::kCorrupt) return false;
      if (r != SetResult::kPromote) continue;
      if (!ToDense(sketch)) return false;
    }
    uint8_t* p = Registers(sketch);
    if (DenseGet(p, i) < regs[i]) DenseSet(p, i, regs[i]);
  }
  MarkStale(sketch);
  return true;
}

bool ToDense(std::string* sketch) {
  if (Encoding(*sketch) == kDense) return true;
  std::vector<uint8_t> regs(kRegisters);
  if (!Decode(*sketch, regs.data())) return false;
  *sketch = EncodeDense(*sketch, regs.data());
  return true;
}

bool DescribeSparse(std::string_view sketch, std::string* out) {
  out->clear();
  const bool whole = ForEachRun(sketch, [&](size_t, size_t len, uint8_t v, bool xzero) {
    if (v != 0) {
      *out += "v:" + std::to_string(v) + "," + std::to_string(len) + " ";
    } else {
      *out += (xzero ? "Z:" : "z:") + std::to_string(len) + " ";
    }
  });
  if (!whole) {
    out->clear();
    return false;
  }
  if (!out->empty()) out->pop_back();
  return true;
}

std::string SelfTest() {
  std::mt19937_64 rng(12345);
  // 1. The packing: every register keeps its own 6 bits, whatever its neighbours hold.
  {
    std::vector<uint8_t> dense(kDenseBytes + 1, 0);
    std::vector<uint8_t> want(kRegisters);
    for (int round = 0; round < 4; ++round) {
      for (size_t i = 0; i < kRegisters; ++i) {
        want[i] = static_cast<uint8_t>(rng() & 63);
        DenseSet(dense.data(), i, want[i]);
      }
      for (size_t i = 0; i < kRegisters; ++i) {
        if (DenseGet(dense.data(), i) != want[i]) {
          return "TESTFAILED Register error at register " + std::to_string(i);
        }
      }
      if (dense[kDenseBytes] != 0) return "TESTFAILED a register was written past the last byte";
    }
  }
  // 2. The same elements in a sparse and a dense sketch count the same.
  for (int round = 0; round < 20; ++round) {
    std::string sparse = NewSketch();
    std::string dense = NewSketch();
    ToDense(&dense);
    const size_t n = static_cast<size_t>(rng() % 2000);
    std::vector<std::string> items;
    for (size_t i = 0; i < n; ++i) items.push_back(std::to_string(rng()));
    std::vector<std::string_view> views(items.begin(), items.end());
    bool changed = false;
    if (!Add(&sparse, views, 1 << 20, &changed) || !Add(&dense, views, 1 << 20, &changed)) {
      return "TESTFAILED a sketch read as corrupt";
    }
    if (Encoding(sparse) != kSparse) return "TESTFAILED sparse encoding not used";
    uint64_t a = 0;
    uint64_t b = 0;
    if (!Count(sparse, &a) || !Count(dense, &b) || a != b) return "TESTFAILED dense/sparse disagree";
  }
  // 3. The estimate's error, all along a growing set: within 5 standard errors (1.04 / sqrt(m)),
  // and exact-ish where the set is small.
  {
    std::string s = NewSketch();
    ToDense(&s);
    const double rel = 1.04 / std::sqrt(static_cast<double>(kRegisters));
    uint64_t next = 1;
    for (uint64_t j = 1; j <= 200000; ++j) {
      const std::string e = "selftest:" + std::to_string(j);
      const std::string_view v[] = {e};
      bool changed = false;
      Add(&s, v, 0, &changed);
      if (j != next) continue;
      next = j < 100 ? j + 1 : j + j / 10;
      uint64_t est = 0;
      Count(s, &est);
      const double err = std::fabs(static_cast<double>(est) - static_cast<double>(j));
      const double allowed = std::max(1.0, static_cast<double>(j) * rel * 5);
      if (err > allowed) {
        return "TESTFAILED Too big error. card:" + std::to_string(j) + " abserr:" + std::to_string(err);
      }
    }
  }
  return "";
}

}  // namespace keg::server::hll
