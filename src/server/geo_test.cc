// The geohash arithmetic against figures redis-server 7.0.15 gives for the same input (GEOADD's
// score, GEOPOS, GEODIST, GEOHASH of Palermo and Catania, the example of Redis's documentation).
#include "server/geo.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

namespace keg::server::geo {
namespace {

std::string Human(double v) {  // GEOPOS's "%.17Lf", trailing zeros dropped
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17Lf", static_cast<long double>(v));
  std::string s(buf);
  while (s.back() == '0') s.pop_back();
  return s;
}

double Score(double lon, double lat) {
  Cell c;
  EXPECT_TRUE(Encode(lon, lat, &c));
  return static_cast<double>(Align52(c));
}

TEST(Geo, ScoresPositionsDistancesAndHashesAreRedis) {
  const double palermo = Score(13.361389, 38.115556);
  const double catania = Score(15.087269, 37.502669);
  EXPECT_EQ(palermo, 3479099956230698.0);
  EXPECT_EQ(catania, 3479447370796909.0);
  double lon = 0;
  double lat = 0;
  ASSERT_TRUE(DecodeScore(palermo, &lon, &lat));
  EXPECT_EQ(Human(lon), "13.36138933897018433");
  EXPECT_EQ(Human(lat), "38.11555639549629859");
  double lon2 = 0;
  double lat2 = 0;
  ASSERT_TRUE(DecodeScore(catania, &lon2, &lat2));
  EXPECT_NEAR(Distance(lon, lat, lon2, lat2), 166274.1516, 0.00005);
  std::string hash;
  ASSERT_TRUE(HashString(palermo, &hash));
  EXPECT_EQ(hash, "sqc8b49rny0");
  ASSERT_TRUE(HashString(catania, &hash));
  EXPECT_EQ(hash, "sqdtr74hyu0");
}

TEST(Geo, EncodeRefusesWhatMercatorCannotHold) {
  Cell c;
  EXPECT_FALSE(Encode(180.0001, 0, &c));
  EXPECT_FALSE(Encode(0, 85.06, &c));
  EXPECT_FALSE(Encode(0, -85.06, &c));
  EXPECT_TRUE(Encode(-180, -85.05112878, &c));
  EXPECT_EQ(Align52(c), 0U);
  EXPECT_TRUE(Encode(180, 85.05112878, &c));  // one past the last cell, as Redis's
  EXPECT_EQ(c.bits, (uint64_t{1} << 52) | (uint64_t{1} << 53));
}

TEST(Geo, SearchCellsHoldTheCentreAndNeighboursWrap) {
  Shape s;
  s.lon = 13.361389;
  s.lat = 38.115556;
  s.radius = 200;
  s.to_meters = 1000;
  const std::array<Cell, 9> cells = CellsFor(s);
  uint64_t min = 0;
  uint64_t max = 0;
  ScoresOf(cells[0], &min, &max);
  const double palermo = Score(s.lon, s.lat);
  EXPECT_LE(static_cast<double>(min), palermo);
  EXPECT_LT(palermo, static_cast<double>(max));
  double lon = 0;
  double lat = 0;
  double dist = 0;
  EXPECT_TRUE(WithinShape(s, Score(15.087269, 37.502669), &lon, &lat, &dist));  // Catania, 166 km
  s.radius = 100;
  EXPECT_FALSE(WithinShape(s, Score(15.087269, 37.502669), &lon, &lat, &dist));
  // A centre on the antimeridian: its west neighbour wraps to the other side of the map.
  Shape edge;
  edge.lon = -179.9;
  edge.lat = 0;
  edge.radius = 50;
  edge.to_meters = 1000;
  const std::array<Cell, 9> wrap = CellsFor(edge);
  Area west;
  ASSERT_TRUE(Decode(Range{-180, 180}, Range{kLatMin, kLatMax}, wrap[4], &west));
  EXPECT_EQ(west.lon.max, 180);
}

}  // namespace
}  // namespace keg::server::geo
