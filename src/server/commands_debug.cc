// DEBUG: the subcommands Redis's test suite uses, behind enable-debug-command as in Redis (the
// default `no` refuses DEBUG; `local` allows it from loopback connections only).
//
// keg's log is its save file, so RELOAD and LOADAOF have nothing to load: they make everything
// durable (fsync) and reply OK; every key is unchanged, which is what callers check.
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <thread>

#include "resp/numbers.h"
#include "server/command.h"
#include "server/session.h"
#include "server/state.h"

namespace keg::server {
namespace {

bool IsLoopback(std::string_view peer) {
  return peer.starts_with("127.") || peer.starts_with("[::1]") || peer.starts_with("::1");
}

void DebugProtocol(Ctx& c) {
  const std::string name = ToLower(c.arg(2));
  resp::ReplyBuffer& out = c.out();
  const bool resp3 = c.client().protocol() == resp::Protocol::kResp3;
  if (name == "string") return out.Bulk("Hello World");
  if (name == "integer") return out.Integer(12345);
  if (name == "double") return out.Double(3.141);
  if (name == "bignum") {
    return resp3 ? out.Raw("(1234567999999999999999999999999999999\r\n")
                 : out.Bulk("1234567999999999999999999999999999999");
  }
  if (name == "null") return out.Null();
  if (name == "array" || name == "set") {
    name == "array" ? out.ArrayHeader(3) : out.SetHeader(3);
    for (int j = 0; j < 3; ++j) out.Integer(j);
    return;
  }
  if (name == "map") {
    out.MapHeader(3);
    for (int j = 0; j < 3; ++j) {
      out.Integer(j);
      out.Boolean(j == 1);
    }
    return;
  }
  if (name == "attrib") {
    if (resp3) out.Raw("|1\r\n$14\r\nkey-popularity\r\n*2\r\n$7\r\nkey:123\r\n:90\r\n");
    return out.Bulk("Some real reply following the attribute");
  }
  if (name == "push") {
    if (!resp3) return c.Error("RESP2 is not supported by this command");
    out.Raw(">2\r\n$16\r\nserver-cpu-usage\r\n:42\r\n");
    return out.Bulk("Some real reply following the push reply");
  }
  if (name == "true") return out.Boolean(true);
  if (name == "false") return out.Boolean(false);
  if (name == "verbatim") return out.Verbatim("This is a verbatim\nstring");
  c.Error("Wrong protocol type name. Please use one of the following: "
          "string|integer|double|bignum|null|array|set|map|attrib|push|verbatim|true|false");
}

void Debug(Ctx& c) {
  const int mode = c.server().debug_command.load(std::memory_order_relaxed);
  if (mode == 0 || (mode == 2 && !IsLoopback(c.client().peer()))) {
    return c.Error("DEBUG command not allowed. If the enable-debug-command option is set to "
                   "\"local\", you can run it from a local connection, otherwise you need to set "
                   "this option in the configuration file, and then restart the server.");
  }
  const std::string sub = ToLower(c.arg(1));
  if (sub == "help" && c.argc() == 2) {
    static constexpr std::string_view kLines[] = {
        "DEBUG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "LOADAOF", "    Flush the log to disk (keg has nothing to reload).",
        "OBJECT <key>", "    Show low level info about the `key` and associated value.",
        "PROTOCOL <type>",
        "    Reply with a test value of the specified type. <type> can be: string,",
        "    integer, double, bignum, null, array, set, map, attrib, push, verbatim,",
        "    true, false.",
        "RELOAD", "    Flush the log to disk (keg's log is its save file).",
        "SET-ACTIVE-EXPIRE <0|1>",
        "    Setting it to 0 disables expiring keys in background when they are not",
        "    accessed (otherwise the Redis behavior). Setting it to 1 reenables back the",
        "    default.",
        "SLEEP <seconds>", "    Stop the server for <seconds>. Decimals allowed.",
        "HELP", "    Print this help."};
    c.out().ArrayHeader(std::size(kLines));
    for (std::string_view l : kLines) c.out().SimpleString(l);
    return;
  }
  if (sub == "sleep" && c.argc() == 3) {
    // As Redis, this stops the thread that runs it (the connection's I/O thread).
    // Redis reads the number with strtod and sleeps 0 on garbage.
    const std::string text(c.arg(2));
    double secs = std::strtod(text.c_str(), nullptr);
    if (!std::isfinite(secs) || secs < 0) secs = 0;
    std::this_thread::sleep_for(std::chrono::microseconds(static_cast<int64_t>(std::min(secs, 3600.0) * 1e6)));
    return c.out().Ok();
  }
  if (sub == "set-active-expire" && c.argc() == 3) {
    int64_t on = 0;
    if (!resp::ParseInt64(c.arg(2), &on)) return c.Error(err::kNotInteger);
    c.server().store->SetActiveExpire(on != 0);
    return c.out().Ok();
  }
  if (sub == "protocol" && c.argc() == 3) return DebugProtocol(c);
  if ((sub == "reload" || sub == "loadaof") && c.argc() >= 2) {
    const store::Status s = c.server().store->Sync();
    if (!s.ok()) return c.Error(StorageError(s));
    return c.out().Ok();
  }
  if (sub == "object" && c.argc() == 3) {
    store::ValueView v;
    if (!c.Lookup(c.arg(2), &v)) {
      if (c.read_failed()) return c.ReplyReadError();
      return c.Error(err::kNoSuchKey);
    }
    return c.out().SimpleString("Value at:0x0 refcount:1 encoding:" +
                                std::string(StringEncoding(v.value)) +
                                " serializedlength:" + std::to_string(v.value.size()) +
                                " lru:0 lru_seconds_idle:0");
  }
  c.Error("unknown subcommand or wrong number of arguments for '" +
          std::string(c.arg(1)).substr(0, 128) + "'. Try DEBUG HELP.");
}

}  // namespace

std::string_view StringEncoding(std::string_view value) {
  int64_t v = 0;
  if (value.size() <= 20 && resp::ParseInt64(value, &v)) return "int";
  return value.size() <= 44 ? "embstr" : "raw";
}

void RegisterDebugCommands(std::vector<Command>* t) {
  t->push_back({"debug", -2, kAdmin, 0, 0, 0, Debug, "@admin @slow @dangerous"});
}

}  // namespace keg::server
