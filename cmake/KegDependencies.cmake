# Finds keg's Debian-packaged dependencies and says, for each one that is missing, which package
# provides it. `tools/install-deps.sh --test` installs all of them.

set(_keg_missing "")
macro(keg_missing what package)
  list(APPEND _keg_missing "  ${what}: apt-get install ${package}")
endmacro()

# Asio (standalone, header only) and spdlog: the server and its network layer.
find_path(ASIO_INCLUDE_DIR asio.hpp)
if(ASIO_INCLUDE_DIR)
  add_library(keg_asio INTERFACE)
  target_include_directories(keg_asio SYSTEM INTERFACE ${ASIO_INCLUDE_DIR})
  target_compile_definitions(keg_asio INTERFACE ASIO_STANDALONE ASIO_NO_DEPRECATED)
else()
  keg_missing("standalone Asio (asio.hpp)" libasio-dev)
endif()

find_package(spdlog QUIET)
if(NOT spdlog_FOUND)
  keg_missing("spdlog" libspdlog-dev)
endif()

find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(XXHASH QUIET IMPORTED_TARGET libxxhash)
endif()
if(NOT XXHASH_FOUND)
  keg_missing("xxHash (keydir hashing)" "pkg-config libxxhash-dev")
endif()
if(PkgConfig_FOUND)
  pkg_check_modules(LZF QUIET IMPORTED_TARGET liblzf)
endif()
if(NOT LZF_FOUND)
  keg_missing("LZF (DUMP / RESTORE payloads, as Redis compresses them)" "pkg-config liblzf-dev")
endif()

if(KEG_TESTS)
  find_package(GTest QUIET)
  if(NOT GTest_FOUND)
    keg_missing("GoogleTest" "googletest libgtest-dev libgmock-dev")
  endif()
  if(PkgConfig_FOUND)
    pkg_check_modules(HIREDIS QUIET IMPORTED_TARGET hiredis)
  endif()
  if(NOT HIREDIS_FOUND)
    keg_missing("hiredis (tests)" "pkg-config libhiredis-dev")
  endif()
endif()

if(KEG_BENCH)
  find_package(benchmark QUIET)
  if(NOT benchmark_FOUND)
    keg_missing("Google Benchmark (-DKEG_BENCH=OFF to skip)" libbenchmark-dev)
  endif()
endif()

if(_keg_missing)
  list(JOIN _keg_missing "\n" _keg_missing_text)
  message(FATAL_ERROR
    "keg: missing dependencies:\n${_keg_missing_text}\n"
    "Run tools/install-deps.sh --test to install everything.")
endif()
