// Redis's glob matching (util.c stringmatchlen): *, ?, [abc], [^a-z], \x. Used by KEYS, SCAN MATCH
// and CONFIG GET.
#pragma once

#include <string_view>

namespace keg::server {

bool GlobMatch(std::string_view pattern, std::string_view text, bool nocase = false);

}  // namespace keg::server
