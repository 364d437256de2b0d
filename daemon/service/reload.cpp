#include "service/reload.hpp"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <system_error>
#include <thread>

#include "util/private_files.hpp"

namespace referrald {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* outcome_file = "reload-outcome";

bool process_exists(pid_t pid) { return ::kill(pid, 0) == 0 || errno == EPERM; }

}  // namespace

std::optional<fs::path> runtime_directory() {
  const char* variable = std::getenv("RUNTIME_DIRECTORY");
  if (variable == nullptr || variable[0] == '\0') return std::nullopt;
  const std::string text = variable;
  return fs::path(text.substr(0, text.find(':')));
}

void write_reload_outcome(const fs::path& directory, const ReloadOutcome& outcome) {
  const json document = {{"pid", outcome.pid},
                         {"generation", outcome.generation},
                         {"taken", outcome.taken},
                         {"problems", outcome.problems}};
  const std::string text = document.dump() + "\n";
  // A reader sees the old outcome or the new one, never half of one.
  replace_file(directory / outcome_file, text, std::string(outcome_file) + ".new");
}

std::optional<ReloadOutcome> read_reload_outcome(const fs::path& directory) {
  std::ifstream in(directory / outcome_file);
  if (!in) return std::nullopt;
  const json document = json::parse(in, nullptr, false);
  if (document.is_discarded() || !document.is_object()) return std::nullopt;
  try {
    ReloadOutcome o;
    o.pid = document.at("pid").get<pid_t>();
    o.generation = document.at("generation").get<std::uint64_t>();
    o.taken = document.at("taken").get<bool>();
    o.problems = document.at("problems").get<std::vector<std::string>>();
    return o;
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

int request_reload(pid_t pid, const fs::path& directory, std::chrono::milliseconds wait, std::ostream& out,
                   std::ostream& err) {
  const auto before = read_reload_outcome(directory);
  const std::uint64_t last = before && before->pid == pid ? before->generation : 0;
  if (pid <= 0 || ::kill(pid, SIGHUP) != 0) {
    err << "referrald --reload: cannot signal process " << pid << ": " << std::generic_category().message(errno)
        << "\n";
    return 1;
  }
  const auto deadline = std::chrono::steady_clock::now() + wait;
  while (std::chrono::steady_clock::now() < deadline) {
    const auto now = read_reload_outcome(directory);
    if (now && now->pid == pid && now->generation > last) {
      if (now->taken) {
        out << "referrald (pid " << pid << ") reloaded its configuration\n";
        return 0;
      }
      err << "referrald (pid " << pid << ") refused the configuration and keeps running the previous one:\n";
      for (const auto& problem : now->problems) err << problem << "\n";
      return 1;
    }
    if (!process_exists(pid)) {
      err << "referrald --reload: process " << pid << " ended before it answered\n";
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  err << "referrald --reload: no answer from process " << pid << " within "
      << std::chrono::duration_cast<std::chrono::seconds>(wait).count() << " s in "
      << (directory / outcome_file).string()
      << " (is it referrald, started with $RUNTIME_DIRECTORY set?); its log says what it did\n";
  return 1;
}

}  // namespace referrald
