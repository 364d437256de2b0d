// Integration-test support: temporary directories, free loopback ports, the
// real referrald binary as a child process, and a real HTTP client (libcurl).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace referrald::test {

// A fresh directory under /tmp, removed (with everything in it) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

void write_file(const std::filesystem::path& file, const std::string& text);
std::string read_file(const std::filesystem::path& file);
// Every byte SQLite keeps for the database `db`: the file, its WAL and shared
// index (what a copy of the disk would hold).
std::string database_bytes(const std::filesystem::path& db);

// A TCP port on 127.0.0.1 that was free a moment ago.
unsigned short free_port();

// Waits until something accepts TCP connections on 127.0.0.1:port.
bool wait_for_port(unsigned short port, std::chrono::milliseconds timeout);

std::filesystem::path source_dir();
std::filesystem::path binary_dir();
// This build's referrald, or the one $REFERRALD_BINARY names (e.g. a Release
// build for a long run of an integration test built in Debug).
std::filesystem::path referrald_binary();

// A child process whose stdout+stderr go to a log file; killed (whole
// process group) on destruction, so a failing test never leaves it running.
class Process {
 public:
  // `in_child` runs in the child between fork and exec (after it made its
  // own process group): e.g. a change of user and a parent-death signal.
  Process(std::vector<std::string> argv, std::filesystem::path log_file,
          std::map<std::string, std::string> extra_env = {}, const std::function<void()>& in_child = {});
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  void signal(int signo);
  // Waits for exit; returns the exit status (or 128+signal), nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  // SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit status.
  int stop(std::chrono::milliseconds timeout = std::chrono::seconds(15));
  void kill9();
  std::string log() const;

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
  std::filesystem::path log_file_;
};

struct HttpResult {
  long status = 0;  // 0 when no response arrived
  std::string body;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string error;                           // libcurl's message when status is 0
};

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  std::optional<std::string> body;
  std::string ca_file;  // verify the server against this CA (HTTPS)
  std::chrono::milliseconds timeout{10000};
  // The client's own address, e.g. "127.0.0.2": Linux routes all of
  // 127.0.0.0/8 to loopback, so one machine can be several clients.
  std::string source_address;
};

HttpResult http(const HttpRequest& request);

// A client that keeps its connection open between requests (HTTP/1.1
// keep-alive), as an EHR's integration engine does. One per thread.
class HttpClient {
 public:
  HttpClient();
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;
  HttpResult send(const HttpRequest& request);

 private:
  void* curl_;  // CURL*, kept out of this header
};

// A raw TCP client on 127.0.0.1 for what libcurl will not do: a request head
// one byte at a time, targets it would normalise, pipelined requests whose
// answers it never reads. Closed on destruction.
class RawClient {
 public:
  // Connects (blocking) from `source` (empty: any) with, when non-zero, a
  // receive buffer of `receive_buffer` bytes; throws when it cannot.
  explicit RawClient(unsigned short port, const std::string& source = "", int receive_buffer = 0);
  ~RawClient();
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  // Sends what the socket takes without waiting; false once the peer has
  // closed or reset the connection.
  bool send(std::string_view bytes);
  // The same, saying how many bytes the socket took (0 when it is full);
  // nullopt once the peer has closed or reset the connection.
  std::optional<std::size_t> send_some(std::string_view bytes);
  // Reads what has arrived without waiting; true once the peer has closed
  // (EOF or reset). What arrived is kept in received().
  bool peer_closed();
  // Reads until the peer closes or `timeout` passes; returns peer_closed().
  bool wait_closed(std::chrono::milliseconds timeout);
  const std::string& received() const { return received_; }

 private:
  int fd_ = -1;
  bool closed_ = false;
  std::string received_;
};

// The status code in a raw response ("HTTP/1.1 404 Not Found..."), 0 if none.
int status_of(std::string_view response);
// Sends all of `bytes` on `client` (bounded: 30 s).
bool send_all(RawClient& client, std::string_view bytes);
// Sends every byte of `bytes`, waiting while the peer reads (bounded: 60 s):
// a body larger than the socket's buffers arrives whole. False once the
// peer has closed or reset the connection.
bool send_whole(RawClient& client, std::string_view bytes);

