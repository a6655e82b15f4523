// Connection commands: PING, ECHO, QUIT, RESET, HELLO, AUTH, SELECT, CLIENT, and MULTI / EXEC /
// DISCARD / WATCH / UNWATCH.
#include <algorithm>
#include <cstdint>

#include "resp/numbers.h"
#include "server/command.h"
#include "server/session.h"
#include "server/state.h"
#include "server/version.h"

namespace keg::server {
namespace {

void Ping(Ctx& c) {
  if (c.argc() > 2) return c.Error(WrongArity("ping"));
  // A subscribed RESP2 connection gets ["pong", message or ""] (Redis's pingCommand).
  if (!c.in_script()) {
    if (c.client().protocol() == resp::Protocol::kResp2 && c.client().subscribed()) {
      c.out().ArrayHeader(2);
      c.out().Bulk("pong");
      c.out().Bulk(c.argc() == 2 ? c.arg(1) : std::string_view());
      return;
    }
  }
  if (c.argc() == 2) {
    c.out().Bulk(c.arg(1));
  } else {
    c.out().SimpleString("PONG");
  }
}

void Echo(Ctx& c) { c.out().Bulk(c.arg(1)); }

void Quit(Ctx& c) {
  c.out().Ok();
  c.client().CloseAfterReply();
}

void Reset(Ctx& c) {
  c.client().Reset();
  c.out().SimpleString("RESET");
}

constexpr std::string_view kWrongPass = "-WRONGPASS invalid username-password pair or user is disabled.";

// Checks a username and password (AclRegistry::CheckCredentials); on success the connection
// becomes the user's, on failure an "auth" entry goes to the ACL LOG.
bool Login(Ctx& c, std::string_view user, std::string_view pass) {
  AclRegistry& acl = c.server().acl;
  if (acl.CheckCredentials(user, pass)) {
    if (std::shared_ptr<const AclUser> u = acl.Get(user)) {
      c.client().Authenticate(std::move(u));
      return true;
    }
  }
  AclRegistry::LogEntry e;
  e.reason = "auth";
  e.context = c.client().in_multi() || c.client().in_exec() ? "multi" : "toplevel";
  e.object = std::string(c.arg(0));
  e.username = std::string(user);
  e.ctime_ms = store::NowMs();
  e.client_info = c.client().Describe(e.ctime_ms);
  acl.Log(std::move(e));
  return false;
}

void Auth(Ctx& c) {
  if (c.argc() > 3) return c.Error(err::kSyntax);
  if (c.argc() == 2 && c.server().acl.Default()->nopass) {
    return c.Error(
        "AUTH <password> called without any password configured for the default user. Are you "
        "sure your configuration is correct?");
  }
  const std::string_view user = c.argc() == 3 ? c.arg(1) : "default";
  if (!Login(c, user, c.arg(c.argc() - 1))) return c.Error(kWrongPass);
  c.out().Ok();
}

bool ValidClientName(std::string_view name) {
  return std::all_of(name.begin(), name.end(), [](char ch) { return ch >= '!' && ch <= '~'; });
}

constexpr std::string_view kBadName = "Client names cannot contain spaces, newlines or special characters.";

void Hello(Ctx& c) {
  int64_t proto = static_cast<int64_t>(c.client().protocol());
  size_t i = 1;
  if (c.argc() >= 2) {
    if (!resp::ParseInt64(c.arg(1), &proto)) {
      return c.Error("Protocol version is not an integer or out of range");
    }
    i = 2;
    if (proto < 2 || proto > 3) return c.Error("-NOPROTO unsupported protocol version");
  }
  std::string_view setname;
  bool has_setname = false;
  bool authed_now = false;
  for (; i < c.argc(); ++i) {
    const std::string opt = ToLower(c.arg(i));
    if (opt == "auth" && i + 2 < c.argc()) {
      if (!Login(c, c.arg(i + 1), c.arg(i + 2))) return c.Error(kWrongPass);
      authed_now = true;
      i += 2;
    } else if (opt == "setname" && i + 1 < c.argc()) {
      setname = c.arg(++i);
      has_setname = true;
      if (!ValidClientName(setname)) return c.Error(kBadName);
    } else {
      return c.Error("Syntax error in HELLO option '" + std::string(c.arg(i)) + "'");
    }
  }
  if (!c.client().authenticated() && !authed_now) {
    return c.Error(
        "-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO "
        "AUTH <user> <pass> option can be used to authenticate the client and select the RESP "
        "protocol version at the same time");
  }
  if (has_setname) c.client().set_name(std::string(setname));
  c.client().set_protocol(proto == 3 ? resp::Protocol::kResp3 : resp::Protocol::kResp2);
  resp::ReplyBuffer& out = c.out();
  out.MapHeader(7);
  out.Bulk("server");
  out.Bulk("redis");
  out.Bulk("version");
  out.Bulk(kRedisVersion);
  out.Bulk("proto");
  out.Integer(proto);
  out.Bulk("id");
  out.Integer(static_cast<int64_t>(c.client().id()));
  out.Bulk("mode");
  out.Bulk("standalone");
  out.Bulk("role");
  out.Bulk("master");
  out.Bulk("modules");
  out.ArrayHeader(0);
}

// SELECT index. Inside EXEC it runs at its place among the queued commands and replies through a
// step (ClientSession::Exec); in a script it changes the script's database only (Redis 7).
void Select(Ctx& c) {
  const bool step = c.client().in_exec() && !c.in_script();
  int32_t db = 0;
  std::string error = ParseIntArgument(c.arg(1), {}, &db);
  if (error.empty() && (db < 0 || static_cast<uint32_t>(db) >= c.server().store->Databases())) {
    error = "DB index is out of range";
  }
  if (!error.empty()) return step ? c.Fail(std::move(error)) : c.Error(error);
  c.SelectDb(static_cast<uint32_t>(db));
  if (step) return c.Then([](std::span<store::OpResult>, resp::ReplyBuffer& out) { out.Ok(); });
  c.out().Ok();
}

// CLIENT <subcommand>
// CLIENT TRACKING on|off [REDIRECT id] [BCAST] [PREFIX p]... [OPTIN] [OPTOUT] [NOLOOP], with
// Redis 7.0's checks and error texts (networking.c).
void ClientTracking(Ctx& c) {
  ClientSession& me = c.client();
  Tracking::Mode mode;
  std::vector<std::string_view> prefixes;
  bool redirect_given = false;
  for (size_t j = 3; j < c.argc(); ++j) {
    const std::string opt = ToLower(c.arg(j));
    const bool more = j + 1 < c.argc();
    if (opt == "redirect" && more) {
      ++j;
      if (redirect_given) return c.Error("A client can only redirect to a single other client");
      int64_t id = 0;
      if (!resp::ParseInt64(c.arg(j), &id)) return c.Error(err::kNotInteger);
      if (id <= 0 || !c.server().clients.WithClient(static_cast<uint64_t>(id), [](ClientSession&) {})) {
        return c.Error("The client ID you want redirect to does not exist");
      }
      redirect_given = true;
      mode.redirect = static_cast<uint64_t>(id);
    } else if (opt == "bcast") {
      mode.bcast = true;
    } else if (opt == "optin") {
      mode.optin = true;
    } else if (opt == "optout") {
      mode.optout = true;
    } else if (opt == "noloop") {
      mode.noloop = true;
    } else if (opt == "prefix" && more) {
      prefixes.push_back(c.arg(++j));
    } else {
      return c.Error(err::kSyntax);
    }
  }
  const std::string onoff = ToLower(c.arg(2));
  if (onoff == "off") {
    me.SetTracking(false, {});
    return c.out().Ok();
  }
  if (onoff != "on") return c.Error(err::kSyntax);
  const Tracking::Mode* current = me.tracking_mode();
  if (!mode.bcast && !prefixes.empty()) return c.Error("PREFIX option requires BCAST mode to be enabled");
  if (current != nullptr && current->bcast != mode.bcast) {
    return c.Error("You can't switch BCAST mode on/off before disabling tracking for this client, and then "
                   "re-enabling it with a different mode.");
  }
  if (mode.bcast && (mode.optin || mode.optout)) return c.Error("OPTIN and OPTOUT are not compatible with BCAST");
  if (mode.optin && mode.optout) return c.Error("You can't specify both OPTIN mode and OPTOUT mode");
  if (current != nullptr && ((mode.optin && current->optout) || (mode.optout && current->optin))) {
    return c.Error("You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and then "
                   "re-enabling it with a different mode.");
  }
  if (mode.bcast) {
    if (std::string e = c.server().tracking.CheckPrefixes(me.id(), prefixes); !e.empty()) return c.Error(e);
    mode.prefixes.assign(prefixes.begin(), prefixes.end());
  }
  me.SetTracking(true, mode);
  c.out().Ok();
}

void Client(Ctx& c) {
  const std::string sub = ToLower(c.arg(1));
  ClientSession& me = c.client();
  resp::ReplyBuffer& out = c.out();
  if (sub == "id" && c.argc() == 2) return out.Integer(static_cast<int64_t>(me.id()));
  if (sub == "getname" && c.argc() == 2) {
    const std::string name = me.name();
    if (name.empty()) return out.Null();
    return out.Bulk(name);
  }
  if (sub == "setname" && c.argc() == 3) {
    if (!ValidClientName(c.arg(2))) return c.Error(kBadName);
    me.set_name(std::string(c.arg(2)));
    return out.Ok();
  }
  if (sub == "setinfo" && c.argc() == 4) {
    const std::string attr = ToLower(c.arg(2));
    if (attr != "lib-name" && attr != "lib-ver") {
      return c.Error("Unrecognized option '" + std::string(c.arg(2)) + "'");
    }
    if (!ValidClientName(c.arg(3))) {
      return c.Error(std::string(attr == "lib-name" ? "lib-name" : "lib-ver") +
                     " cannot contain spaces, newlines or special characters.");
    }
    me.set_lib(attr, std::string(c.arg(3)));
    return out.Ok();
  }
  if (sub == "info" && c.argc() == 2) {
    const std::string line = me.Describe(store::NowMs()) + "\n";
    return me.protocol() == resp::Protocol::kResp3 ? out.Verbatim(line) : out.Bulk(line);
  }
  if (sub == "list") {
    // As Redis 7.0: one filter, TYPE t or ID id [id ...]; anything else a syntax error.
    std::vector<uint64_t> ids;
    std::string list_type;  // empty: any
    if (c.argc() == 4 && EqualsIgnoreCase(c.arg(2), "type")) {
      list_type = ToLower(c.arg(3));
      if (list_type == "slave") list_type = "replica";
      if (list_type != "normal" && list_type != "master" && list_type != "replica" && list_type != "pubsub") {
        return c.Error("Unknown client type '" + std::string(c.arg(3)) + "'");
      }
    } else if (c.argc() > 3 && EqualsIgnoreCase(c.arg(2), "id")) {
      for (size_t i = 3; i < c.argc(); ++i) {
        int64_t id = 0;
        // Any integer, as Redis: one no client has (0, -1) lists nothing.
        if (!resp::ParseInt64(c.arg(i), &id)) return c.Error("Invalid client ID");
        ids.push_back(static_cast<uint64_t>(id));
      }
    } else if (c.argc() != 2) {
      return c.Error(err::kSyntax);
    }
    std::string text;
    const int64_t now = store::NowMs();
    c.server().clients.ForEach([&](ClientSession& s) {
      if (!ids.empty() && std::find(ids.begin(), ids.end(), s.id()) == ids.end()) return;
      if (!list_type.empty() && s.client_type() != list_type) return;
      text += s.Describe(now);
      text += '\n';
    });
    return me.protocol() == resp::Protocol::kResp3 ? out.Verbatim(text) : out.Bulk(text);
  }
  if (sub == "kill" && c.argc() >= 3) {
    // Old form: CLIENT KILL addr:port. New form: filters, reply is the count.
    std::string addr, laddr, user;
    int64_t id = 0;
    int64_t maxage = 0;  // seconds; 0: any age
    std::string kill_type;  // empty: any
    bool skipme = true;
    const bool old_form = c.argc() == 3;
    if (old_form) {
      addr = std::string(c.arg(2));
    } else {
      if ((c.argc() - 2) % 2 != 0) return c.Error(err::kSyntax);
      for (size_t i = 2; i + 1 < c.argc(); i += 2) {
        const std::string opt = ToLower(c.arg(i));
        if (opt == "id") {
          if (!resp::ParseInt64(c.arg(i + 1), &id) || id <= 0) return c.Error("client-id should be greater than 0");
        } else if (opt == "addr") {
          addr = std::string(c.arg(i + 1));
        } else if (opt == "laddr") {
          laddr = std::string(c.arg(i + 1));
        } else if (opt == "skipme") {
          const std::string v = ToLower(c.arg(i + 1));
          if (v != "yes" && v != "no") return c.Error(err::kSyntax);
          skipme = v == "yes";
        } else if (opt == "type") {
          // Redis's getClientTypeByName: slave is replica's old name.
          const std::string type = ToLower(c.arg(i + 1));
          if (type != "normal" && type != "master" && type != "slave" && type != "replica" &&
              type != "pubsub") {
            return c.Error("Unknown client type '" + std::string(c.arg(i + 1)) + "'");
          }
          kill_type = type == "slave" ? "replica" : type;
        } else if (opt == "user") {
          if (c.server().acl.Get(c.arg(i + 1)) == nullptr) {
            return c.Error("No such user '" + std::string(c.arg(i + 1)) + "'");
          }
          user = std::string(c.arg(i + 1));
        } else if (opt == "maxage") {
          if (!resp::ParseInt64(c.arg(i + 1), &maxage) || maxage < 0) return c.Error(err::kSyntax);
        } else {
          return c.Error(err::kSyntax);
        }
      }
    }
    int64_t killed = 0;
    bool kill_me = false;
    std::vector<std::shared_ptr<net::Link>> targets;
    const int64_t now_ms = store::NowMs();
    // The victims leave the registry here, at once (CLIENT LIST, INFO clients, a tracking
    // redirect to one of them), as Redis's freeClient: a command after this one's reply never
    // finds one still there, though a victim on another I/O thread closes there a little later.
    // The caller leaves with its reply (Link::CloseAfterReply).
    c.server().clients.RemoveIf([&](ClientSession& s) {
      if (!kill_type.empty() && s.client_type() != kill_type) return false;
      if (id != 0 && s.id() != static_cast<uint64_t>(id)) return false;
      if (maxage > 0 && (now_ms - s.created_ms()) / 1000 < maxage) return false;
      if (!addr.empty() && s.peer() != addr) return false;
      if (!laddr.empty() && s.local() != laddr) return false;
      if (!user.empty() && s.user_name() != user) return false;
      if (&s == &me) {
        if (skipme && !old_form) return false;
        kill_me = true;
        ++killed;
        return false;
      }
      targets.push_back(s.link().Self());
      ++killed;
      return true;
    });
    // Closed before the reply, as Redis's freeClient: one on this I/O thread at once (its
    // replica, say, sees the hang-up before the caller sees the reply), others on theirs.
    for (std::shared_ptr<net::Link>& link : targets) {
      if (link->OnItsThread()) {
        link->CloseNow();
      } else {
        link->Post([link] { link->CloseNow(); });
      }
    }
    targets.clear();  // (a session closed here may go now, outside clients.ForEach)
    if (kill_me) me.CloseAfterReply();
    if (old_form) {
      if (killed == 0) return c.Error("No such client");
      return out.Ok();
    }
    return out.Integer(killed);
  }
  if (sub == "tracking" && c.argc() >= 3) return ClientTracking(c);
  if (sub == "caching" && c.argc() >= 3) {
    const Tracking::Mode* mode = me.tracking_mode();
    if (mode == nullptr) {
      return c.Error("CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled");
    }
    const std::string opt = ToLower(c.arg(2));
    if (opt == "yes") {
      if (!mode->optin) return c.Error("CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.");
    } else if (opt == "no") {
      if (!mode->optout) return c.Error("CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.");
    } else {
      return c.Error(err::kSyntax);
    }
    me.SetTrackingCaching();
    return out.Ok();
  }
  if (sub == "getredir" && c.argc() == 2) {
    const Tracking::Mode* mode = me.tracking_mode();
    return out.Integer(mode != nullptr ? static_cast<int64_t>(mode->redirect) : -1);
  }
  if (sub == "trackinginfo" && c.argc() == 2) {
    const Tracking::Mode* mode = me.tracking_mode();
    std::vector<std::string_view> flags = {mode != nullptr ? "on" : "off"};
    if (mode != nullptr) {
      if (mode->bcast) flags.push_back("bcast");
      if (mode->optin) flags.push_back("optin");
      if (mode->optin && me.tracking_caching()) flags.push_back("caching-yes");
      if (mode->optout) flags.push_back("optout");
      if (mode->optout && me.tracking_caching()) flags.push_back("caching-no");
      if (mode->noloop) flags.push_back("noloop");
      if (me.tracking_redirect_broken()) flags.push_back("broken_redirect");
    }
    out.MapHeader(3);
    out.Bulk("flags");
    out.SetHeader(flags.size());
    for (std::string_view f : flags) out.Bulk(f);
    out.Bulk("redirect");
    out.Integer(mode != nullptr ? static_cast<int64_t>(mode->redirect) : -1);
    out.Bulk("prefixes");
    std::vector<std::string> prefixes = mode != nullptr ? mode->prefixes : std::vector<std::string>();
    std::sort(prefixes.begin(), prefixes.end());  // Redis lists them from a radix tree
    out.ArrayHeader(prefixes.size());
    for (const std::string& p : prefixes) out.Bulk(p);
    return;
  }
  if (sub == "pause" && (c.argc() == 3 || c.argc() == 4)) {
    // CLIENT PAUSE timeout [WRITE|ALL]: commands (ALL) or those that may write (WRITE) wait until
    // the timeout (ms) or CLIENT UNPAUSE; keys stop expiring meanwhile (Redis's pause).
    bool all = true;
    if (c.argc() == 4) {
      const std::string mode = ToLower(c.arg(3));
      if (mode != "write" && mode != "all") return c.Error("CLIENT PAUSE mode must be WRITE or ALL");
      all = mode == "all";
    }
    int64_t ms = 0;
    if (!resp::ParseInt64(c.arg(2), &ms)) return c.Error("timeout is not an integer or out of range");
    if (ms < 0) return c.Error("timeout is negative");
    const int64_t now = store::NowMs();
    if (ms > INT64_MAX - now) return c.Error("timeout is out of range");
    c.server().pause.Pause(ms == 0 ? 0 : now + ms, all);
    // The reply once the writes that passed the pause's check on other I/O threads just before
    // are applied (and in the replication stream): after OK nothing more is written, as in Redis,
    // whose one thread ran them before it read the PAUSE. (Inside MULTI: at once.)
    if (c.inline_only()) return out.Ok();
    ClientSession* client = &c.client();
    std::shared_ptr<net::Link> keep = client->link().Self();
    client->Suspend();
    c.server().AfterWritesInFlight([client, keep] {
      keep->Post([client] {
        client->link().out().Ok();
        client->Finish();
      });
    });
    return;
  }
  if (sub == "unpause" && c.argc() == 2) {
    c.server().pause.Unpause();
    return out.Ok();
  }
  if (sub == "unblock" && (c.argc() == 3 || c.argc() == 4)) {
    // A client blocked in BLPOP and friends (blocking.h) or in WAIT gets the timeout's reply, or
    // with ERROR the UNBLOCKED error; 0 when the client is not blocked (CLIENT PAUSE does not
    // count).
    if (c.argc() == 4 && !EqualsIgnoreCase(c.arg(3), "timeout") && !EqualsIgnoreCase(c.arg(3), "error")) {
      return c.Error("CLIENT UNBLOCK reason should be TIMEOUT or ERROR");
    }
    int64_t id = 0;
    if (!resp::ParseInt64(c.arg(2), &id)) return c.Error(err::kNotInteger);
    const bool error = c.argc() == 4 && EqualsIgnoreCase(c.arg(3), "error");
    const bool unblocked = id > 0 && (c.server().blocking.Unblock(static_cast<uint64_t>(id), error) ||
                                      c.server().repl.Unblock(static_cast<uint64_t>(id), error));
    return out.Integer(unblocked ? 1 : 0);
  }
  if ((sub == "no-evict" || sub == "no-touch") && c.argc() == 3) {
    const std::string v = ToLower(c.arg(2));
    if (v != "on" && v != "off") return c.Error(err::kSyntax);
    // NO-EVICT: keg never evicts clients, either way is honoured. NO-TOUCH: this client's commands
    // leave the keys' access time alone (TOUCH still touches), as Redis 7.2.
    if (sub == "no-touch") me.set_no_touch(v == "on");
    return out.Ok();
  }
  if (sub == "reply" && c.argc() == 3) {
    const std::string v = ToLower(c.arg(2));
    if (v != "on" && v != "off" && v != "skip") return c.Error(err::kSyntax);
    me.SetReplyMode(v);
    if (v == "on") out.Ok();
    return;
  }
  if (sub == "help" && c.argc() == 2) {
    // Redis 7.0's text, then SETINFO and NO-TOUCH (Redis 7.2's, which keg has too).
    static const char* kHelp[] = {
        "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "CACHING (YES|NO)", "    Enable/disable tracking of the keys for next command in OPTIN/OPTOUT modes.",
        "GETREDIR", "    Return the client ID we are redirecting to when tracking is enabled.",
        "GETNAME", "    Return the name of the current connection.",
        "ID", "    Return the ID of the current connection.",
        "INFO", "    Return information about the current client connection.",
        "KILL <ip:port>", "    Kill connection made from <ip:port>.",
        "KILL <option> <value> [<option> <value> [...]]",
        "    Kill connections. Options are:",
        "    * ADDR (<ip:port>|<unixsocket>:0)", "      Kill connections made from the specified address",
        "    * LADDR (<ip:port>|<unixsocket>:0)", "      Kill connections made to specified local address",
        "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)", "      Kill connections by type.",
        "    * USER <username>", "      Kill connections authenticated by <username>.",
        "    * SKIPME (YES|NO)", "      Skip killing current connection (default: yes).",
        "LIST [options ...]", "    Return information about client connections. Options:",
        "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)", "      Return clients of specified type.",
        "UNPAUSE", "    Stop the current client pause, resuming traffic.",
        "PAUSE <timeout> [WRITE|ALL]", "    Suspend all, or just write, clients for <timeout> milliseconds.",
        "REPLY (ON|OFF|SKIP)", "    Control the replies sent to the current connection.",
        "SETNAME <name>", "    Assign the name <name> to the current connection.",
        "UNBLOCK <clientid> [TIMEOUT|ERROR]", "    Unblock the specified blocked client.",
        "TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix> [...]]",
        "         [OPTIN] [OPTOUT] [NOLOOP]", "    Control server assisted client side caching.",
        "TRACKINGINFO", "    Report tracking status for the current connection.",
        "NO-EVICT (ON|OFF)", "    Protect current client connection from eviction.",
        "SETINFO <LIB-NAME|LIB-VER> <value>", "    Set client library name or version.",
        "NO-TOUCH (ON|OFF)", "    Will not touch LRU/LFU stats when this mode is on.",
        "HELP", "    Prints this help."};
    out.ArrayHeader(std::size(kHelp));
    for (const char* line : kHelp) out.SimpleString(line);
    return;
  }
  // PAUSE and UNBLOCK take 3 or 4 arguments (their arity says at least 3): past that, Redis's
  // subcommand syntax error.
  if (sub == "pause" || sub == "unblock") return c.Error(SubcommandSyntaxError(c));
  if (sub == "getname" || sub == "setname" || sub == "id" || sub == "info" || sub == "setinfo" ||
      sub == "no-evict" || sub == "no-touch" || sub == "reply" || sub == "help" || sub == "unpause") {
    return c.Error(WrongArity("client|" + sub));
  }
  c.Error("unknown subcommand '" + std::string(c.arg(1)).substr(0, 128) + "'. Try CLIENT HELP.");
}

// MONITOR: this connection receives every command run from now on (MonitorRegistry). A second
// MONITOR is ignored without a reply, as Redis.
void Monitor(Ctx& c) {
  if (c.client().in_exec()) return c.Error("MONITOR isn't allowed for DENY BLOCKING client");
  if (c.client().monitoring()) return;
  c.client().StartMonitor();
  c.out().Ok();
}

void Multi(Ctx& c) {
  if (c.client().in_multi()) return c.Error("MULTI calls can not be nested");
  c.client().BeginMulti();
  c.out().Ok();
}

void Exec(Ctx& c) { c.client().Exec(c); }

void Discard(Ctx& c) {
  if (!c.client().in_multi()) return c.Error("DISCARD without MULTI");
  c.client().Discard();
  c.out().Ok();
}

void Watch(Ctx& c) {
  if (c.client().in_multi()) return c.Error("WATCH inside MULTI is not allowed");
  c.client().Watch(c.args().subspan(1));
  c.out().Ok();
}

void Unwatch(Ctx& c) {
  c.client().Unwatch();
  c.out().Ok();
}

}  // namespace

void RegisterConnectionCommands(std::vector<Command>* t) {
  t->push_back({"monitor", 1, kAdmin | kNoScript, 0, 0, 0, Monitor, "@admin @slow @dangerous"});
  t->push_back({"ping", -1, kFast, 0, 0, 0, Ping, "@fast @connection"});
  t->push_back({"echo", 2, kFast, 0, 0, 0, Echo, "@fast @connection"});
  t->push_back({"quit", -1, kNoAuth | kMultiControl | kFast | kNoScript | kAllowBusy, 0, 0, 0, Quit, "@fast @connection"});
  t->push_back({"reset", 1, kNoAuth | kMultiControl | kFast | kNoScript | kAllowBusy, 0, 0, 0, Reset, "@fast @connection"});
  t->push_back({"auth", -2, kNoAuth | kFast | kNoScript | kAllowBusy, 0, 0, 0, Auth, "@fast @connection"});
  t->push_back({"hello", -1, kNoAuth | kFast | kNoScript | kAllowBusy, 0, 0, 0, Hello, "@fast @connection"});
  t->push_back({"select", 2, kFast, 0, 0, 0, Select, "@fast @connection"});
  t->push_back({"client", -2, 0, 0, 0, 0, Client, "@slow",
                {{"id", 2, kNoScript, 0, 0, 0, nullptr, "@slow @connection"},
                 {"getname", 2, kNoScript, 0, 0, 0, nullptr, "@slow @connection"},
                 {"setname", 3, kNoScript, 0, 0, 0, nullptr, "@slow @connection"},
                 {"setinfo", 4, kNoScript, 0, 0, 0, nullptr, "@slow @connection"},
                 {"info", 2, kNoScript, 0, 0, 0, nullptr, "@slow @connection"},
                 {"list", -2, kAdmin | kNoScript, 0, 0, 0, nullptr, "@admin @slow @dangerous @connection"},
                 {"kill", -3, kAdmin | kNoScript, 0, 0, 0, nullptr, "@admin @slow @dangerous @connection"},
                 {"no-evict", 3, kAdmin | kNoScript, 0, 0, 0, nullptr, "@admin @slow @dangerous @connection"},
                 {"no-touch", 3, kNoScript, 0, 0, 0, nullptr, "@slow @connection"},
                 {"reply", 3, kNoScript, 0, 0, 0, nullptr, "@slow @connection"},
                 {"pause", -3, kAdmin | kNoScript, 0, 0, 0, nullptr, "@admin @slow @dangerous @connection"},
                 {"unpause", 2, kAdmin | kNoScript, 0, 0, 0, nullptr, "@admin @slow @dangerous @connection"},
                 {"unblock", -3, kAdmin | kNoScript, 0, 0, 0, nullptr, "@admin @slow @dangerous @connection"},
                 {"tracking", -3, kNoScript, 0, 0, 0, nullptr, "@slow @connection"},
                 {"caching", 3, kNoScript, 0, 0, 0, nullptr, "@slow @connection"},
                 {"getredir", 2, kNoScript, 0, 0, 0, nullptr, "@slow @connection"},
                 {"trackinginfo", 2, kNoScript, 0, 0, 0, nullptr, "@slow @connection"},
                 {"help", 2, 0, 0, 0, 0, nullptr, "@slow @connection"}}});
  t->push_back({"multi", 1, kMultiControl | kFast | kNoScript | kAllowBusy, 0, 0, 0, Multi, "@fast @transaction"});
  t->push_back({"exec", 1, kMultiControl | kNoScript | kSkipSlowlog, 0, 0, 0, Exec, "@slow @transaction"});
  t->push_back({"discard", 1, kMultiControl | kFast | kNoScript | kAllowBusy, 0, 0, 0, Discard, "@fast @transaction"});
  t->push_back({"watch", -2, kMultiControl | kFast | kNoScript | kAllowBusy, 1, -1, 1, Watch, "@fast @transaction"});
  t->push_back({"unwatch", 1, kFast | kNoScript | kAllowBusy, 0, 0, 0, Unwatch, "@fast @transaction"});
}

}  // namespace keg::server
