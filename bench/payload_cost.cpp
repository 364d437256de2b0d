// The CPU cost of encryption at rest per referral: seal_payload and
// open_payload (AES-256-GCM, store/payload.hpp) on bench/referral-2k.json,
// in CPU time (getrusage), so a busy machine changes the figure little.
//
//   payload_cost [iterations]      (default 100000)
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "store/payload.hpp"

using namespace referrald;

namespace {

double cpu_seconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  const long iterations = argc > 1 ? std::atol(argv[1]) : 100000;
  std::ifstream in(REFERRALD_SOURCE_DIR "/bench/referral-2k.json", std::ios::binary);
  const std::string document{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  std::vector<KeyFileProblem> problems;
  const auto keys = parse_key_file("bench " + std::string(64, '7') + "\n", problems);
  const std::string id = "R-20261128-7K3M9-TZQXA";

  std::size_t sink = 0;
  const double t0 = cpu_seconds();
  std::string sealed;
  for (long i = 0; i < iterations; ++i) {
    sealed = store::seal_payload(keys.get(), document, id);
    sink += sealed.size();
  }
  const double t1 = cpu_seconds();
  for (long i = 0; i < iterations; ++i) sink += store::open_payload(keys.get(), sealed, id).size();
  const double t2 = cpu_seconds();
  std::printf("document %zu bytes, %ld iterations\n", document.size(), iterations);
  std::printf("seal: %.2f us per referral (CPU)\n", (t1 - t0) / static_cast<double>(iterations) * 1e6);
  std::printf("open: %.2f us per referral (CPU)\n", (t2 - t1) / static_cast<double>(iterations) * 1e6);
  return sink == 0 ? 1 : 0;
}