// A request sent on its own connection exactly as given; the raw response.
std::string raw_request(unsigned short port, const std::string& request,
                        std::chrono::milliseconds timeout = std::chrono::seconds(5));

// A process's open file descriptors and resident memory, from /proc.
std::size_t open_fds(pid_t pid);
long vm_rss_kb(pid_t pid);

// The SHA-256 (hex) of `text`, computed by the openssl CLI: independent of
// referrald's own code (the form an api_keys entry takes after "sha256:").
std::string openssl_sha256_hex(const std::string& text);
// `bytes` in base64 on one line, by the openssl CLI (independent of
// referrald's decoder).
std::string openssl_base64(const std::string& bytes);

// The daemon under test, on a configuration written into its own directory.
// The first sanitizer report (ASan, LSan, UBSan, TSan) in a process's log,
// from its first line on; nullopt when the log holds none.
std::optional<std::string> sanitizer_report(const std::string& log);

class Daemon {
 public:
  static constexpr const char* api_token = "integration-test-token";

  struct Options {
    std::string extra_http;    // more lines for [http]
    std::string extra_config;  // more tables appended at the end
    bool tls = false;
    std::filesystem::path database;  // default: <dir>/var/referrald.db
    // Lines for [storage] in place of `database = ...`: another backend
    // (tests/support/postgres.hpp).
    std::string storage;
    bool with_default_targets = true;
    // More environment for the daemon: NOTIFY_SOCKET, WATCHDOG_USEC, JOURNAL_STREAM ...
    std::map<std::string, std::string> env;
    std::filesystem::path web;  // the form's pages; default: the source tree's web/
    // Referral documents encrypted at rest under a fresh key in
    // key_file() (0600), as in production; off: stored in the clear.
    bool encryption = true;
  };

  explicit Daemon(Options options);
  ~Daemon();

  // Starts referrald and waits until /healthz answers; fails the test (via
  // an exception) if it does not within 15 s.
  void start();
  // Starts referrald and returns at once (for tests of start-up itself).
  void launch();
  // Environment for the next start.
  void set_env(const std::string& name, const std::string& value) { options_.env[name] = value; }
  // Where the next start's stdout and stderr go (the current one's, while running).
  std::filesystem::path log_file() const;
  int stop();  // SIGTERM; returns the exit status
  void kill9();
  bool running() { return process_ && process_->running(); }

  std::string base_url() const;
  const std::filesystem::path& dir() const { return dir_.path(); }
  std::filesystem::path config_file() const { return dir_ / "referrald.toml"; }
  std::filesystem::path key_file() const { return dir_ / "encryption-keys"; }  // with Options::encryption
  std::filesystem::path database() const { return database_; }
  std::filesystem::path spool(const std::string& target) const { return dir_ / "spool" / target; }
  std::filesystem::path ca_file() const { return dir_ / "tls" / "cert.pem"; }
  std::string log() const { return process_ ? process_->log() : std::string(); }
  unsigned short port() const { return port_; }
  Process* process() { return process_.get(); }

  // POSTs to the JSON API with the test key; a Content-Type among the extra
  // headers replaces the default application/json.
  HttpResult post_referral(const std::string& body, std::vector<std::string> extra_headers = {});
  HttpResult get(const std::string& path, bool authorized = true);
  // The referral's stored document as `referralctl show --json` reads it
  // back (decrypted); fails the test and returns null if it cannot.
  nlohmann::json stored_document(const std::string& id) const;

 private:
  Options options_;
  TempDir dir_;
  unsigned short port_;
  std::filesystem::path database_;
  std::unique_ptr<Process> process_;
  int generation_ = 0;
};

// The web form as a browser sends it (application/x-www-form-urlencoded).
using Fields = std::vector<std::pair<std::string, std::string>>;
std::string url_encode(std::string_view s);
std::string encode(const Fields& fields);
// Replaces the named field's value, or adds the field.
void set_field(Fields& fields, const std::string& name, const std::string& value);
// The value of the hidden input `name` in a page ("" when there is none).
std::string hidden_value(const std::string& page, const std::string& name);

// A complete referral as a coordinator would type it into the form (ASPS,
// from Jonesboro, AR).
Fields valid_fields();

