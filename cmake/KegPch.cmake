# Precompiled headers for the targets with many source files, in clang builds (the sanitizer
# builds of tools/test.sh): the standard library and spdlog are parsed once per target instead of
# once per source file. GCC builds do without: with the standard headers in a precompiled header,
# GCC 12 no longer treats their inlined code as system code and -Werror stops on its -O3 false
# positives (stringop-overflow, array-bounds inside std::string). The sources include what they
# use either way, and KEG_PCH=OFF (or the Release build) shows a missing include.
option(KEG_PCH "Precompile the standard and spdlog headers of the large targets (clang)" ON)

function(keg_precompile_headers target)
  if(NOT KEG_PCH OR NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    return()
  endif()
  target_precompile_headers(${target} PRIVATE
    <algorithm> <array> <atomic> <chrono> <cmath> <condition_variable> <cstddef> <cstdint>
    <cstdlib> <cstring> <deque> <filesystem> <functional> <map> <memory> <mutex> <optional>
    <random> <span> <string> <string_view> <thread> <unordered_map> <utility> <vector>
    <spdlog/spdlog.h> ${ARGN})
endfunction()
