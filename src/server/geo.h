// Geohash arithmetic for the GEO commands (commands_geo.cc), with Redis 7.0's numbers: a point is
// stored as a sorted set member whose score is its 52-bit geohash (26 bits of longitude and 26 of
// latitude, interleaved, longitude in the odd bits), over longitudes -180..180 and latitudes
// -85.05112878..85.05112878 (the Web Mercator limits). A search covers the shape with the cell of
// a chosen precision that holds its centre and that cell's eight neighbours, reads each cell's
// score range, and keeps the points inside the shape. Every formula and its operation order follow
// Redis's, so positions, distances and search results match redis-server's to the last digit.
// Thread: pure functions; any thread.
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace keg::server::geo {

inline constexpr double kLonMin = -180;
inline constexpr double kLonMax = 180;
inline constexpr double kLatMin = -85.05112878;
inline constexpr double kLatMax = 85.05112878;
inline constexpr uint8_t kStepMax = 26;  // bits per coordinate: 52 in all
inline constexpr double kEarthRadiusM = 6372797.560856;

/// A cell: `step` bits per coordinate, interleaved in the low 2 * step bits. All zero: none.
struct Cell {
  uint64_t bits = 0;
  uint8_t step = 0;
  bool none() const { return bits == 0 && step == 0; }
};

struct Range {
  double min = 0;
  double max = 0;
};

/// The cell's coordinates.
struct Area {
  Range lon;
  Range lat;
};

/// The cell of (lon, lat) at `step` over the given ranges; false outside the ranges or the
/// Mercator limits, or for a step outside 1..32.
bool Encode(Range lon_range, Range lat_range, double lon, double lat, uint8_t step, Cell* out);
/// The cell of (lon, lat) at full precision over the Mercator ranges.
bool Encode(double lon, double lat, Cell* out);
/// The cell's area over the given ranges; false for Cell{} (none).
bool Decode(Range lon_range, Range lat_range, Cell cell, Area* out);
/// The cell's bits shifted to 52 bits: the score of a point, the start of a cell's scores.
uint64_t Align52(Cell cell);

/// The position a score stands for (its cell's centre, clamped to the limits). False for a
/// score that is no 52-bit geohash (0 bits at precision 26 still decodes, as Redis's).
bool DecodeScore(double score, double* lon, double* lat);
/// The great-circle distance in metres (haversine on Redis's Earth radius).
double Distance(double lon1, double lat1, double lon2, double lat2);
/// The 11-character standard geohash of a score (re-encoded over latitudes -90..90, as Redis's
/// GEOHASH; its 11th character is always '0'). False when the score does not decode.
bool HashString(double score, std::string* out);

/// What a search covers: a circle (radius) or an axis-aligned box (width x height), both in the
/// unit `to_meters` converts, around (lon, lat).
struct Shape {
  enum Type : uint8_t { kCircle, kBox } type = kCircle;
  double lon = 0;
  double lat = 0;
  double radius = 0;
  double width = 0;
  double height = 0;
  double to_meters = 1;
};

/// The cells to read: the centre's cell, then north, south, east, west, north-east, north-west,
/// south-east and south-west (a neighbour that cannot hold a point of the shape is none).
std::array<Cell, 9> CellsFor(const Shape& shape);
/// The half-open score range [min, max) of the points inside `cell`.
void ScoresOf(Cell cell, uint64_t* min, uint64_t* max);
/// Whether the point a score stands for is inside the shape: then its position and its distance
/// from the shape's centre in metres.
bool WithinShape(const Shape& shape, double score, double* lon, double* lat, double* distance_m);

}  // namespace keg::server::geo