// One browser as libcurl plays it: its cookie jar (the CSRF cookie) and the
// tokens of the form it last loaded.
struct Browser {
  explicit Browser(Daemon& d) : daemon(d) {}

  Daemon& daemon;
  std::string cookie;  // "csrf=…"
  std::string csrf;
  std::string submission;
  HttpResult page;

  std::string ca() const;
  // GET /: keeps the cookie and the tokens.
  HttpResult open_form();
  // POST /referrals with the tokens (unless with_tokens is false) and the fields.
  HttpResult post(const Fields& fields, std::vector<std::string> headers = {}, bool with_tokens = true);
  HttpResult post_raw(const std::string& body, std::vector<std::string> headers = {},
                      const std::string& content_type = "application/x-www-form-urlencoded");
  HttpResult get(const std::string& path);
};
// "<id> <64 hex digits>": a new random AES-256 key line for a key file,
// made by the openssl CLI (independent of referrald's own code).
std::string new_key_line(const std::string& id);
// Writes a key file (mode 0600, as referrald requires).
void write_key_file(const std::filesystem::path& file, const std::string& text);

// The real referralctl binary, run with stdout and stderr captured (not a
// terminal), a clean colour and sudo environment plus `env`, and a
// watchdog that fails the test after 60 s.
struct CtlRun {
  int status = -1;
  std::string out;
  std::string err;
  nlohmann::json parsed() const;
};
std::filesystem::path referralctl_binary();
CtlRun ctl(const std::vector<std::string>& args, const std::map<std::string, std::string>& env = {});
// Any program run the same way (e.g. `referrald --reload`).
CtlRun run_program(const std::filesystem::path& program, const std::vector<std::string>& args,
                   const std::map<std::string, std::string>& env = {});
std::string describe(const CtlRun& r);  // exit status, stdout and stderr, for a failure message

// Reads a sample referral from tests/data.
std::string sample(const std::string& name);
// The value of one series (its name and labels exactly, e.g.
// `referrald_referrals{status="received"}`) in /metrics text; -1 if absent.
double metric(const std::string& text, const std::string& series);
// A file of tests/data/attachments (its README says what each is).
std::string attachment_fixture(const std::string& name);
// A one-page PDF of at least `size` bytes: its page's content stream (text,
// then comment lines, which a content stream may hold) carries the bulk, so
// its objects, xref and trailer lie in different spool blocks.
std::string large_pdf(std::size_t size);
// {"title", "content_type", "data"}: one item of a referral's "attachments".
nlohmann::json attachment_item(const std::string& title, const std::string& bytes,
                               const std::string& declared = "application/pdf");

// A valid referral with the given birth date and diagnosis (for rule tests).
std::string referral_json(const std::string& given_name, const std::string& birth_date,
                          const std::string& diagnosis = "Alveolar soft part sarcoma",
                          const std::string& urgency = "routine");

// The first column of the first row of `sql` as an integer, read with the
// sqlite3 C API directly (the test checks the file, not referrald's store
// code); -1 when the database cannot be read.
long long count_rows(const std::filesystem::path& db, const std::string& sql);
// The same for any statement, on a read-write connection: the first column
// of its first row, or the number of rows it changed when it returns none
// (an UPDATE that breaks a row on purpose); -1 when it cannot run.
long long scalar(const std::filesystem::path& db, const std::string& sql);

// The first column of the first row of `sql` as text (NULL as ""), read the
// same way; nullopt for no row or a database that cannot be read.
std::optional<std::string> query_text(const std::filesystem::path& db, const std::string& sql);
// The first column of every row of `sql`, as text (NULL as ""), read like
// count_rows; throws std::runtime_error when the database cannot be read.
std::vector<std::string> query_column(const std::filesystem::path& db, const std::string& sql);

// Polls `done` every 20 ms until it is true or `limit` has passed; its last answer.
bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds limit = std::chrono::seconds(30));
// The spools (util/sealed_spool.hpp) `daemon` has open: its descriptors of
// unlinked files in the database's directory (a spool is an O_TMPFILE
// there, whose link in /proc reads "<dir>/#<inode> (deleted)"), as paths
// under /proc/PID/fd.
std::vector<std::filesystem::path> open_spools(Daemon& daemon);

// Runs a shell command, returns its exit status.
int shell(const std::string& command);

}  // namespace referrald::test
