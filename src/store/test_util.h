// Test support for src/store: a fresh directory per test, unique per process and test name, under
// testing::TempDir(), so parallel ctest runs never share one.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <string_view>

namespace keg::store::testing {

/// An empty directory path for the running test (removed if it existed); the caller creates it.
inline std::filesystem::path FreshTestDir(std::string_view prefix) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) /
                              (std::string(prefix) + "_" + std::to_string(getpid()) + "_" +
                               info->test_suite_name() + "_" + info->name());
  std::filesystem::remove_all(dir);
  return dir;
}

}  // namespace keg::store::testing
