// GEO commands (Redis 7.0's geo.c replies and errors): points are members of a sorted set scored
// by their 52-bit geohash (server/geo.h), so GEOADD is a ZADD, the ZSET commands read and edit
// the same keys, and a search reads the score ranges of nine cells (ZsetSeq::Rank and Range:
// O(log n + m) each). The read-only forms (GEOSEARCH, GEORADIUS_RO, GEORADIUSBYMEMBER_RO, GEOPOS,
// GEOHASH, GEODIST) run on the I/O thread as the other sorted set reads; GEORADIUS and
// GEORADIUSBYMEMBER (write commands, as Redis's, for their STORE option) and GEOSEARCHSTORE run
// as one kRun op at their place in the writer's batch.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "resp/numbers.h"
#include "server/command.h"
#include "server/geo.h"
#include "server/notify.h"
#include "server/state.h"
#include "server/zset.h"
#include "store/format.h"

namespace keg::server {

using store::OpResult;

namespace {

constexpr uint8_t kZset = store::format::kTypeZset;
constexpr std::string_view kNotFloat = "value is not a valid float";
constexpr std::string_view kNoMember = "could not decode requested zset member";

// The forms of a search (Redis's georadiusGeneric flags).
enum SearchFlag : uint32_t {
  kByCoords = 1,      // GEORADIUS key lon lat radius unit
  kByMember = 2,      // GEORADIUSBYMEMBER key member radius unit
  kNoStore = 4,       // the _RO forms: no STORE / STOREDIST
  kSearch = 8,        // GEOSEARCH key FROMMEMBER | FROMLONLAT BYRADIUS | BYBOX
  kSearchStore = 16,  // GEOSEARCHSTORE dst src ...
};

struct Point {
  std::string member;
  double lon = 0;
  double lat = 0;
  double dist = 0;  // metres until Search cuts the results, then in the query's unit
  double score = 0;
};

// A search: its options, then its points (sorted and cut to COUNT), or the error.
struct Search {
  std::string error;
  bool missing = false;  // the source key does not exist
  bool has_store = false;
  std::string store;
  bool storedist = false;
  bool withdist = false;
  bool withhash = false;
  bool withcoord = false;
  geo::Shape shape;
  std::vector<Point> points;
};

// Redis's "invalid longitude,latitude pair %f,%f".
std::string InvalidPair(double lon, double lat) {
  char buf[1024];  // %f of the largest double is 316 characters
  const int n = std::snprintf(buf, sizeof(buf), "invalid longitude,latitude pair %f,%f", lon, lat);
  return std::string(buf, n > 0 ? std::min(static_cast<size_t>(n), sizeof(buf) - 1) : 0);
}

// Redis's extractLongLatOrReply.
bool ParseLonLat(std::string_view lon, std::string_view lat, double* x, double* y, std::string* error) {
  if (!ParseScore(lon, x) || !ParseScore(lat, y)) {
    *error = kNotFloat;
    return false;
  }
  if (*x < geo::kLonMin || *x > geo::kLonMax || *y < geo::kLatMin || *y > geo::kLatMax) {
    *error = InvalidPair(*x, *y);
    return false;
  }
  return true;
}

// Redis's extractUnitOrReply: metres per unit.
bool ParseUnit(std::string_view unit, double* to_meters, std::string* error) {
  if (EqualsIgnoreCase(unit, "m")) {
    *to_meters = 1;
  } else if (EqualsIgnoreCase(unit, "km")) {
    *to_meters = 1000;
  } else if (EqualsIgnoreCase(unit, "ft")) {
    *to_meters = 0.3048;
  } else if (EqualsIgnoreCase(unit, "mi")) {
    *to_meters = 1609.34;
  } else {
    *error = "unsupported unit provided. please use M, KM, FT, MI";
    return false;
  }
  return true;
}

// radius unit (Redis's extractDistanceOrReply).
bool ParseRadius(std::string_view radius, std::string_view unit, geo::Shape* shape, std::string* error) {
  double r = 0;
  if (!ParseScore(radius, &r)) {
    *error = "need numeric radius";
    return false;
  }
  if (r < 0) {
    *error = "radius cannot be negative";
    return false;
  }
  shape->radius = r;
  return ParseUnit(unit, &shape->to_meters, error);
}

// width height unit (Redis's extractBoxOrReply).
bool ParseBox(std::string_view width, std::string_view height, std::string_view unit, geo::Shape* shape,
              std::string* error) {
  double w = 0;
  double h = 0;
  if (!ParseScore(width, &w)) {
    *error = "need numeric width";
    return false;
  }
  if (!ParseScore(height, &h)) {
    *error = "need numeric height";
    return false;
  }
  if (h < 0 || w < 0) {
    *error = "height or width cannot be negative";
    return false;
  }
  shape->width = w;
  shape->height = h;
  return ParseUnit(unit, &shape->to_meters, error);
}

// The position of `member` in `z` (Redis's longLatFromMember).
bool MemberPosition(const ZsetSeq& z, std::string_view member, geo::Shape* shape) {
  double score = 0;
  return z.Score(member, &score) && geo::DecodeScore(score, &shape->lon, &shape->lat);
}

// The points of `z` inside the shape: the nine cells' score ranges in Redis's order, a cell equal
// to the one read before it skipped (huge radii make neighbours coincide), stopping at `limit`
// points (ANY's COUNT; 0: all).
void Collect(const ZsetSeq& z, const geo::Shape& shape, size_t limit, std::vector<Point>* out) {
  const std::array<geo::Cell, 9> cells = geo::CellsFor(shape);
  size_t last = 0;  // the cell read last; the centre (0) is never compared, as Redis's
  for (size_t i = 0; i < cells.size(); ++i) {
    if (cells[i].none()) continue;
    if (last != 0 && cells[i].bits == cells[last].bits && cells[i].step == cells[last].step) continue;
    if (limit != 0 && out->size() >= limit) break;
    uint64_t min = 0;
    uint64_t max = 0;
    geo::ScoresOf(cells[i], &min, &max);
    zset::Before lo;
    lo.kind = zset::Before::kScoreBelow;
    lo.score = static_cast<double>(min);
    zset::Before hi = lo;
    hi.score = static_cast<double>(max);
    const uint64_t from = z.Rank(lo);
    const uint64_t to = z.Rank(hi);
    if (from < to) {
      z.Range(from, to, [&](const zset::Item& it) {
        Point p;
        if (geo::WithinShape(shape, it.score, &p.lon, &p.lat, &p.dist)) {
          p.member.assign(it.member);
          p.score = it.score;
          out->push_back(std::move(p));
        }
        return limit == 0 || out->size() < limit;
      });
    }
    last = i;
  }
}

// Parses a search's arguments as Redis's georadiusGeneric does (its checks in its order; the
// member positions read from `z`, null when the source key is absent) and runs it.
void RunSearch(std::span<const std::string_view> args, uint32_t flags, const ZsetSeq* z, Search* s) {
  *s = Search{};
  s->missing = z == nullptr;
  size_t base = 0;
  geo::Shape& shape = s->shape;
  if ((flags & kByCoords) != 0) {
    base = 6;
    shape.type = geo::Shape::kCircle;
    if (!ParseLonLat(args[2], args[3], &shape.lon, &shape.lat, &s->error)) return;
    if (!ParseRadius(args[4], args[5], &shape, &s->error)) return;
  } else if ((flags & kByMember) != 0 && z == nullptr) {
    base = 5;  // no source: its arguments are not read, the options are
  } else if ((flags & kByMember) != 0) {
    base = 5;
    shape.type = geo::Shape::kCircle;
    if (!MemberPosition(*z, args[2], &shape)) {
      s->error = kNoMember;
      return;
    }
    if (!ParseRadius(args[3], args[4], &shape, &s->error)) return;
  } else {
    base = 2;
    if ((flags & kSearchStore) != 0) {
      base = 3;
      s->has_store = true;
      s->store = args[1];
    }
  }
  bool any = false;
  bool frommember = false;
  bool fromloc = false;
  bool byradius = false;
  bool bybox = false;
  enum { kUnsorted, kAsc, kDesc } sort = kUnsorted;
  int64_t count = 0;
  const size_t n = args.size();
  for (size_t i = base; i < n; ++i) {
    const std::string_view arg = args[i];
    const size_t remaining = n - i - 1;  // arguments after this one
    if (EqualsIgnoreCase(arg, "withdist")) {
      s->withdist = true;
    } else if (EqualsIgnoreCase(arg, "withhash")) {
      s->withhash = true;
    } else if (EqualsIgnoreCase(arg, "withcoord")) {
      s->withcoord = true;
    } else if (EqualsIgnoreCase(arg, "any")) {
      any = true;
    } else if (EqualsIgnoreCase(arg, "asc")) {
      sort = kAsc;
    } else if (EqualsIgnoreCase(arg, "desc")) {
      sort = kDesc;
    } else if (EqualsIgnoreCase(arg, "count") && remaining >= 1) {
      if (!resp::ParseInt64(args[i + 1], &count)) {
        s->error = err::kNotInteger;
        return;
      }
      if (count <= 0) {
        s->error = "COUNT must be > 0";
        return;
      }
      ++i;
    } else if ((EqualsIgnoreCase(arg, "store") || EqualsIgnoreCase(arg, "storedist")) && remaining >= 1 &&
               (flags & (kNoStore | kSearch)) == 0) {
      s->has_store = true;
      s->store = args[i + 1];
      s->storedist = EqualsIgnoreCase(arg, "storedist");
      ++i;
    } else if (EqualsIgnoreCase(arg, "storedist") && (flags & kSearchStore) != 0) {
      s->storedist = true;
    } else if (EqualsIgnoreCase(arg, "frommember") && remaining >= 1 && (flags & kSearch) != 0 && !fromloc) {
      if (z != nullptr && !MemberPosition(*z, args[i + 1], &shape)) {
        s->error = kNoMember;
        return;
      }
      frommember = true;
      ++i;
    } else if (EqualsIgnoreCase(arg, "fromlonlat") && remaining >= 2 && (flags & kSearch) != 0 && !frommember) {
      if (!ParseLonLat(args[i + 1], args[i + 2], &shape.lon, &shape.lat, &s->error)) return;
      fromloc = true;
      i += 2;
    } else if (EqualsIgnoreCase(arg, "byradius") && remaining >= 2 && (flags & kSearch) != 0 && !bybox) {
      if (!ParseRadius(args[i + 1], args[i + 2], &shape, &s->error)) return;
      shape.type = geo::Shape::kCircle;
      byradius = true;
      i += 2;
    } else if (EqualsIgnoreCase(arg, "bybox") && remaining >= 3 && (flags & kSearch) != 0 && !byradius) {
      if (!ParseBox(args[i + 1], args[i + 2], args[i + 3], &shape, &s->error)) return;
      shape.type = geo::Shape::kBox;
      bybox = true;
      i += 3;
    } else {
      s->error = err::kSyntax;
      return;
    }
  }
  if (s->has_store && (s->withdist || s->withhash || s->withcoord)) {
    s->error = std::string((flags & kSearchStore) != 0 ? "GEOSEARCHSTORE" : "STORE option in GEORADIUS") +
               " is not compatible with WITHDIST, WITHHASH and WITHCOORD options";
    return;
  }
  if ((flags & kSearch) != 0 && !(frommember || fromloc)) {
    s->error = "exactly one of FROMMEMBER or FROMLONLAT can be specified for " + std::string(args[0]);
    return;
  }
  if ((flags & kSearch) != 0 && !(byradius || bybox)) {
    s->error = "exactly one of BYRADIUS and BYBOX can be specified for " + std::string(args[0]);
    return;
  }
  if (any && count == 0) {
    s->error = "the ANY argument requires COUNT argument";
    return;
  }
  if (z == nullptr) return;
  // COUNT keeps the nearest: it sorts, unless ANY asked for the first found.
  if (count != 0 && sort == kUnsorted && !any) sort = kAsc;
  Collect(*z, shape, any ? static_cast<size_t>(count) : 0, &s->points);
  if (sort == kAsc) {
    std::stable_sort(s->points.begin(), s->points.end(), [](const Point& a, const Point& b) { return a.dist < b.dist; });
  } else if (sort == kDesc) {
    std::stable_sort(s->points.begin(), s->points.end(), [](const Point& a, const Point& b) { return a.dist > b.dist; });
  }
  if (count != 0 && s->points.size() > static_cast<uint64_t>(count)) s->points.resize(static_cast<size_t>(count));
  for (Point& p : s->points) p.dist /= shape.to_meters;
}

// A distance as Redis's addReplyDoubleDistance: four decimals, rounded to nearest (llrint).
std::string Distance4(double d) {
  const long long v = std::llrint(d * 10000.0);
  const unsigned long long u = v < 0 ? 0ULL - static_cast<unsigned long long>(v) : static_cast<unsigned long long>(v);
  char buf[48];
  const int n = std::snprintf(buf, sizeof(buf), "%s%llu.%04llu", v < 0 ? "-" : "", u / 10000, u % 10000);
  return std::string(buf, static_cast<size_t>(std::max(n, 0)));
}

// A coordinate as Redis's addReplyHumanLongDouble: "%.17Lf" without trailing zeros (a bulk
// string in RESP2, a double in RESP3).
void Coordinate(resp::ReplyBuffer& out, double v) {
  char buf[128];
  int n = std::snprintf(buf, sizeof(buf), "%.17Lf", static_cast<long double>(v));
  if (n <= 0 || n >= static_cast<int>(sizeof(buf))) n = 0;
  std::string_view text(buf, static_cast<size_t>(n));
  if (text.find('.') != std::string_view::npos) {
    while (!text.empty() && text.back() == '0') text.remove_suffix(1);
    if (!text.empty() && text.back() == '.') text.remove_suffix(1);
  }
  if (text == "-0") text = "0";
  if (out.protocol() == resp::Protocol::kResp3) {
    std::string line = ",";
    line += text;
    line += "\r\n";
    return out.Raw(line);
  }
  out.Bulk(text);
}

void ReplyPoints(resp::ReplyBuffer& out, const Search& s) {
  const size_t options = (s.withdist ? 1U : 0U) + (s.withhash ? 1U : 0U) + (s.withcoord ? 1U : 0U);
  out.ArrayHeader(s.points.size());
  for (const Point& p : s.points) {
    if (options != 0) out.ArrayHeader(options + 1);
    out.Bulk(p.member);
    if (s.withdist) out.Bulk(Distance4(p.dist));
    if (s.withhash) out.Integer(static_cast<int64_t>(p.score));
    if (s.withcoord) {
      out.ArrayHeader(2);
      Coordinate(out, p.lon);
      Coordinate(out, p.lat);
    }
  }
}

// ---- GEOADD -------------------------------------------------------------------------------------

// GEOADD key [NX|XX] [CH] lon lat member [lon lat member ...]: a ZADD of the members' geohashes,
// propagated as that ZADD (as Redis's).
void Geoadd(Ctx& c) {
  size_t at = 2;
  uint32_t flags = 0;
  for (; at < c.argc(); ++at) {
    const std::string_view o = c.arg(at);
    if (EqualsIgnoreCase(o, "nx")) {
      flags |= kZaddNx;
    } else if (EqualsIgnoreCase(o, "xx")) {
      flags |= kZaddXx;
    } else if (EqualsIgnoreCase(o, "ch")) {
      flags |= kZaddCh;
    } else {
      break;
    }
  }
  const size_t rest = c.argc() - at;
  if (rest == 0 || rest % 3 != 0 || ((flags & kZaddNx) != 0 && (flags & kZaddXx) != 0)) {
    return c.Fail(std::string(err::kSyntax));
  }
  std::vector<std::pair<std::string, double>> pairs;
  std::vector<std::string> scores;  // the ZADD's score arguments
  pairs.reserve(rest / 3);
  scores.reserve(rest / 3);
  for (size_t j = at; j < c.argc(); j += 3) {
    double lon = 0;
    double lat = 0;
    std::string error;
    if (!ParseLonLat(c.arg(j), c.arg(j + 1), &lon, &lat, &error)) return c.Fail(error);
    geo::Cell cell;
    geo::Encode(lon, lat, &cell);
    const uint64_t bits = geo::Align52(cell);
    pairs.emplace_back(std::string(c.arg(j + 2)), static_cast<double>(bits));
    scores.push_back(std::to_string(bits));
  }
  std::vector<std::string_view> zadd;
  if (c.propagating()) {
    zadd.reserve(at + 2 * scores.size());
    zadd.push_back("ZADD");
    for (size_t i = 1; i < at; ++i) zadd.push_back(c.arg(i));
    for (size_t i = 0; i < scores.size(); ++i) {
      zadd.push_back(scores[i]);
      zadd.push_back(c.arg(at + 3 * i + 2));
    }
  }
  ZaddPairs(c, flags, std::move(pairs), zadd);
}

// ---- GEOPOS / GEOHASH / GEODIST -----------------------------------------------------------------

void Geopos(Ctx& c) {
  std::vector<std::optional<double>> scores;
  if (!ReadScores(c, 2, c.argc() - 2, &scores)) return;
  c.out().ArrayHeader(scores.size());
  for (const auto& s : scores) {
    double lon = 0;
    double lat = 0;
    if (!s || !geo::DecodeScore(*s, &lon, &lat)) {
      c.out().NullArray();
      continue;
    }
    c.out().ArrayHeader(2);
    Coordinate(c.out(), lon);
    Coordinate(c.out(), lat);
  }
}

void Geohash(Ctx& c) {
  std::vector<std::optional<double>> scores;
  if (!ReadScores(c, 2, c.argc() - 2, &scores)) return;
  c.out().ArrayHeader(scores.size());
  std::string hash;
  for (const auto& s : scores) {
    if (!s || !geo::HashString(*s, &hash)) {
      c.out().Null();
      continue;
    }
    c.out().Bulk(hash);
  }
}

// GEODIST key member1 member2 [unit]
void Geodist(Ctx& c) {
  double to_meters = 1;
  if (c.argc() == 5) {
    std::string error;
    if (!ParseUnit(c.arg(4), &to_meters, &error)) return c.out().Error(error);
  } else if (c.argc() > 5) {
    return c.out().Error(err::kSyntax);
  }
  std::vector<std::optional<double>> scores;
  if (!ReadScores(c, 2, 2, &scores)) return;
  const std::optional<double>& a = scores[0];
  const std::optional<double>& b = scores[1];
  double lon1 = 0, lat1 = 0, lon2 = 0, lat2 = 0;
  if (!a || !b || !geo::DecodeScore(*a, &lon1, &lat1) || !geo::DecodeScore(*b, &lon2, &lat2)) return c.out().Null();
  c.out().Bulk(Distance4(geo::Distance(lon1, lat1, lon2, lat2) / to_meters));
}

// ---- Searches -----------------------------------------------------------------------------------

// GEOSEARCH, GEORADIUS_RO, GEORADIUSBYMEMBER_RO: reads on the I/O thread.
void SearchRead(Ctx& c, uint32_t flags) {
  Search s;
  bool missing = false;
  if (!ReadZset(c, c.arg(1), [&] { missing = true; },
                [&](const ZsetSeq& z) { RunSearch(c.args(), flags, &z, &s); })) {
    if (!missing) return;  // the error is written
    RunSearch(c.args(), flags, nullptr, &s);
  }
  if (!s.error.empty()) return c.out().Error(s.error);
  ReplyPoints(c.out(), s);
}

// GEORADIUS, GEORADIUSBYMEMBER (with or without STORE) and GEOSEARCHSTORE: one kRun op at the
// command's place reads the source and writes the destination (a sorted set of the points, scored
// by geohash or with STOREDIST by distance; none deletes it).
void SearchInOrder(Ctx& c, uint32_t flags) {
  struct Out {
    Search search;
    std::string error;
    bool existed = false;  // the destination, before
  };
  auto res = std::make_shared<Out>();
  auto args = std::make_shared<std::vector<std::string>>(c.args().begin(), c.args().end());
  const size_t src_at = (flags & kSearchStore) != 0 ? 2 : 1;
  // The destination (WATCH counts it written): the arguments parsed as the op will.
  Search probe;
  RunSearch(c.args(), flags, nullptr, &probe);
  const std::string dst = probe.error.empty() && probe.has_store ? probe.store : std::string();
  ServerState* server = &c.server();
  c.batch().Run([res, args, flags, server, src_at, db = c.db()](store::Txn& txn) {
    const std::vector<std::string_view> a(args->begin(), args->end());
    ZsetEdit z(txn, *server, db, a[src_at]);
    if (!z.Open()) {
      res->error = z.error();
      return;
    }
    Search& s = res->search;
    if (z.exists()) {
      z.WithSeq([&](const ZsetSeq& seq) { RunSearch(a, flags, &seq, &s); });
    } else {
      RunSearch(a, flags, nullptr, &s);
    }
    if (!z.error().empty()) {
      res->error = z.error();
      return;
    }
    if (!s.error.empty() || !s.has_store) return;
    store::ValueView there;
    res->existed = txn.Get(db, s.store, &there).ok();
    if (s.points.empty() && !res->existed) return;
    std::vector<std::pair<std::string, double>> items;
    items.reserve(s.points.size());
    for (Point& p : s.points) items.emplace_back(std::move(p.member), s.storedist ? p.dist : p.score);
    WriteZset(txn, *server, db, s.store, std::move(items), false);
    server->watches.TouchKey(db, s.store);
  }, dst);
  const std::string event = (flags & kSearch) != 0 ? "geosearchstore" : "georadiusstore";
  c.Then([res, server, event, db = c.db(), src = std::string(c.arg(src_at)),
          notify = (server->notify_flags.load(std::memory_order_relaxed) &
                    (kNotifyZset | kNotifyGeneric | kNotifyNew | kNotifyKeyMiss)) != 0](std::span<OpResult> r,
                                                                                           resp::ReplyBuffer& out) {
    if (!res->error.empty()) return out.Error(res->error);
    const Search& s = res->search;
    if (notify && s.missing && s.error.empty()) NotifyKeyspaceEvent(*server, db, kNotifyKeyMiss, "keymiss", src);
    if (!s.error.empty()) return out.Error(s.error);
    if (!s.has_store) return ReplyPoints(out, s);
    if (notify && !r.empty() && r[0].applied) {
      if (!s.points.empty()) {
        if (!res->existed) NotifyKeyspaceEvent(*server, db, kNotifyNew, "new", s.store);
        NotifyKeyspaceEvent(*server, db, kNotifyZset, event, s.store);
      } else {
        NotifyKeyspaceEvent(*server, db, kNotifyGeneric, "del", s.store);
      }
    }
    out.Integer(static_cast<int64_t>(s.points.size()));
  });
}

void Georadius(Ctx& c) { SearchInOrder(c, kByCoords); }
void Georadiusbymember(Ctx& c) { SearchInOrder(c, kByMember); }
void GeoradiusRo(Ctx& c) { SearchRead(c, kByCoords | kNoStore); }
void GeoradiusbymemberRo(Ctx& c) { SearchRead(c, kByMember | kNoStore); }
void Geosearch(Ctx& c) { SearchRead(c, kSearch); }
void Geosearchstore(Ctx& c) { SearchInOrder(c, kSearch | kSearchStore); }

}  // namespace

void RegisterGeoCommands(std::vector<Command>* t) {
  const size_t first = t->size();
  constexpr uint32_t kW = kWrite;
  constexpr uint32_t kR = kReadOnly;
  t->push_back({"geoadd", -5, kW, 1, 1, 1, Geoadd, "@write @geo @slow"});
  t->push_back({"geopos", -2, kR, 1, 1, 1, Geopos, "@read @geo @slow"});
  t->push_back({"geohash", -2, kR, 1, 1, 1, Geohash, "@read @geo @slow"});
  t->push_back({"geodist", -4, kR, 1, 1, 1, Geodist, "@read @geo @slow"});
  t->push_back({"georadius", -6, kW | kWakes | kMovableKeys, 1, 1, 1, Georadius, "@write @geo @slow"});
  t->push_back({"georadiusbymember", -5, kW | kWakes | kMovableKeys, 1, 1, 1, Georadiusbymember, "@write @geo @slow"});
  t->push_back({"georadius_ro", -6, kR, 1, 1, 1, GeoradiusRo, "@read @geo @slow"});
  t->push_back({"georadiusbymember_ro", -5, kR, 1, 1, 1, GeoradiusbymemberRo, "@read @geo @slow"});
  t->push_back({"geosearch", -7, kR, 1, 1, 1, Geosearch, "@read @geo @slow"});
  t->push_back({"geosearchstore", -8, kW | kWakes, 1, 2, 1, Geosearchstore, "@write @geo @slow"});
  for (size_t i = first; i < t->size(); ++i) {
    Command& cmd = (*t)[i];
    cmd.value_type = kZset;
    // The members named from args[2] on (GEODIST's unit read as one: a lookup of no member).
    if (cmd.name == "geopos" || cmd.name == "geohash" || cmd.name == "geodist") cmd.first_member = 2;
  }
}

}  // namespace keg::server
