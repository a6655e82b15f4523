// Test support: a keg-server (KEG_SERVER_PATH) in its own temporary directory, and a reference
// redis-server, each on a free loopback port (tests that start real servers).
#pragma once

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/server_process.h"

namespace keg::testing {

inline std::filesystem::path TempDir(const std::string& name) {
  static int counter = 0;
  std::filesystem::path p = std::filesystem::temp_directory_path() /
               ("keg_server_test_" + std::to_string(getpid()) + "_" + name + "_" + std::to_string(counter++));
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}

class Keg {
 public:
  explicit Keg(std::vector<std::string> extra = {}, const std::string& name = "keg")
      : dir_(TempDir(name)), extra_(std::move(extra)) {}
  ~Keg() {
    proc_.Kill();
    std::filesystem::remove_all(dir_);
  }
  bool Start() {
    const int port = port_ > 0 ? port_ : FreePort();
    port_ = port;
    std::vector<std::string> args = {KEG_SERVER_PATH, "--port", std::to_string(port), "--dir",
                                     (dir_ / "data").string(), "--logfile", (dir_ / "keg.log").string()};
    args.insert(args.end(), extra_.begin(), extra_.end());
    return proc_.Start(args, port);
  }
  std::string Log() const {
    std::ifstream in(dir_ / "keg.log");
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  ServerProcess& proc() { return proc_; }
  int port() const { return port_; }
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
  std::vector<std::string> extra_;
  int port_ = -1;
  ServerProcess proc_;
};

class Redis {
 public:
  /// `extra`: more redis-server arguments (e.g. {"--enable-debug-command", "yes"}).
  explicit Redis(std::vector<std::string> extra = {}) {
    const int port = FreePort();
    std::vector<std::string> args = {"redis-server", "--port", std::to_string(port), "--bind", "127.0.0.1",
                                     "--save", "", "--appendonly", "no", "--logfile", "/dev/null"};
    args.insert(args.end(), extra.begin(), extra.end());
    ok_ = proc_.Start(args, port);
  }
  bool ok() const { return ok_; }
  int port() const { return proc_.port(); }

 private:
  ServerProcess proc_;
  bool ok_ = false;
};

}  // namespace keg::testing
