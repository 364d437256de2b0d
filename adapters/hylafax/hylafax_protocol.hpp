// Pure pieces of the HylaFAX client protocol (hfaxd, port 4559): reading
// what the server's reply texts carry. No I/O; unit-tested.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace referrald::hylafax {

// "227 Entering passive mode (127,0,0,1,195,41)" -> 49961. Only the port is
// taken: the client connects to the control connection's peer, never to an
// address the server names. nullopt unless six numbers 0..255 and port > 0.
std::optional<std::uint16_t> parse_pasv_port(std::string_view text);

// "229 Entering Extended Passive Mode (|||49961|)" -> 49961 (RFC 2428).
std::optional<std::uint16_t> parse_epsv_port(std::string_view text);

// "150 FILE: /tmp/doc2.pdf (Opening new data connection)." -> "/tmp/doc2.pdf".
std::optional<std::string> parse_stot_file(std::string_view text);

// "200 New job created: jobid: 77 groupid: 77." -> "77"; also "Job 77 submitted."
std::optional<std::string> parse_job_id(std::string_view text);

// Job states as JPARM STATE names them.
enum class JobState { suspended, pending, sleeping, blocked, ready, active, done, failed, unknown };
JobState parse_job_state(std::string_view text);
// The one-letter form of a job listing's %a (T P S B W R D F).
JobState job_state_from_symbol(char symbol);
std::string_view to_string(JobState state);

// One line of `LIST sendq|doneq` with JOBFMT "%j|%a|%J" (id, state, job tag)
// or "%j|%a|%S" (id, state, sender): `tag` is the third field, whichever.
struct ListedJob {
  std::string id;
  JobState state = JobState::unknown;
  std::string tag;
};
inline constexpr std::string_view job_listing_format = "%j|%a|%J";
inline constexpr std::string_view sender_listing_format = "%j|%a|%S";
std::vector<ListedJob> parse_job_listing(std::string_view data);

// A value is fit for a quoted JPARM argument: no '"', no '\\', no control character,
// not empty. Configuration values are checked with this at start-up.
bool quotable(std::string_view value);

// A job tag built only from [A-Za-z0-9._-] (anything else becomes '_'), so it
// survives quoting and the '|' separated listing unchanged.
std::string job_tag(std::string_view identity);

}  // namespace referrald::hylafax
