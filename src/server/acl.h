// ACL users, as Redis 7.0's ACL: who may authenticate with which passwords, and which commands,
// keys and channels each user may use. keg has Redis's root permissions of a user (no selectors).
//
// A user is immutable once published: ACL SETUSER builds a new AclUser and swaps it in, and bumps
// version(); each connection holds a shared_ptr to its user and looks it up again when the version
// changed, so a change applies to connections already authenticated as that user (as in Redis),
// at their next command.
//
// Thread: any. The registry and the log have their own lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "server/command.h"

namespace keg::server {

struct AclUser {
  std::string name;
  bool enabled = false;
  bool nopass = false;
  int sanitize_payload = 0;  ///< 0: not set, 1: sanitize-payload, 2: skip-sanitize-payload (shown only)
  std::vector<std::string> passwords;  ///< SHA-256 of each password in lower-case hex, as added

  /// One flag per command and subcommand (Command::id): may run it.
  std::vector<uint8_t> commands;
  /// +@all was given and no command was removed since: the per-command check is skipped.
  bool all_commands = false;
  /// +@all (not -@all) was the last word on all commands: Redis's reserved "future commands" bit,
  /// which decides whether ACL LIST describes the commands from +@all or from -@all.
  bool future_commands = false;
  /// First arguments allowed for a command whose flag is clear (+select|0).
  std::map<uint32_t, std::vector<std::string>> first_args;

  enum Perm : uint8_t { kKeyRead = 1, kKeyWrite = 2 };
  struct KeyPattern {
    std::string pattern;
    uint8_t perms;  // kKeyRead | kKeyWrite
  };
  bool all_keys = false;
  std::vector<KeyPattern> keys;
  bool all_channels = false;
  std::vector<std::string> channels;

  /// Every command on every key: the per-command check is skipped.
  bool unrestricted() const { return all_commands && all_keys && all_channels; }
};

/// Why a command is refused.
enum class AclDenial { kNone, kCommand, kKey, kChannel };

/// Checks `args` (a whole command line; cmd is its command, sub its subcommand or null) against
/// `user`. On a key denial *arg_index is the key's argument index.
AclDenial AclCheck(const AclUser& user, const Command& cmd, const Command* sub,
                   std::span<const std::string_view> args, size_t* arg_index);

/// Whether `user` may use `channel` (Redis's ACLCheckChannelAgainstList): a channel must match
/// one of the user's patterns; a pattern being subscribed (`literal`) must be one of them.
bool AclChannelAllowed(const AclUser& user, std::string_view channel, bool literal);

/// The keys of a command line and what each is used for (Redis 7.0's key-spec flags: "RO", "RW",
/// "OW", "RM", then "access", "update", "insert", "delete"), for COMMAND GETKEYSANDFLAGS and ACL.
/// `cmd` is the command or subcommand that runs; movable keys (MIGRATE ... KEYS) included.
struct KeyRef {
  size_t index;
  std::vector<std::string_view> flags;
};
std::vector<KeyRef> CommandKeys(const Command& cmd, std::span<const std::string_view> args);
/// COMMAND INFO's key specifications of `cmd` (Redis 7's format: flags, begin_search, find_keys):
/// range specs from its first / last / step keys, keynum specs for the commands whose keys follow
/// a count (EVAL, FCALL, SINTERCARD), with the flags CommandKeys gives.
void KeySpecsReply(resp::ReplyBuffer& out, const Command& cmd);

class AclRegistry {
 public:
  AclRegistry();

  /// Applies rules to user `name` (created, disabled and with no permissions, when new), all or
  /// nothing. Returns "" or Redis's error text ("Error in ACL SETUSER modifier '...': ...").
  std::string SetUser(std::string_view name, std::span<const std::string_view> rules);
  /// Removes users (never "default"); returns how many existed.
  int DeleteUsers(std::span<const std::string_view> names);
  std::shared_ptr<const AclUser> Get(std::string_view name) const;
  std::shared_ptr<const AclUser> Default() const { return Get("default"); }
  /// Users by name (sorted, as Redis's rax).
  std::vector<std::shared_ptr<const AclUser>> Users() const;
  /// True when `pass` is one of the user's passwords (or the user is nopass) and the user is on.
  bool CheckCredentials(std::string_view name, std::string_view pass) const;
  /// ACL LOAD, and the aclfile at start: replaces every user with those of the file at `path`
  /// (Redis's format; `shown` names it in errors), all or nothing. A file without "default" gets
  /// the default one a new server has. Returns "" or Redis's errors ("<file>:<line>: ...",
  /// ending "WARNING: ACL errors detected, no change to the previously active ACL rules was
  /// performed"). The caller closes the connections of every user but default (Redis frees
  /// the old users and their clients).
  std::string LoadFile(const std::string& path, std::string_view shown);
  /// ACL SAVE: writes every user to `path` (a temporary file, fsynced, renamed over it). False
  /// with the reason logged (file, errno).
  bool SaveFile(const std::string& path) const;
  /// CONFIG SET requirepass: the default user's password becomes `pass` ("" = nopass).
  void SetDefaultPassword(std::string_view pass);
  /// Bumped by every change; a connection compares it to refresh its user.
  uint64_t version() const { return version_.load(std::memory_order_acquire); }

  /// "user NAME flags... #hash ~keys &channels +@commands" (ACL LIST) and its parts (ACL GETUSER).
  static std::string Describe(const AclUser& u);
  static std::string DescribeCommands(const AclUser& u);
  static std::string DescribeKeys(const AclUser& u);
  static std::string DescribeChannels(const AclUser& u);

  // ---- ACL LOG ----
  struct LogEntry {
    uint64_t count = 1;
    std::string reason;   // command, key, channel, auth
    std::string context;  // toplevel, multi
    std::string object;
    std::string username;
    int64_t ctime_ms = 0;
    std::string client_info;
  };
  void Log(LogEntry entry);
  std::vector<LogEntry> LogEntries(size_t count) const;
  void ResetLog();
  std::atomic<int64_t> log_max_len{128};  ///< acllog-max-len

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<const AclUser>, std::less<>> users_;
  std::atomic<uint64_t> version_{1};
  std::string applied_requirepass_;
  mutable std::mutex log_mu_;
  std::deque<LogEntry> log_;  // newest first
};

/// The ACL LOG entry of a refused command (AclCheck's `denial` and key index): reason, object
/// (the command's full name, or the key / channel argument), `context` (toplevel, multi, lua),
/// user and time; the caller adds client_info.
AclRegistry::LogEntry AclDenialEntry(AclDenial denial, const Command& cmd, const Command* sub,
                                     std::span<const std::string_view> args, size_t index, std::string context,
                                     std::string username);

struct ServerState;
/// The aclfile's path ("" when none is configured): a relative one is taken from `dir`. *shown
/// (if given): the path as configured, for messages.
std::string AclFilePath(ServerState& s, std::string* shown = nullptr);

/// acl-pubsub-default: whether new users (and `reset`) start with every channel. Any thread.
void SetAclPubsubDefault(bool all_channels);

/// ACL categories in Redis's order (ACL CAT).
std::span<const std::string_view> AclCategories();
/// Lower-case hex SHA-256 (how users' passwords are kept).
std::string Sha256Hex(std::string_view data);
/// Lower-case hex of bytes.
std::string HexEncode(std::span<const unsigned char> bytes);

}  // namespace keg::server
