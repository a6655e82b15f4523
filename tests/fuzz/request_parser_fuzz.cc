// libFuzzer target for the request parser. Beyond "no crash, no leak, no sanitizer report" it
// checks two oracles on every input:
//  1. Parsing the input whole and parsing it in random pieces (a connection's reads) give the same
//     commands and the same error — except a line past the inline limits, which (as in Redis) is
//     refused only if its end has not arrived yet.
//  2. Parsing in the same pieces with the connection's look-ahead (RequestParser::ParseAhead
//     before each run of commands, 1-8 of them) gives exactly what parsing without it gave.
//  3. Each parsed command, encoded back as a multibulk request with ReplyBuffer (arrays of bulks,
//     large bulks referenced externally), parses back to the same arguments.
// The first input byte picks the limits (Redis's defaults or tiny ones, authenticated or not) and
// seeds the piece sizes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "resp/reply_buffer.h"
#include "support/parse_driver.h"

namespace {

using keg::resp::ParserLimits;
using keg::resp::ReplyBuffer;
namespace rt = keg::resp::testing;

std::string EncodeWithReplyBuffer(const std::vector<std::string>& args) {
  ReplyBuffer out(8);  // values of 8 bytes and more are referenced, not copied
  auto keep = std::make_shared<int>(0);
  out.ArrayHeader(args.size());
  for (const std::string& a : args) out.Bulk(a, keep);
  std::vector<iovec> iov(out.size() + 1);
  const size_t n = out.Gather(iov);
  std::string bytes;
  for (size_t i = 0; i < n; ++i)
    bytes.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
  out.Consume(bytes.size());
  if (!out.empty() || keep.use_count() != 1) abort();  // every byte and every keepalive released
  return bytes;
}

// As in Redis, a line longer than the inline limit is refused only while its newline has not
// arrived: fed in pieces it can fail where the whole input parses. Then the pieces must have given
// a prefix of the whole input's commands, and a "too big" error.
bool ChunkDependentLimit(const rt::ParseOutcome& whole, const rt::ParseOutcome& split) {
  const bool too_big = split.error == "Protocol error: too big inline request" ||
                       split.error == "Protocol error: too big mbulk count string" ||
                       split.error == "Protocol error: too big bulk count string";
  if (!too_big || split.commands.size() > whole.commands.size()) return false;
  for (size_t i = 0; i < split.commands.size(); ++i) {
    if (split.commands[i] != whole.commands[i]) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0];
  const std::string input(reinterpret_cast<const char*>(data + 1), size - 1);

  ParserLimits limits;
  if (mode & 1) {  // tiny limits reach every limit branch with short inputs
    limits.max_bulk_len = 40;
    limits.max_multibulk_len = 6;
    limits.max_inline_len = 48;
    limits.unauth_max_multibulk_len = 3;
    limits.unauth_max_bulk_len = 8;
  }
  const bool auth_required = (mode & 2) != 0;

  const rt::ParseOutcome whole = rt::ParseChunks({input}, limits, auth_required);

  std::vector<size_t> pieces;
  uint32_t state = 0x9e3779b9u ^ mode;
  for (size_t total = 0; total < input.size();) {
    state = state * 1664525u + 1013904223u;
    const size_t piece = 1 + (state >> 24) % ((mode & 4) ? 3 : 64);
    pieces.push_back(piece);
    total += piece;
  }
  const rt::ParseOutcome split = rt::ParsePieces(input, pieces, limits, auth_required);
  if (!(whole == split) && !ChunkDependentLimit(whole, split)) abort();
  const rt::ParseOutcome ahead = rt::ParsePieces(input, pieces, limits, auth_required, 1 + (mode >> 5));
  if (!(ahead == split)) abort();

  for (const std::vector<std::string>& args : whole.commands) {
    const std::string request = EncodeWithReplyBuffer(args);
    if (request != rt::EncodeRequest(args)) abort();
    const rt::ParseOutcome again = rt::ParseChunks({request});
    if (!again.error.empty() || again.commands.size() != 1 || again.commands[0] != args) abort();
  }
  return 0;
}
