// SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE, SSUBSCRIBE, SUNSUBSCRIBE, PUBLISH, SPUBLISH and
// PUBSUB, as Redis 7.0's pubsub.c. Confirmations are pushes in RESP3 and arrays in RESP2, written
// whatever CLIENT REPLY says (Redis's CLIENT_PUSHING). Thread: the connection's I/O thread, except
// PUBLISH / SPUBLISH, which scripts also run (on the writer thread under `always`).
#include "server/command.h"
#include "server/pubsub.h"
#include "server/session.h"

namespace keg::server {
namespace {

using Kind = PubSub::Kind;

void Confirm(Ctx& c, std::string_view kind, const std::string_view* name, int64_t count) {
  c.out().Push(PubSub::Confirmation(static_cast<int>(c.client().protocol()), kind, name, count));
}

void SubscribeChannels(Ctx& c, Kind kind) {
  ClientSession& me = c.client();
  // Redis refuses SSUBSCRIBE in a transaction (a "DENY BLOCKING" client), and SUBSCRIBE only in
  // scripts, which the kNoScript flag covers.
  if (kind == Kind::kShard && me.in_exec()) return c.Error("SSUBSCRIBE isn't allowed for a DENY BLOCKING client");
  Subscriber* s = me.subscriber();
  for (size_t i = 1; i < c.argc(); ++i) {
    c.server().pubsub.Subscribe(s, kind, c.arg(i));
    const std::string_view name = c.arg(i);
    Confirm(c, kind == Kind::kShard ? "ssubscribe" : "subscribe", &name, kind == Kind::kShard ? s->shard_count() : s->count());
  }
  me.SubscriptionsChanged();
}

void UnsubscribeChannels(Ctx& c, Kind kind) {
  ClientSession& me = c.client();
  Subscriber* s = me.subscriber();
  PubSub& ps = c.server().pubsub;
  const std::string_view verb = kind == Kind::kShard ? "sunsubscribe" : "unsubscribe";
  auto count = [&] { return kind == Kind::kShard ? s->shard_count() : s->count(); };
  if (c.argc() == 1) {
    auto& mine = kind == Kind::kShard ? s->shard_channels : s->channels;
    const std::vector<std::string> all(mine.begin(), mine.end());
    for (const std::string& name : all) {
      ps.Unsubscribe(s, kind, name);
      const std::string_view view = name;
      Confirm(c, verb, &view, count());
    }
    if (all.empty()) Confirm(c, verb, nullptr, count());  // subscribed to nothing: still a reply
  } else {
    for (size_t i = 1; i < c.argc(); ++i) {
      ps.Unsubscribe(s, kind, c.arg(i));
      const std::string_view name = c.arg(i);
      Confirm(c, verb, &name, count());
    }
  }
  me.SubscriptionsChanged();
}

void Subscribe(Ctx& c) { SubscribeChannels(c, Kind::kChannel); }
void Unsubscribe(Ctx& c) { UnsubscribeChannels(c, Kind::kChannel); }
void SSubscribe(Ctx& c) { SubscribeChannels(c, Kind::kShard); }
void SUnsubscribe(Ctx& c) { UnsubscribeChannels(c, Kind::kShard); }

void PSubscribe(Ctx& c) {
  ClientSession& me = c.client();
  Subscriber* s = me.subscriber();
  for (size_t i = 1; i < c.argc(); ++i) {
    c.server().pubsub.SubscribePattern(s, c.arg(i));
    const std::string_view name = c.arg(i);
    Confirm(c, "psubscribe", &name, s->count());
  }
  me.SubscriptionsChanged();
}

void PUnsubscribe(Ctx& c) {
  ClientSession& me = c.client();
  Subscriber* s = me.subscriber();
  PubSub& ps = c.server().pubsub;
  if (c.argc() == 1) {
    const std::vector<std::string> all = s->patterns;
    for (const std::string& p : all) {
      ps.UnsubscribePattern(s, p);
      const std::string_view view = p;
      Confirm(c, "punsubscribe", &view, s->count());
    }
    if (all.empty()) Confirm(c, "punsubscribe", nullptr, s->count());
  } else {
    for (size_t i = 1; i < c.argc(); ++i) {
      ps.UnsubscribePattern(s, c.arg(i));
      const std::string_view name = c.arg(i);
      Confirm(c, "punsubscribe", &name, s->count());
    }
  }
  me.SubscriptionsChanged();
}

void Publish(Ctx& c) {
  c.out().Integer(c.server().pubsub.Publish(Kind::kChannel, c.arg(1), c.arg(2)));
  // Replicas publish it to their own subscribers, as Redis propagates PUBLISH (not a replica's
  // own: its stream is its primary's).
  ReplicationFeed& feed = c.server().repl;
  if (feed.active() && !feed.forwarding() && !c.in_script()) {
    std::string resp;
    AppendCommand(&resp, c.args());
    feed.Append(c.db(), resp);
  }
}
void SPublish(Ctx& c) { c.out().Integer(c.server().pubsub.Publish(Kind::kShard, c.arg(1), c.arg(2))); }

void PubsubCmd(Ctx& c) {
  const std::string sub = ToLower(c.arg(1));
  resp::ReplyBuffer& out = c.out();
  PubSub& ps = c.server().pubsub;
  if (sub == "help" && c.argc() == 2) {
    static constexpr std::string_view kHelp[] = {
        "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "CHANNELS [<pattern>]",
        "    Return the currently active channels matching a <pattern> (default: '*').",
        "NUMPAT",
        "    Return number of subscriptions to patterns.",
        "NUMSUB [<channel> ...]",
        "    Return the number of subscribers for the specified channels, excluding",
        "    pattern subscriptions(default: no channels).",
        "SHARDCHANNELS [<pattern>]",
        "    Return the currently active shard level channels matching a <pattern> (default: '*').",
        "SHARDNUMSUB [<shardchannel> ...]",
        "    Return the number of subscribers for the specified shard level channel(s)",
        "HELP",
        "    Prints this help.",
    };
    out.ArrayHeader(std::size(kHelp));
    for (std::string_view line : kHelp) out.SimpleString(line);
    return;
  }
  if ((sub == "channels" || sub == "shardchannels") && (c.argc() == 2 || c.argc() == 3)) {
    const std::string_view pattern = c.argc() == 3 ? c.arg(2) : std::string_view();
    const std::vector<std::string> names =
        ps.Channels(sub == "channels" ? Kind::kChannel : Kind::kShard, c.argc() == 3 ? &pattern : nullptr);
    out.ArrayHeader(names.size());
    for (const std::string& n : names) out.Bulk(n);
    return;
  }
  if (sub == "numsub" || sub == "shardnumsub") {
    const Kind kind = sub == "numsub" ? Kind::kChannel : Kind::kShard;
    out.ArrayHeader((c.argc() - 2) * 2);
    for (size_t i = 2; i < c.argc(); ++i) {
      out.Bulk(c.arg(i));
      out.Integer(ps.NumSub(kind, c.arg(i)));
    }
    return;
  }
  if (sub == "numpat" && c.argc() == 2) return out.Integer(static_cast<int64_t>(ps.pattern_count()));
  c.Error("unknown subcommand or wrong number of arguments for '" + std::string(c.arg(1).substr(0, 128)) +
          "'. Try PUBSUB HELP.");
}

}  // namespace

void RegisterPubsubCommands(std::vector<Command>* t) {
  // Redis 7.0's flags: pubsub noscript loading stale (PUBLISH: pubsub loading stale fast).
  constexpr uint32_t kSub = kPubsub | kNoScript;  // (while a script is busy: -BUSY, as Redis)
  t->push_back({"subscribe", -2, kSub, 0, 0, 0, Subscribe, "@pubsub @slow"});
  t->push_back({"unsubscribe", -1, kSub, 0, 0, 0, Unsubscribe, "@pubsub @slow"});
  t->push_back({"psubscribe", -2, kSub, 0, 0, 0, PSubscribe, "@pubsub @slow"});
  t->push_back({"punsubscribe", -1, kSub, 0, 0, 0, PUnsubscribe, "@pubsub @slow"});
  t->push_back({"ssubscribe", -2, kSub, 0, 0, 0, SSubscribe, "@pubsub @slow"});
  t->push_back({"sunsubscribe", -1, kSub, 0, 0, 0, SUnsubscribe, "@pubsub @slow"});
  t->push_back({"publish", 3, kPubsub | kFast | kMayReplicate, 0, 0, 0, Publish, "@pubsub @fast"});
  t->push_back({"spublish", 3, kPubsub | kFast | kMayReplicate, 0, 0, 0, SPublish, "@pubsub @fast"});
  t->push_back({"pubsub", -2, 0, 0, 0, 0, PubsubCmd, "@slow",
                {{"channels", -2, kPubsub, 0, 0, 0, nullptr, "@pubsub @slow"},
                 {"numsub", -2, kPubsub, 0, 0, 0, nullptr, "@pubsub @slow"},
                 {"numpat", 2, kPubsub, 0, 0, 0, nullptr, "@pubsub @slow"},
                 {"shardchannels", -2, kPubsub, 0, 0, 0, nullptr, "@pubsub @slow"},
                 {"shardnumsub", -2, kPubsub, 0, 0, 0, nullptr, "@pubsub @slow"},
                 {"help", 2, 0, 0, 0, 0, nullptr, "@slow"}}});
}

}  // namespace keg::server
