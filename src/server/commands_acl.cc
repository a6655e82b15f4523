// ACL CAT | DELUSER | DRYRUN | GENPASS | GETUSER | LIST | LOAD | LOG | SAVE | SETUSER | USERS |
// WHOAMI | HELP, with Redis 7.0's replies (users live in server/acl.h's AclRegistry).
#include <openssl/rand.h>

#include <cstdio>

#include "resp/numbers.h"
#include "server/acl.h"
#include "server/command.h"
#include "server/session.h"
#include "server/state.h"

namespace keg::server {
namespace {

void AclGetuser(Ctx& c) {
  const std::shared_ptr<const AclUser> u = c.server().acl.Get(c.arg(2));
  resp::ReplyBuffer& out = c.out();
  if (u == nullptr) return out.Null();
  out.MapHeader(6);
  out.Bulk("flags");
  std::vector<std::string_view> flags = {u->enabled ? "on" : "off"};
  if (u->nopass) flags.push_back("nopass");
  if (u->sanitize_payload == 2) flags.push_back("skip-sanitize-payload");
  if (u->sanitize_payload == 1) flags.push_back("sanitize-payload");
  out.SetHeader(flags.size());
  for (std::string_view f : flags) out.Bulk(f);
  out.Bulk("passwords");
  out.ArrayHeader(u->passwords.size());
  for (const std::string& p : u->passwords) out.Bulk(p);
  out.Bulk("commands");
  out.Bulk(AclRegistry::DescribeCommands(*u));
  out.Bulk("keys");
  out.Bulk(AclRegistry::DescribeKeys(*u));
  out.Bulk("channels");
  out.Bulk(AclRegistry::DescribeChannels(*u));
  out.Bulk("selectors");
  out.ArrayHeader(0);
}

void AclLog(Ctx& c) {
  AclRegistry& acl = c.server().acl;
  int64_t count = 10;
  if (c.argc() == 3) {
    if (EqualsIgnoreCase(c.arg(2), "reset")) {
      acl.ResetLog();
      return c.out().Ok();
    }
    if (!resp::ParseInt64(c.arg(2), &count)) return c.Error(err::kNotInteger);
    if (count < 0) count = 0;
  }
  const std::vector<AclRegistry::LogEntry> entries = acl.LogEntries(static_cast<size_t>(count));
  resp::ReplyBuffer& out = c.out();
  const int64_t now = store::NowMs();
  out.ArrayHeader(entries.size());
  for (const AclRegistry::LogEntry& e : entries) {
    out.MapHeader(7);
    out.Bulk("count");
    out.Integer(static_cast<int64_t>(e.count));
    out.Bulk("reason");
    out.Bulk(e.reason);
    out.Bulk("context");
    out.Bulk(e.context);
    out.Bulk("object");
    out.Bulk(e.object);
    out.Bulk("username");
    out.Bulk(e.username);
    out.Bulk("age-seconds");
    out.Double(static_cast<double>(now - e.ctime_ms) / 1000.0);
    out.Bulk("client-info");
    out.Bulk(e.client_info);
  }
}

void AclDryrun(Ctx& c) {
  const std::shared_ptr<const AclUser> u = c.server().acl.Get(c.arg(2));
  if (u == nullptr) return c.Error("User '" + std::string(c.arg(2)) + "' not found");
  const std::span<const std::string_view> line = c.args().subspan(3);
  const Command* cmd = FindCommand(line[0]);
  const Command* sub = nullptr;
  if (cmd != nullptr && !cmd->subcommands.empty()) {
    sub = line.size() >= 2 ? FindSubcommand(*cmd, line[1]) : nullptr;
    if (sub == nullptr) cmd = nullptr;  // Redis looks up the container's subcommand
  }
  if (cmd == nullptr) return c.Error("Command '" + std::string(line[0]) + "' not found");
  const Command& run = sub != nullptr ? *sub : *cmd;
  const std::string fullname =
      sub != nullptr ? std::string(cmd->name) + "|" + std::string(sub->name) : std::string(cmd->name);
  const auto n = static_cast<int64_t>(line.size());
  if ((run.arity > 0 && run.arity != n) || n < -run.arity) {
    return c.Error("wrong number of arguments for '" + fullname + "' command");
  }
  size_t index = 0;
  switch (AclCheck(*u, *cmd, sub, line, &index)) {
    case AclDenial::kNone:
      return c.out().Ok();
    case AclDenial::kCommand:
      return c.out().Bulk("This user has no permissions to run the '" + fullname + "' command");
    case AclDenial::kKey:
      return c.out().Bulk("This user has no permissions to access the '" + std::string(line[index]) + "' key");
    case AclDenial::kChannel:
      return c.out().Bulk("This user has no permissions to access the '" + std::string(line[index]) + "' channel");
  }
}

// After ACL SETUSER: the clients authenticated as `name` subscribed to a channel or pattern the
// user may no longer use are closed, as Redis's ACLKillPubsubClientsIfNeeded — before the reply
// for those of this I/O thread (all of them with one I/O thread: the caller's next CLIENT LIST no
// longer lists them), the caller itself after its reply.
// Whether a client is subscribed is asked on its own I/O thread, never here: its subscriptions are
// that thread's, and a SUBSCRIBE allowed by the old rules may be running there right now (the task
// posted to it runs after that command, and sees the new subscription).
void KillSubscribersBeyond(Ctx& c, std::string_view name) {
  const std::shared_ptr<const AclUser> user = c.server().acl.Get(name);
  if (user == nullptr || user->all_channels) return;
  ClientSession& me = c.client();
  std::vector<std::pair<std::shared_ptr<net::Link>, ClientSession*>> targets;
  c.server().clients.ForEach([&](ClientSession& s) {
    if (s.user_name() != name) return;
    targets.emplace_back(s.link().Self(), &s);
  });
  for (auto& [link, session] : targets) {
    if (session == &me) {
      if (session->SubscribedBeyond(*user)) me.CloseAfterReply();
    } else if (link->OnItsThread()) {
      if (session->SubscribedBeyond(*user)) link->CloseNow();
    } else {
      link->Post([link = link, session = session, user] {
        if (!link->closed() && session->SubscribedBeyond(*user)) link->CloseNow();
      });
    }
  }
  targets.clear();  // (a session closed here may go now, outside clients.ForEach)
}

// Closes the connections authenticated as a user `doomed(name)` says: the caller's after its
// reply, the others on their I/O threads.
template <typename Doomed>
void CloseClientsOf(Ctx& c, Doomed doomed) {
  ClientSession& me = c.client();
  bool close_me = false;
  c.server().clients.ForEach([&](ClientSession& s) {
    if (!doomed(s.user_name())) return;
    if (&s == &me) {
      close_me = true;
      return;
    }
    ClientSession* target = &s;
    target->link().Post([target] { target->link().CloseNow(); });
  });
  if (close_me) me.CloseAfterReply();
}

}  // namespace

std::string AclFilePath(ServerState& s, std::string* shown) {
  std::lock_guard lock(s.config_mu);
  if (shown != nullptr) *shown = s.config.aclfile;
  if (s.config.aclfile.empty() || s.config.aclfile[0] == '/') return s.config.aclfile;
  return s.config.dir + "/" + s.config.aclfile;
}

namespace {

void Acl(Ctx& c) {
  const std::string sub = ToLower(c.arg(1));
  AclRegistry& acl = c.server().acl;
  resp::ReplyBuffer& out = c.out();
  if (sub == "setuser" && c.argc() >= 3) {
    const std::vector<std::string_view> rules(c.args().begin() + 3, c.args().end());
    const std::string err = acl.SetUser(c.arg(2), rules);
    if (!err.empty()) return c.Error(err);
    KillSubscribersBeyond(c, c.arg(2));
    return out.Ok();
  }
  if (sub == "deluser" && c.argc() >= 3) {
    const std::span<const std::string_view> names = c.args().subspan(2);
    for (std::string_view n : names) {
      if (n == "default") return c.Error("The 'default' user cannot be removed");
    }
    const int deleted = acl.DeleteUsers(names);
    // Connections authenticated as a deleted user are closed (Redis's ACLFreeUserAndKillClients).
    CloseClientsOf(c, [&](const std::string& name) {
      return std::find(names.begin(), names.end(), name) != names.end() && acl.Get(name) == nullptr;
    });
    return out.Integer(deleted);
  }
  if (sub == "getuser" && c.argc() == 3) return AclGetuser(c);
  if ((sub == "list" || sub == "users") && c.argc() == 2) {
    const auto users = acl.Users();
    out.ArrayHeader(users.size());
    for (const auto& u : users) out.Bulk(sub == "users" ? u->name : "user " + u->name + " " + AclRegistry::Describe(*u));
    return;
  }
  if (sub == "whoami" && c.argc() == 2) return out.Bulk(c.client().user_name());
  if (sub == "load" || sub == "save") {
    std::string shown;
    const std::string path = AclFilePath(c.server(), &shown);
    if (path.empty()) {
      return c.Error(
          "This Redis instance is not configured to use an ACL file. You may want to specify users via the "
          "ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a Redis configuration file "
          "set) in order to store users in the Redis configuration.");
    }
    if (sub == "save") {
      if (!acl.SaveFile(path)) return c.Error("There was an error trying to save the ACLs. Please check the server logs for more information");
      return out.Ok();
    }
    if (std::string errors = acl.LoadFile(path, shown); !errors.empty()) return c.Error(errors);
    // Every user but default is a new one now: their connections are closed (Redis frees the old
    // users with their clients).
    CloseClientsOf(c, [](const std::string& name) { return name != "default"; });
    return out.Ok();
  }
  if (sub == "cat" && c.argc() == 2) {
    const auto cats = AclCategories();
    out.ArrayHeader(cats.size());
    for (std::string_view cat : cats) out.Bulk(cat);
    return;
  }
  if (sub == "cat" && c.argc() == 3) {
    std::string want = ToLower(c.arg(2));
    bool known = false;
    for (std::string_view cat : AclCategories()) known |= cat == want;
    if (!known) return c.Error("Unknown category '" + std::string(c.arg(2).substr(0, 128)) + "'");
    want = "@" + want;
    auto has = [&](std::string_view cats) {
      size_t pos = 0;
      while ((pos = cats.find(want, pos)) != std::string_view::npos) {
        const size_t end = pos + want.size();
        if (end == cats.size() || cats[end] == ' ') return true;
        pos = end;
      }
      return false;
    };
    std::vector<std::string> names;
    for (const Command& cmd : AllCommands()) {
      if (has(cmd.acl_categories)) names.emplace_back(cmd.name);
      for (const Command& s : cmd.subcommands) {
        if (has(s.acl_categories.empty() ? cmd.acl_categories : s.acl_categories)) {
          names.push_back(std::string(cmd.name) + "|" + std::string(s.name));
        }
      }
    }
    out.ArrayHeader(names.size());
    for (const std::string& n : names) out.Bulk(n);
    return;
  }
  if (sub == "genpass" && (c.argc() == 2 || c.argc() == 3)) {
    int64_t bits = 256;
    if (c.argc() == 3 && !resp::ParseInt64(c.arg(2), &bits)) return c.Error(err::kNotInteger);
    if (bits <= 0 || bits > 4096) {
      return c.Error("ACL GENPASS argument must be the number of bits for the output password, a positive "
                     "number up to 4096");
    }
    const auto chars = static_cast<size_t>((bits + 3) / 4);
    std::vector<unsigned char> random((chars + 1) / 2);
    if (RAND_bytes(random.data(), static_cast<int>(random.size())) != 1) {
      return c.Error("could not read random bytes");
    }
    std::string pass = HexEncode(random);
    pass.resize(chars);
    return out.Bulk(pass);
  }
  if (sub == "log" && (c.argc() == 2 || c.argc() == 3)) return AclLog(c);
  if (sub == "dryrun" && c.argc() >= 4) return AclDryrun(c);
  if (sub == "help" && c.argc() == 2) {
    return Help(c, {"CAT [<category>]",
                    "    List all commands that belong to <category>, or all command categories",
                    "    when no category is specified.",
                    "DELUSER <username> [<username> ...]",
                    "    Delete a list of users.",
                    "DRYRUN <username> <command> [<arg> ...]",
                    "    Returns whether the user can execute the given command without executing the command.",
                    "GETUSER <username>",
                    "    Get the user's details.",
                    "GENPASS [<bits>]",
                    "    Generate a secure 256-bit user password. The optional `bits` argument can",
                    "    be used to specify a different size.",
                    "LIST",
                    "    Show users details in config file format.",
                    "LOAD",
                    "    Reload users from the ACL file.",
                    "LOG [<count> | RESET]",
                    "    Show the ACL log entries.",
                    "SAVE",
                    "    Save the current config to the ACL file.",
                    "SETUSER <username> <attribute> [<attribute> ...]",
                    "    Create or modify a user with the specified attributes.",
                    "USERS",
                    "    List all the registered usernames.",
                    "WHOAMI",
                    "    Return the current connection username."});
  }
  return c.Error(SubcommandSyntaxError(c));
}

}  // namespace

void RegisterAclCommands(std::vector<Command>* t) {
  t->push_back({"acl", -2, 0, 0, 0, 0, Acl, "@slow",
                {{"cat", -2, kNoScript, 0, 0, 0, nullptr, "@slow"},
                 {"deluser", -3, kAdmin | kNoScript, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                 {"dryrun", -4, kAdmin | kNoScript, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                 {"genpass", -2, kNoScript, 0, 0, 0, nullptr, "@slow"},
                 {"getuser", 3, kAdmin | kNoScript, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                 {"help", 2, 0, 0, 0, 0, nullptr, "@slow"},
                 {"list", 2, kAdmin | kNoScript, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                 {"load", 2, kAdmin | kNoScript, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                 {"log", -2, kAdmin | kNoScript, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                 {"save", 2, kAdmin | kNoScript, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                 {"setuser", -3, kAdmin | kNoScript, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                 {"users", 2, kAdmin | kNoScript, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                 {"whoami", 2, kNoScript, 0, 0, 0, nullptr, "@slow"}}});
}

}  // namespace keg::server
