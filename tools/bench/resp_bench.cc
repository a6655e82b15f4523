// Micro-benchmarks of src/resp: parsing pipelined requests and encoding replies, one core.
// Reports commands/s (items_per_second) and bytes/s. Run: tools/bench-resp.sh
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "resp/reply_buffer.h"
#include "resp/request_parser.h"

namespace {

using keg::resp::ParseStatus;
using keg::resp::ReplyBuffer;
using keg::resp::RequestParser;

constexpr int kPipeline = 1000;  // commands per buffer, as one large read

// Keys as redis-benchmark -r makes them: "key:" and 12 digits.
std::string Key(int i) {
  std::string digits = std::to_string(i);
  return "key:" + std::string(12 - digits.size(), '0') + digits;
}

std::string Multibulk(const std::vector<std::string>& args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const std::string& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return out;
}

// Parses a buffer of kPipeline commands per iteration, the way a connection does.
void RunParse(benchmark::State& state, const std::string& pipeline) {
  std::string buffer = pipeline;
  RequestParser parser;
  size_t args_seen = 0;
  for (auto _ : state) {
    size_t pos = 0;
    for (;;) {
      auto r = parser.Parse(std::span<char>(buffer.data() + pos, buffer.size() - pos));
      pos += r.consumed;
      if (r.status != ParseStatus::kCommand) break;
      args_seen += parser.args().size();
    }
    if (pos != buffer.size()) state.SkipWithError("pipeline did not parse completely");
    benchmark::DoNotOptimize(args_seen);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * kPipeline);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(buffer.size()));
}

void BM_ParsePipelinedGet(benchmark::State& state) {
  std::string pipeline;
  for (int i = 0; i < kPipeline; ++i) pipeline += Multibulk({"GET", Key(i * 97)});
  RunParse(state, pipeline);
}
BENCHMARK(BM_ParsePipelinedGet);

void BM_ParsePipelinedSet(benchmark::State& state) {
  const std::string value(static_cast<size_t>(state.range(0)), 'x');
  std::string pipeline;
  for (int i = 0; i < kPipeline; ++i) pipeline += Multibulk({"SET", Key(i * 97), value});
  RunParse(state, pipeline);
}
BENCHMARK(BM_ParsePipelinedSet)->Arg(3)->Arg(100);

void BM_ParsePipelinedInlinePing(benchmark::State& state) {
  std::string pipeline;
  for (int i = 0; i < kPipeline; ++i) pipeline += "PING\r\n";
  RunParse(state, pipeline);
}
BENCHMARK(BM_ParsePipelinedInlinePing);

// Encodes kPipeline replies, then gathers and consumes them as one write would.
template <typename Fill>
void RunEncode(benchmark::State& state, Fill fill) {
  ReplyBuffer out;
  iovec iov[64];
  size_t bytes = 0;
  for (auto _ : state) {
    for (int i = 0; i < kPipeline; ++i) fill(out, i);
    bytes += out.size();
    while (!out.empty()) {
      const size_t n = out.Gather(iov);
      size_t len = 0;
      for (size_t j = 0; j < n; ++j) len += iov[j].iov_len;
      benchmark::DoNotOptimize(iov[0].iov_base);
      out.Consume(len);
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * kPipeline);
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}

void BM_EncodeOk(benchmark::State& state) {
  RunEncode(state, [](ReplyBuffer& out, int) { out.Ok(); });
}
BENCHMARK(BM_EncodeOk);

void BM_EncodeInteger(benchmark::State& state) {
  RunEncode(state, [](ReplyBuffer& out, int i) { out.Integer(i * 7919); });
}
BENCHMARK(BM_EncodeInteger);

void BM_EncodeBulk(benchmark::State& state) {
  const std::string value(static_cast<size_t>(state.range(0)), 'v');
  RunEncode(state, [&value](ReplyBuffer& out, int) { out.Bulk(value); });
}
BENCHMARK(BM_EncodeBulk)->Arg(3)->Arg(100)->Arg(1024);

void BM_EncodeNull(benchmark::State& state) {
  RunEncode(state, [](ReplyBuffer& out, int) { out.Null(); });
}
BENCHMARK(BM_EncodeNull);

}  // namespace

BENCHMARK_MAIN();
