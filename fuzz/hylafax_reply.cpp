// libFuzzer target: HylaFAX client-protocol replies (hfaxd, FTP-style) as
// the fax adapter reads them, parse_reply with Dialect::ftp fed in pieces
// (reply_stream.hpp), and then the parsers the adapter applies to a reply's
// text: PASV and EPSV ports, the STOT file name, the job id, the job state.
// The raw bytes also go through parse_job_listing, as the data connection
// of LIST carries them. Each parser's promise in hylafax_protocol.hpp is
// checked, not only that it survives.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "adapters/hylafax/hylafax_protocol.hpp"
#include "reply_stream.hpp"

namespace referrald::fuzz {
namespace {

namespace hylafax = referrald::hylafax;

bool is_digit(char c) { return c >= '0' && c <= '9'; }

void check_text_parsers(std::string_view text) {
  if (const auto port = hylafax::parse_pasv_port(text)) require(*port > 0, "PASV port 0");
  if (const auto port = hylafax::parse_epsv_port(text)) require(*port > 0, "EPSV port 0");
  if (const auto file = hylafax::parse_stot_file(text)) {
    require(!file->empty() && file->front() == '/', "STOT file that is not an absolute path");
    require(file->find_first_of(" \t)") == std::string::npos, "STOT file with a separator in it");
    require(text.find(*file) != std::string_view::npos, "STOT file that is not in the reply");
  }
  if (const auto id = hylafax::parse_job_id(text)) {
    require(!id->empty() && id->size() <= 10 && std::all_of(id->begin(), id->end(), is_digit),
            "job id that is not 1..10 digits");
  }
  const auto state = hylafax::parse_job_state(text);
  if (state != hylafax::JobState::unknown) {
    require(hylafax::parse_job_state(hylafax::to_string(state)) == state, "job state does not round-trip");
  }
  const std::string tag = hylafax::job_tag(text);
  require(tag.size() == text.size(), "job_tag changed the length");
  require(text.empty() || hylafax::quotable(tag), "job_tag made something JPARM cannot quote");
}

void check_listing(std::string_view data) {
  for (const auto& job : hylafax::parse_job_listing(data)) {
    require(!job.id.empty() && std::all_of(job.id.begin(), job.id.end(), is_digit), "listed job id not digits");
    require(job.tag.empty() || job.tag.back() != ' ', "listed job tag with a trailing space");
    require(job.tag.find('\n') == std::string::npos, "listed job tag with a line end");
  }
}

}  // namespace
}  // namespace referrald::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace referrald::fuzz;
  for (const auto& reply : check_reply_stream(data, size, Dialect::ftp)) {
    for (const auto& line : reply.lines) check_text_parsers(line);
  }
  check_listing(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
