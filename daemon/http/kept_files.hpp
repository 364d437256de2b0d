// Files a referrer chose on a form that came back with errors elsewhere,
// held for that form (its browser and submission token) so that they need
// not be chosen again: in this process's memory only (never on disk, never
// logged), bounded in bytes and in forms, and let go after a while.
// docs/attachments.md, "The web form".
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace referrald::http {

class KeptFiles {
 public:
  using Clock = std::chrono::steady_clock;

  struct File {
    std::string id;            // 32 hex characters, random: what the form sends back
    std::string title;         // the file's name as the browser gave it (may name the patient)
    std::string data;          // the bytes
    std::string content_type;  // as the inspection found it
  };

  struct Limits {
    std::size_t max_bytes = 256 * 1024 * 1024;  // all forms' files together
    std::size_t max_forms = 64;
    Clock::duration max_age = std::chrono::hours(2);  // since the form last came back
  };

  struct Found {
    std::vector<File> files;  // in the order asked for
    std::size_t missing = 0;  // ids no longer held (let go after max_age, or to make room)
  };

  explicit KeptFiles(Limits limits) : limits_(limits) {}
  KeptFiles() : KeptFiles(Limits{}) {}
  ~KeptFiles();
  KeptFiles(const KeptFiles&) = delete;
  KeptFiles& operator=(const KeptFiles&) = delete;

  // The files held for `form` under these ids, copied.
  Found find(const std::string& form, const std::vector<std::string>& ids, Clock::time_point now);

  // Holds exactly `files` for `form` from now on (what was held before and
  // is not among them is let go); a file without an id gets one. Older
  // forms' files are let go to make room. False, and nothing held for
  // `form`, when these files alone are over the bound.
  bool keep(const std::string& form, std::vector<File>& files, Clock::time_point now);

  // Lets go of everything held for `form` (its referral is stored).
  void forget(const std::string& form);

  std::size_t bytes() const;
  const Limits& limits() const { return limits_; }

 private:
  struct Entry {
    std::vector<File> files;
    std::size_t bytes = 0;
    Clock::time_point kept_at;
  };
  void drop(std::map<std::string, Entry>::iterator it);  // wipes the bytes
  void expire(Clock::time_point now);

  Limits limits_;
  mutable std::mutex mutex_;
  std::map<std::string, Entry> entries_;
  std::size_t bytes_ = 0;
};

}  // namespace referrald::http
