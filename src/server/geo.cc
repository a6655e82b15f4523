#include "server/geo.h"

#include <cmath>

namespace keg::server::geo {

namespace {

constexpr double kDegToRad = M_PI / 180.0;
constexpr Range kLonRange{kLonMin, kLonMax};
constexpr Range kLatRange{kLatMin, kLatMax};
constexpr double kMercatorMax = 20037726.37;

double DegToRad(double deg) { return deg * kDegToRad; }
double RadToDeg(double rad) { return rad / kDegToRad; }

// The 32 bits of v in the even bit positions of the result.
uint64_t Spread(uint32_t v) {
  uint64_t x = v;
  x = (x | (x << 16)) & 0x0000FFFF0000FFFFULL;
  x = (x | (x << 8)) & 0x00FF00FF00FF00FFULL;
  x = (x | (x << 4)) & 0x0F0F0F0F0F0F0F0FULL;
  x = (x | (x << 2)) & 0x3333333333333333ULL;
  x = (x | (x << 1)) & 0x5555555555555555ULL;
  return x;
}

// The even bit positions of x, packed (Spread's inverse).
uint32_t Pack(uint64_t x) {
  x &= 0x5555555555555555ULL;
  x = (x | (x >> 1)) & 0x3333333333333333ULL;
  x = (x | (x >> 2)) & 0x0F0F0F0F0F0F0F0FULL;
  x = (x | (x >> 4)) & 0x00FF00FF00FF00FFULL;
  x = (x | (x >> 8)) & 0x0000FFFF0000FFFFULL;
  x = (x | (x >> 16)) & 0x00000000FFFFFFFFULL;
  return static_cast<uint32_t>(x);
}

// Latitude in the even bits, longitude in the odd ones.
uint64_t Interleave(uint32_t lat, uint32_t lon) { return Spread(lat) | (Spread(lon) << 1); }

// The cell `dlon` and `dlat` cells away (each -1, 0 or 1), wrapping around at the edges. A
// coordinate that does not move keeps its bits as they are, even bits past the cell's precision
// (a centre on the 180th meridian or a pole encodes one past the last cell), as Redis's.
Cell Move(Cell c, int dlon, int dlat) {
  constexpr uint64_t kOdd = 0xAAAAAAAAAAAAAAAAULL;
  const uint64_t mask = c.step >= 32 ? ~0ULL : (1ULL << c.step) - 1;
  uint64_t lon = c.bits & kOdd;
  uint64_t lat = c.bits & ~kOdd;
  if (dlon != 0) {
    lon = Spread(static_cast<uint32_t>((Pack(c.bits >> 1) + static_cast<uint64_t>(static_cast<int64_t>(dlon))) & mask))
          << 1;
  }
  if (dlat != 0) {
    lat = Spread(static_cast<uint32_t>((Pack(c.bits) + static_cast<uint64_t>(static_cast<int64_t>(dlat))) & mask));
  }
  c.bits = lon | lat;
  return c;
}

// The precision whose cells are about as large as the range (Redis's estimate: halve until under
// the Mercator width, two steps coarser, coarser again near the poles).
uint8_t StepsFor(double range_m, double lat) {
  if (range_m == 0) return 26;
  int step = 1;
  while (range_m < kMercatorMax) {
    range_m *= 2;
    step++;
  }
  step -= 2;
  if (lat > 66 || lat < -66) {
    step--;
    if (lat > 80 || lat < -80) step--;
  }
  if (step < 1) step = 1;
  if (step > 26) step = 26;
  return static_cast<uint8_t>(step);
}

// The bounding box of the shape: min lon, min lat, max lon, max lat.
std::array<double, 4> BoundingBox(const Shape& s) {
  const double height = s.to_meters * (s.type == Shape::kCircle ? s.radius : s.height / 2);
  const double width = s.to_meters * (s.type == Shape::kCircle ? s.radius : s.width / 2);
  const double lat_delta = RadToDeg(height / kEarthRadiusM);
  const double lon_delta_top = RadToDeg(width / kEarthRadiusM / std::cos(DegToRad(s.lat + lat_delta)));
  const double lon_delta_bottom = RadToDeg(width / kEarthRadiusM / std::cos(DegToRad(s.lat - lat_delta)));
  // The box is widest at the edge nearer the equator.
  const bool southern = s.lat < 0;
  const double lon_delta = southern ? lon_delta_bottom : lon_delta_top;
  return {s.lon - lon_delta, s.lat - lat_delta, s.lon + lon_delta, s.lat + lat_delta};
}

double LatDistance(double lat1, double lat2) { return kEarthRadiusM * std::fabs(DegToRad(lat2) - DegToRad(lat1)); }

// Redis casts a score to uint64_t; an x86-64 build's conversion, for scores no GEOADD wrote
// (negative, too large, NaN), so that GEOPOS of any member gives what redis-server gives.
uint64_t ScoreBits(double score) {
  constexpr double k2p63 = 9223372036854775808.0;
  constexpr uint64_t kIndefinite = 0x8000000000000000ULL;
  auto truncate = [](double v) -> uint64_t {  // cvttsd2si
    if (!(v >= -k2p63 && v < k2p63)) return kIndefinite;
    return static_cast<uint64_t>(static_cast<int64_t>(v));
  };
  if (score < k2p63) return truncate(score);
  return truncate(score - k2p63) ^ kIndefinite;
}

}  // namespace

bool Encode(Range lon_range, Range lat_range, double lon, double lat, uint8_t step, Cell* out) {
  if (step > 32 || step == 0 || (lat_range.min == 0 && lat_range.max == 0) ||
      (lon_range.min == 0 && lon_range.max == 0)) {
    return false;
  }
  if (lon > kLonMax || lon < kLonMin || lat > kLatMax || lat < kLatMin) return false;
  if (lat < lat_range.min || lat > lat_range.max || lon < lon_range.min || lon > lon_range.max) return false;
  double lat_offset = (lat - lat_range.min) / (lat_range.max - lat_range.min);
  double lon_offset = (lon - lon_range.min) / (lon_range.max - lon_range.min);
  lat_offset *= static_cast<double>(1ULL << step);
  lon_offset *= static_cast<double>(1ULL << step);
  out->bits = Interleave(static_cast<uint32_t>(lat_offset), static_cast<uint32_t>(lon_offset));
  out->step = step;
  return true;
}

bool Encode(double lon, double lat, Cell* out) { return Encode(kLonRange, kLatRange, lon, lat, kStepMax, out); }

bool Decode(Range lon_range, Range lat_range, Cell cell, Area* out) {
  if (cell.none()) return false;
  const uint32_t lat = Pack(cell.bits);
  const uint32_t lon = Pack(cell.bits >> 1);
  const double cells = static_cast<double>(1ULL << cell.step);
  const double lat_scale = lat_range.max - lat_range.min;
  const double lon_scale = lon_range.max - lon_range.min;
  out->lat.min = lat_range.min + (static_cast<double>(lat) / cells) * lat_scale;
  out->lat.max = lat_range.min + (static_cast<double>(lat + 1U) / cells) * lat_scale;
  out->lon.min = lon_range.min + (static_cast<double>(lon) / cells) * lon_scale;
  out->lon.max = lon_range.min + (static_cast<double>(lon + 1U) / cells) * lon_scale;
  return true;
}

uint64_t Align52(Cell cell) { return cell.bits << (52 - cell.step * 2); }

bool DecodeScore(double score, double* lon, double* lat) {
  Area a;
  if (!Decode(kLonRange, kLatRange, Cell{ScoreBits(score), kStepMax}, &a)) return false;
  *lon = std::fmin(std::fmax((a.lon.min + a.lon.max) / 2, kLonMin), kLonMax);
  *lat = std::fmin(std::fmax((a.lat.min + a.lat.max) / 2, kLatMin), kLatMax);
  return true;
}

double Distance(double lon1, double lat1, double lon2, double lat2) {
  const double v = std::sin((DegToRad(lon2) - DegToRad(lon1)) / 2);
  if (v == 0.0) return LatDistance(lat1, lat2);  // the same meridian: no trigonometry needed
  const double lat1r = DegToRad(lat1);
  const double lat2r = DegToRad(lat2);
  const double u = std::sin((lat2r - lat1r) / 2);
  const double a = u * u + std::cos(lat1r) * std::cos(lat2r) * v * v;
  return 2.0 * kEarthRadiusM * std::asin(std::sqrt(a));
}

bool HashString(double score, std::string* out) {
  static constexpr char kAlphabet[] = "0123456789bcdefghjkmnpqrstuvwxyz";
  double lon = 0;
  double lat = 0;
  if (!DecodeScore(score, &lon, &lat)) return false;
  Cell c;
  if (!Encode(Range{-180, 180}, Range{-90, 90}, lon, lat, kStepMax, &c)) c = Cell{};
  out->assign(11, '0');
  for (int i = 0; i < 10; ++i) (*out)[static_cast<size_t>(i)] = kAlphabet[(c.bits >> (52 - (i + 1) * 5)) & 0x1f];
  return true;
}

std::array<Cell, 9> CellsFor(const Shape& shape) {
  const std::array<double, 4> b = BoundingBox(shape);
  const double min_lon = b[0], min_lat = b[1], max_lon = b[2], max_lat = b[3];
  double radius_m = shape.type == Shape::kCircle
                        ? shape.radius
                        : std::sqrt((shape.width / 2) * (shape.width / 2) + (shape.height / 2) * (shape.height / 2));
  radius_m *= shape.to_meters;
  uint8_t steps = StepsFor(radius_m, shape.lat);
  Cell centre;
  Encode(kLonRange, kLatRange, shape.lon, shape.lat, steps, &centre);
  Area area;
  Decode(kLonRange, kLatRange, centre, &area);
  // A cell too large for the box's edge: one step coarser, so the neighbours reach past it.
  {
    Area north, south, east, west;
    Decode(kLonRange, kLatRange, Move(centre, 0, 1), &north);
    Decode(kLonRange, kLatRange, Move(centre, 0, -1), &south);
    Decode(kLonRange, kLatRange, Move(centre, 1, 0), &east);
    Decode(kLonRange, kLatRange, Move(centre, -1, 0), &west);
    const bool coarser = north.lat.max < max_lat || south.lat.min > min_lat || east.lon.max < max_lon ||
                         west.lon.min > min_lon;
    if (steps > 1 && coarser) {
      --steps;
      Encode(kLonRange, kLatRange, shape.lon, shape.lat, steps, &centre);
      Decode(kLonRange, kLatRange, centre, &area);
    }
  }
  std::array<Cell, 9> cells = {centre,
                               Move(centre, 0, 1),    // north
                               Move(centre, 0, -1),   // south
                               Move(centre, 1, 0),    // east
                               Move(centre, -1, 0),   // west
                               Move(centre, 1, 1),    // north-east
                               Move(centre, -1, 1),   // north-west
                               Move(centre, 1, -1),   // south-east
                               Move(centre, -1, -1)}; // south-west
  // Neighbours on a side the shape does not reach past the centre's cell hold nothing of it.
  if (steps >= 2) {
    if (area.lat.min < min_lat) cells[2] = cells[8] = cells[7] = Cell{};
    if (area.lat.max > max_lat) cells[1] = cells[5] = cells[6] = Cell{};
    if (area.lon.min < min_lon) cells[4] = cells[8] = cells[6] = Cell{};
    if (area.lon.max > max_lon) cells[3] = cells[7] = cells[5] = Cell{};
  }
  return cells;
}

void ScoresOf(Cell cell, uint64_t* min, uint64_t* max) {
  *min = Align52(cell);
  ++cell.bits;
  *max = Align52(cell);
}

bool WithinShape(const Shape& shape, double score, double* lon, double* lat, double* distance_m) {
  if (!DecodeScore(score, lon, lat)) return false;
  if (shape.type == Shape::kCircle) {
    *distance_m = Distance(shape.lon, shape.lat, *lon, *lat);
    return *distance_m <= shape.radius * shape.to_meters;
  }
  if (LatDistance(*lat, shape.lat) > shape.height * shape.to_meters / 2) return false;
  if (Distance(*lon, *lat, shape.lon, *lat) > shape.width * shape.to_meters / 2) return false;
  *distance_m = Distance(shape.lon, shape.lat, *lon, *lat);
  return true;
}

}  // namespace keg::server::geo
