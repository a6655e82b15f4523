// Test support: feeds bytes to a RequestParser the way a connection does (append to a buffer,
// parse every complete command, keep the unconsumed tail at the front) and records what came out.
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "resp/request_parser.h"

namespace keg::resp::testing {

/// What a connection would see: the commands in order, then a protocol error if one happened.
struct ParseOutcome {
  std::vector<std::vector<std::string>> commands;
  std::string error;  // ErrorMessage() of the error that ended the input, or empty

  bool operator==(const ParseOutcome&) const = default;
};

/// Parses `chunks` as consecutive reads into one buffer.
/// look_ahead > 0: as a connection does, before parsing past what it looked at, has the parser
/// parse up to that many commands ahead (RequestParser::ParseAhead); the buffer moves between
/// chunks without ForgetAhead (the parser must notice).
inline ParseOutcome ParseChunks(const std::vector<std::string_view>& chunks,
                                const ParserLimits& limits = {}, bool auth_required = false,
                                size_t look_ahead = 0) {
  RequestParser parser(limits);
  parser.set_auth_required(auth_required);
  ParseOutcome outcome;
  std::string buffer;
  std::vector<std::string_view> keys(look_ahead);
  for (std::string_view chunk : chunks) {
    buffer.append(chunk);
    size_t pos = 0;
    size_t looked_until = 0;
    for (;;) {
      if (look_ahead > 0 && pos >= looked_until) {
        size_t scanned = 0;
        parser.ParseAhead(std::span<char>(buffer.data() + pos, buffer.size() - pos), keys, &scanned);
        looked_until = pos + std::max<size_t>(scanned, 1);
      }
      const ParseResult r = parser.Parse(std::span<char>(buffer.data() + pos, buffer.size() - pos));
      pos += r.consumed;
      if (r.status == ParseStatus::kCommand) {
        std::vector<std::string> args;
        for (std::string_view a : parser.args()) args.emplace_back(a);
        outcome.commands.push_back(std::move(args));
        continue;
      }
      if (r.status == ParseStatus::kError) {
        outcome.error = parser.ErrorMessage();
        return outcome;
      }
      break;
    }
    buffer.erase(0, pos);
  }
  return outcome;
}

/// Parses `input` delivered in pieces of the given sizes (the last piece takes the rest).
inline ParseOutcome ParsePieces(std::string_view input, const std::vector<size_t>& sizes,
                                const ParserLimits& limits = {}, bool auth_required = false,
                                size_t look_ahead = 0) {
  std::vector<std::string_view> chunks;
  size_t pos = 0;
  for (size_t s : sizes) {
    if (pos >= input.size()) break;
    const size_t n = std::min(s, input.size() - pos);
    chunks.push_back(input.substr(pos, n));
    pos += n;
  }
  if (pos < input.size()) chunks.push_back(input.substr(pos));
  return ParseChunks(chunks, limits, auth_required, look_ahead);
}

/// Encodes `args` as a RESP2 multibulk request.
inline std::string EncodeRequest(const std::vector<std::string>& args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const std::string& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return out;
}

}  // namespace keg::resp::testing
