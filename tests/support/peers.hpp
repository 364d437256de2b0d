// Real peers for integration tests (docs/test-peers.md): Debian's aiosmtpd
// behind tests/peers/smtp_server.py and a private HylaFAX server (fax and
// SNPP pager gateway), each on free loopback ports and killed, with its whole
// process group, when the object goes away (also when a test fails).
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "support/harness.hpp"

namespace referrald::test {

// Debian's interpreter, the one with aiosmtpd (another python3 may come first on PATH).
constexpr const char* python3_path = "/usr/bin/python3";

// A self-signed certificate for localhost / 127.0.0.1 (its own CA), as
// cert.pem and key.pem in dir, made by the openssl CLI.
void make_certificate(const std::filesystem::path& dir);

// What a shell command prints on stdout.
std::string output_of(const std::string& command);

// tests/peers/smtp_server.py: required STARTTLS and AUTH (user "referrald",
// password "s3cret") unless tls is false; each message in a Maildir and its
// SMTP envelope in envelopes.jsonl.
class MailServer {
 public:
  struct Options {
    bool tls = true;  // required STARTTLS + AUTH; false: neither
    int tempfail = 1;
  };

  explicit MailServer(Options options);
  ~MailServer();
  MailServer(const MailServer&) = delete;
  MailServer& operator=(const MailServer&) = delete;

  unsigned short port() const { return port_; }
  std::filesystem::path ca_file() const { return dir_ / "cert.pem"; }
  std::filesystem::path maildir() const { return dir_ / "Maildir"; }
  // One JSON object per accepted message: {"mail_from", "rcpt_tos", "message_id"}.
  std::filesystem::path envelopes() const { return dir_ / "envelopes.jsonl"; }
  std::string log() const;
  std::vector<std::filesystem::path> messages() const;
  // While on, the server answers every RCPT with 451 (its own temporary
  // failure, not a mock): the switch is a file the server looks for.
  void refuse_temporarily(bool on);
  // While on, the server stores each message and then waits 30 s before it
  // answers (its own slowness, not a mock): the sender is still sending a
  // delivery whose mail is already in the Maildir.
  void confirm_slowly(bool on);
  // How many stored mails carry each Message-ID (without the angle brackets).
  std::map<std::string, int> message_ids() const;

 private:
  TempDir dir_;
  unsigned short port_;
  std::unique_ptr<Process> process_;
};

// The Message-ID of a stored mail, without the angle brackets.
std::string message_id_of(const std::filesystem::path& mail);

// Each leaf part of a stored mail as Python's email module decodes it:
// {"defects", "parts": [{"type", "filename", "sha256" (hashlib's, of its
// bytes), "text"}]}. `work` is a directory for the script.
nlohmann::json mail_parts(const std::filesystem::path& mail, const std::filesystem::path& work);
// An smtp [[target]] table that sends to a MailServer with STARTTLS,
// verifying its certificate, and AUTH as the user it expects.
struct SmtpTarget {
  std::string name = "office-email";
  std::vector<std::string> to{"referrals@hospital.example"};
  std::string password = "s3cret\n";  // what the password file holds
  std::filesystem::path ca_file;      // default: the server's own certificate
};
// The table as TOML; writes its password file, secrets/smtp-password.
std::string smtp_target(const MailServer& server, const std::filesystem::path& secrets, const SmtpTarget& target = {});

// One job file (sendq/qN or doneq/qN) as "key:value" lines.
struct QueuedJob {
  std::filesystem::path file;
  std::multimap<std::string, std::string> fields;
  std::string get(const std::string& key) const;
};

// faxq and hfaxd on a private copy of the spool (tests/peers/hylafax-spool.sh
// prepare). With no modem, jobs stay queued, where a test reads them.
class HylafaxServer {
 public:
  HylafaxServer();
  void start();

  unsigned short fax_port() const { return fax_port_; }
  unsigned short snpp_port() const { return snpp_port_; }
  const std::filesystem::path& spool() const { return spool_; }

  // Every job in sendq and doneq.
  std::vector<QueuedJob> jobs() const;
  std::vector<QueuedJob> jobs_where(const std::string& key, const std::string& value) const;

  // HylaFAX's own shutdown file (hylafax-shutdown(5)): while it is there,
  // hfaxd answers SNPP clients "421 SNPP server unavailable; try again later"
  // and takes fax-protocol logins only from administrators.
  void shut_down(bool on);

 private:
  TempDir dir_;
  std::filesystem::path spool_;
  unsigned short fax_port_ = 0;
  unsigned short snpp_port_ = 0;
  std::unique_ptr<Process> faxq_;
  std::unique_ptr<Process> hfaxd_;
};

// tests/peers/fault_proxy.py in front of a real peer on 127.0.0.1:upstream.
// Faults are switched while it runs; see the script for what each does.
class FaultProxy {
 public:
  explicit FaultProxy(unsigned short upstream);
  ~FaultProxy();
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  unsigned short port() const { return port_; }
  // Sends one control command ("pass", "down", "hang", "drop 8",
  // "drop-at JSUBM", "reply 421 ...", "stats"); returns the answer line.
  // Throws when the proxy does not take it.
  std::string command(const std::string& line);
  std::string log() const { return process_->log(); }

 private:
  TempDir dir_;
  unsigned short port_;
  unsigned short control_port_;
  std::unique_ptr<Process> process_;
};

}  // namespace referrald::test
