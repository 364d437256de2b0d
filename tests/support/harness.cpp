#include "support/harness.hpp"
#include "util/strings.hpp"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace referrald::test {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

TempDir::TempDir() {
  std::string pattern = (fs::temp_directory_path() / "referrald-test-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

void write_file(const fs::path& file, const std::string& text) {
  fs::create_directories(file.parent_path());
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + file.string());
}

std::string database_bytes(const fs::path& db) {
  std::string bytes;
  for (const char* suffix : {"", "-wal", "-shm"}) {
    const fs::path file = db.string() + suffix;
    if (fs::exists(file)) bytes += read_file(file);
  }
  return bytes;
}

std::string read_file(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

namespace {

// Whether `port` on 127.0.0.1 can be bound now.
bool can_bind(unsigned short port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

// The first port of the kernel's range for the source ports of outgoing
// connections (ip_local_port_range).
int first_local_port() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 0;
  return in >> low && low > 11000 ? low : 32768;
}

}  // namespace

// Below the kernel's range for outgoing connections' source ports: a port
// that bind(0) hands out comes from that range, and between the test's
// choice and the peer's bind any outgoing connection (the daemon's to a
// peer, a passive-mode data connection) could take it, which the fault
// proxy once met as "address already in use". Picked at random, so that
// tests run in parallel do not meet either.
unsigned short free_port() {
  static std::mutex mutex;
  static std::mt19937 random(std::random_device{}());
  static const int below = first_local_port();
  std::lock_guard lock(mutex);
  std::uniform_int_distribution<int> pick(10000, below - 1);
  for (int i = 0; i < 1000; ++i) {
    const auto port = static_cast<unsigned short>(pick(random));
    if (can_bind(port)) return port;
  }
  throw std::runtime_error("cannot find a free port below " + std::to_string(below));
}

bool wait_for_port(unsigned short port, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    if (ok) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

fs::path source_dir() { return REFERRALD_SOURCE_DIR; }
fs::path binary_dir() { return REFERRALD_BINARY_DIR; }
fs::path referrald_binary() {
  if (const char* chosen = std::getenv("REFERRALD_BINARY"); chosen != nullptr && *chosen != '\0') return chosen;
  return binary_dir() / "daemon" / "referrald";
}

Process::Process(std::vector<std::string> argv, fs::path log_file, std::map<std::string, std::string> extra_env,
                 const std::function<void()>& in_child)
    : log_file_(std::move(log_file)) {
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::setpgid(0, 0);
    if (in_child) in_child();
    const int fd = ::open(log_file_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::close(fd);
    }
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, 0);
    for (const auto& [k, v] : extra_env) ::setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::setpgid(pid, pid);
  pid_ = pid;
}

Process::~Process() {
  if (running()) kill9();
}

bool Process::running() {
  if (status_) return false;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }
  return true;
}

void Process::signal(int signo) {
  if (!status_) ::kill(pid_, signo);
}

std::optional<int> Process::wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(10ms);
  }
  return status_;
}

int Process::stop(std::chrono::milliseconds timeout) {
  signal(SIGTERM);
  if (auto status = wait(timeout)) return *status;
  kill9();
  return status_.value_or(-1);
}

void Process::kill9() {
  if (status_) return;
  ::kill(-pid_, SIGKILL);
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string Process::log() const { return read_file(log_file_); }

std::optional<std::string> sanitizer_report(const std::string& log) {
  // The banners of ThreadSanitizer, AddressSanitizer/LeakSanitizer and
  // UndefinedBehaviorSanitizer (which prints "runtime error:" per finding).
  for (const char* banner :
       {"WARNING: ThreadSanitizer:", "ERROR: AddressSanitizer:", "ERROR: LeakSanitizer:", ": runtime error: "}) {
    const auto at = log.find(banner);
    if (at == std::string::npos) continue;
    const auto from = log.rfind('\n', at);
    const auto start = from == std::string::npos ? 0 : from + 1;
    return log.substr(start, 16000);
  }
  return std::nullopt;
}

namespace {

size_t collect(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

size_t collect_header(char* data, size_t size, size_t n, void* out) {
  std::string line(data, size * n);
  const auto colon = line.find(':');
  if (colon != std::string::npos) {
    const std::string name = lower(line.substr(0, colon));
    std::string value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ')) value.erase(0, 1);
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n')) value.pop_back();
    (*static_cast<std::map<std::string, std::string>*>(out))[name] = value;
  }
  return size * n;
}

struct CurlGlobal {
  CurlGlobal() { curl_global_init(CURL_GLOBAL_DEFAULT); }
  ~CurlGlobal() { curl_global_cleanup(); }
};

}  // namespace

HttpClient::HttpClient() {
  static CurlGlobal global;
  curl_ = curl_easy_init();
  if (curl_ == nullptr) throw std::runtime_error("curl_easy_init failed");
}

HttpClient::~HttpClient() { curl_easy_cleanup(static_cast<CURL*>(curl_)); }

HttpResult HttpClient::send(const HttpRequest& request) {
  auto* curl = static_cast<CURL*>(curl_);
  // Options from the previous request go; the connection cache stays.
  curl_easy_reset(curl);
  HttpResult result;
  curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(request.timeout.count()));
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &result.body);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, collect_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &result.headers);
  if (request.method == "HEAD") curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  if (request.body) {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request.body->data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body->size()));
  }
  if (!request.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, request.ca_file.c_str());
  if (!request.source_address.empty()) {
    curl_easy_setopt(curl, CURLOPT_INTERFACE, ("host!" + request.source_address).c_str());
  }
  curl_slist* headers = nullptr;
  for (const auto& h : request.headers) headers = curl_slist_append(headers, h.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  const CURLcode rc = curl_easy_perform(curl);
  curl_slist_free_all(headers);
  if (rc != CURLE_OK) {
    result.error = curl_easy_strerror(rc);
    return result;
  }
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &result.status);
  return result;
}

HttpResult http(const HttpRequest& request) { return HttpClient().send(request); }

RawClient::RawClient(unsigned short port, const std::string& source, int receive_buffer) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  // Set before connect: the window is negotiated in the handshake.
  if (receive_buffer > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  if (!source.empty()) {
    sockaddr_in local{};
    local.sin_family = AF_INET;
    if (::inet_pton(AF_INET, source.c_str(), &local.sin_addr) != 1 ||
        ::bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) {
      const int err = errno;
      ::close(fd_);
      throw std::runtime_error("cannot bind to " + source + ": " + std::strerror(err));
    }
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    ::close(fd_);
    throw std::runtime_error("cannot connect to port " + std::to_string(port) + ": " + std::strerror(err));
  }
}

RawClient::~RawClient() { ::close(fd_); }

bool RawClient::send(std::string_view bytes) { return send_some(bytes).has_value(); }

std::optional<std::size_t> RawClient::send_some(std::string_view bytes) {
  if (closed_) return std::nullopt;
  const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) closed_ = true;
  if (closed_) return std::nullopt;
  return n < 0 ? 0 : static_cast<std::size_t>(n);
}

bool RawClient::peer_closed() {
  char buf[16384];
  while (!closed_) {
    const ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      received_.append(buf, static_cast<std::size_t>(n));
    } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      closed_ = true;
    } else {
      break;
    }
  }
  return closed_;
}

bool RawClient::wait_closed(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!peer_closed()) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN | POLLRDHUP, 0};
    ::poll(&p, 1, static_cast<int>(left.count()));
  }
  return true;
}

int status_of(std::string_view response) {
  // "HTTP/1.1 404 ..."
  if (response.size() < 12 || !response.starts_with("HTTP/1.")) return 0;
  const auto code = response.substr(9, 3);
  if (!std::all_of(code.begin(), code.end(), [](char c) { return c >= '0' && c <= '9'; })) return 0;
  return std::stoi(std::string(code));
}

std::string raw_request(unsigned short port, const std::string& request, std::chrono::milliseconds timeout) {
  RawClient client(port);
  client.send(request);
  client.wait_closed(timeout);
  return client.received();
}

std::size_t open_fds(pid_t pid) {
  std::size_t n = 0;
  std::error_code ec;
  for (fs::directory_iterator it("/proc/" + std::to_string(pid) + "/fd", ec), end; !ec && it != end; it.increment(ec)) {
    ++n;
  }
  return n;
}

long vm_rss_kb(pid_t pid) {
  std::istringstream in(read_file("/proc/" + std::to_string(pid) + "/status"));
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("VmRSS:")) return std::stol(line.substr(6));
  }
  return -1;
}

std::string openssl_sha256_hex(const std::string& text) {
  TempDir tmp;
  write_file(tmp / "in", text);
  shell("openssl dgst -sha256 -r < " + (tmp / "in").string() + " | cut -d' ' -f1 > " + (tmp / "h").string());
  auto h = read_file(tmp / "h");
  while (!h.empty() && (h.back() == '\n' || h.back() == ' ')) h.pop_back();
  return h;
}

std::string openssl_base64(const std::string& bytes) {
  TempDir tmp;
  write_file(tmp / "in", bytes);
  EXPECT_EQ(shell("openssl base64 -A -in " + (tmp / "in").string() + " -out " + (tmp / "out").string()), 0);
  return read_file(tmp / "out");
}

Daemon::Daemon(Options options) : options_(std::move(options)), port_(free_port()) {
  database_ = options_.database.empty() ? dir_ / "var" / "referrald.db" : options_.database;
  fs::create_directories(database_.parent_path());
  if (options_.tls) {
    fs::create_directories(dir_ / "tls");
    const std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -keyout " + (dir_ / "tls" / "key.pem").string() +
                            " -out " + ca_file().string() +
                            " -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1"
                            " >/dev/null 2>&1";
    if (shell(cmd) != 0) throw std::runtime_error("openssl could not make a test certificate");
  }
  std::string config;
  config += "[http]\nlisten = \"127.0.0.1:" + std::to_string(port_) + "\"\n";
  config += "api_keys = [\"sha256:" + openssl_sha256_hex(api_token) + "\"]\n";
  if (options_.tls) {
    config += "tls_certificate = \"tls/cert.pem\"\ntls_private_key = \"tls/key.pem\"\n";
  }
  config += options_.extra_http;
  config += "\n[storage]\n";
  config += options_.storage.empty() ? "database = \"" + database_.string() + "\"\n" : options_.storage;
  if (options_.encryption) {
    write_key_file(key_file(), new_key_line("test-1"));
    config += "encryption_keys = \"" + key_file().filename().string() + "\"\n";
  }
  config += "\n[rules]\nfile = \"" + (source_dir() / "config" / "rules.toml").string() + "\"\n";
  config += "\n[paths]\nschemas = \"" + (source_dir() / "schemas").string() + "\"\nweb = \"" +
            (options_.web.empty() ? source_dir() / "web" : options_.web).string() + "\"\n";
  config += "\n[office]\nphone = \"1-888-226-4343\"\nfax = \"901-595-4011\"\npager = \"1-800-349-4334\"\n";
  if (options_.with_default_targets) {
    config += R"(
[[target]]
name = "office-email"
type = "spool"
directory = "spool/office-email"

[[target]]
name = "office-pager"
type = "spool"
directory = "spool/office-pager"

[[route]]
notify = ["office-email"]

[[route]]
when = { urgency = ["urgent", "emergent"] }
notify = ["office-pager"]
)";
  }
  config += options_.extra_config;
  write_file(config_file(), config);
}

Daemon::~Daemon() {
  if (process_) process_->kill9();
  // A sanitizer build of referrald reports a data race, a memory error or
  // undefined behaviour on its stderr and may carry on: the report, not the
  // exit status, is what fails the test.
  for (int generation = 1; generation <= generation_; ++generation) {
    const auto file = dir_ / ("daemon-" + std::to_string(generation) + ".log");
    if (auto report = sanitizer_report(read_file(file))) {
      ADD_FAILURE() << file.filename().string() << " holds a sanitizer report:\n" << *report;
    }
  }
}

std::string Daemon::base_url() const {
  return std::string(options_.tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_);
}

std::filesystem::path Daemon::log_file() const {
  const int generation = process_ && process_->running() ? generation_ : generation_ + 1;
  return dir_ / ("daemon-" + std::to_string(generation) + ".log");
}

void Daemon::launch() {
  if (process_ && process_->running()) throw std::runtime_error("daemon already running");
  const auto log = log_file();
  ++generation_;
  process_ = std::make_unique<Process>(
      std::vector<std::string>{referrald_binary().string(), "--config", config_file().string()}, log, options_.env);
}

void Daemon::start() {
  launch();
  const auto deadline = std::chrono::steady_clock::now() + 15s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!process_->running()) {
      throw std::runtime_error("referrald exited during start-up:\n" + process_->log());
    }
    HttpRequest r;
    r.url = base_url() + "/healthz";
    r.ca_file = options_.tls ? ca_file().string() : "";
    r.timeout = 1s;
    if (http(r).status == 200) return;
    std::this_thread::sleep_for(20ms);
  }
  throw std::runtime_error("referrald did not become healthy within 15 s:\n" + process_->log());
}

int Daemon::stop() { return process_ ? process_->stop() : -1; }

void Daemon::kill9() {
  if (process_) process_->kill9();
}

HttpResult Daemon::post_referral(const std::string& body, std::vector<std::string> extra_headers) {
  HttpRequest r;
  r.method = "POST";
  r.url = base_url() + "/api/v1/referrals";
  r.headers = {"Authorization: Bearer " + std::string(api_token)};
  bool content_type = false;
  for (auto& h : extra_headers) {
    if (h.rfind("Content-Type:", 0) == 0) content_type = true;
    r.headers.push_back(std::move(h));
  }
  if (!content_type) r.headers.push_back("Content-Type: application/json");
  r.body = body;
  r.ca_file = options_.tls ? ca_file().string() : "";
  return http(r);
}

HttpResult Daemon::get(const std::string& path, bool authorized) {
  HttpRequest r;
  r.url = base_url() + path;
  if (authorized) r.headers = {"Authorization: Bearer " + std::string(api_token)};
  r.ca_file = options_.tls ? ca_file().string() : "";
  return http(r);
}

std::string url_encode(std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += ch;
    } else if (c == ' ') {
      out += '+';
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string encode(const Fields& fields) {
  std::string out;
  for (const auto& [k, v] : fields) out += (out.empty() ? "" : "&") + url_encode(k) + "=" + url_encode(v);
  return out;
}

void set_field(Fields& fields, const std::string& name, const std::string& value) {
  for (auto& [k, v] : fields) {
    if (k == name) {
      v = value;
      return;
    }
  }
  fields.emplace_back(name, value);
}

std::string hidden_value(const std::string& page, const std::string& name) {
  const std::string marker = "name=\"" + name + "\" value=\"";
  const auto at = page.find(marker);
  if (at == std::string::npos) return {};
  const auto start = at + marker.size();
  return page.substr(start, page.find('"', start) - start);
}

std::string Browser::ca() const { return fs::exists(daemon.ca_file()) ? daemon.ca_file().string() : std::string(); }

HttpResult Browser::open_form() {
  HttpRequest r;
  r.url = daemon.base_url() + "/";
  r.ca_file = ca();
  if (!cookie.empty()) r.headers.push_back("Cookie: " + cookie);
  page = http(r);
  if (const auto it = page.headers.find("set-cookie"); it != page.headers.end()) {
    cookie = it->second.substr(0, it->second.find(';'));
  }
  csrf = hidden_value(page.body, "csrf_token");
  submission = hidden_value(page.body, "submission_token");
  return page;
}

HttpResult Browser::post(const Fields& fields, std::vector<std::string> headers, bool with_tokens) {
  Fields all;
  if (with_tokens) {
    all.emplace_back("csrf_token", csrf);
    all.emplace_back("submission_token", submission);
  }
  all.insert(all.end(), fields.begin(), fields.end());
  return post_raw(encode(all), std::move(headers));
}

HttpResult Browser::post_raw(const std::string& body, std::vector<std::string> headers,
                             const std::string& content_type) {
  HttpRequest r;
  r.method = "POST";
  r.url = daemon.base_url() + "/referrals";
  r.ca_file = ca();
  r.headers = std::move(headers);
  r.headers.push_back("Content-Type: " + content_type);
  if (!cookie.empty()) r.headers.push_back("Cookie: " + cookie);
  r.body = body;
  return http(r);
}

// A complete referral as a coordinator would type it (ASPS, from Jonesboro, AR).
Fields valid_fields() {
  return {
      {"patient.given_name", "Ava"},
      {"patient.family_name", "Nguyen"},
      {"patient.birth_date", "2014-03-09"},
      {"patient.sex", "female"},
      {"patient.postal_code", "72401"},
      {"patient.guardian.name", "Linh Nguyen"},
      {"patient.guardian.phone", "+1 901 555 0142"},
      {"patient.guardian.relationship", "mother"},
      {"diagnosis.name", "Alveolar soft part sarcoma"},
      {"diagnosis.code.system", "icd-o-3"},
      {"diagnosis.code.value", "9581/3"},
      {"diagnosis.diagnosed_on", "2024-10-02"},
      {"diagnosis.pathology_confirmed", "yes"},
      {"referrer.name", "Dana Whitfield"},
      {"referrer.credential", "MD"},
      {"referrer.npi", "1234567893"},
      {"referrer.organization", "Delta Pediatrics"},
      {"referrer.phone", "+1 901 555 0100"},
      {"referrer.fax", ""},
      {"referrer.email", "dwhitfield@example.org"},
      {"urgency", "routine"},
      {"notes", "MRI and pathology report available on request."},
  };
}

HttpResult Browser::get(const std::string& path) {
  HttpRequest r;
  r.url = daemon.base_url() + path;
  r.ca_file = ca();
  if (!cookie.empty()) r.headers.push_back("Cookie: " + cookie);
  return http(r);
}

nlohmann::json Daemon::stored_document(const std::string& id) const {
  const auto r = ctl({"--config", config_file().string(), "show", "--json", id});
  EXPECT_EQ(r.status, 0) << describe(r);
  if (r.status != 0) return nullptr;
  return r.parsed()["referral"]["document"];
}

std::string new_key_line(const std::string& id) {
  TempDir tmp;
  if (shell("openssl rand -hex 32 > " + (tmp / "key").string()) != 0) {
    throw std::runtime_error("openssl could not make a key");
  }
  auto hex = read_file(tmp / "key");
  while (!hex.empty() && (hex.back() == '\n' || hex.back() == ' ')) hex.pop_back();
  return id + " " + hex + "\n";
}

void write_key_file(const fs::path& file, const std::string& text) {
  write_file(file, text);
  fs::permissions(file, fs::perms::owner_read | fs::perms::owner_write);
}

nlohmann::json CtlRun::parsed() const { return nlohmann::json::parse(out); }

fs::path referralctl_binary() { return binary_dir() / "cli" / "referralctl"; }

CtlRun ctl(const std::vector<std::string>& args, const std::map<std::string, std::string>& env) {
  return run_program(referralctl_binary(), args, env);
}

CtlRun run_program(const fs::path& program, const std::vector<std::string>& args,
                   const std::map<std::string, std::string>& env) {
  TempDir io;
  const fs::path out = io / "out", err = io / "err";
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    const int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ::dup2(o, 1);
    ::dup2(e, 2);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    ::dup2(null_fd, 0);
    ::unsetenv("NO_COLOR");
    ::unsetenv("SUDO_USER");
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    std::vector<std::string> argv{program.string()};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> raw;
    for (auto& a : argv) raw.push_back(a.data());
    raw.push_back(nullptr);
    ::execv(raw[0], raw.data());
    ::_exit(127);
  }
  CtlRun r;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      ADD_FAILURE() << program.filename().string() << " did not finish within 60 s";
      break;
    }
    std::this_thread::sleep_for(5ms);
  }
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

std::string describe(const CtlRun& r) {
  return "exit " + std::to_string(r.status) + "\nstdout:\n" + r.out + "stderr:\n" + r.err;
}

std::string sample(const std::string& name) { return read_file(source_dir() / "tests" / "data" / name); }

double metric(const std::string& text, const std::string& series) {
  const auto at = ("\n" + text).find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 1));
}

std::string large_pdf(std::size_t size) {
  std::string content = "BT /F1 24 Tf 72 720 Td (Records) Tj ET\n";
  while (content.size() < size) content += "% line " + std::to_string(content.size()) + " of the scan\n";
  const std::vector<std::string> objects{
      "<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
      "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
      "/Resources << /Font << /F1 5 0 R >> >> >>",
      "<< /Length " + std::to_string(content.size()) + " >>\nstream\n" + content + "endstream",
      "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"};
  std::string out = "%PDF-1.4\n";
  std::vector<std::size_t> offsets;
  for (std::size_t i = 0; i < objects.size(); ++i) {
    offsets.push_back(out.size());
    out += std::to_string(i + 1) + " 0 obj\n" + objects[i] + "\nendobj\n";
  }
  const std::size_t xref = out.size();
  out += "xref\n0 " + std::to_string(objects.size() + 1) + "\n0000000000 65535 f \n";
  for (const auto offset : offsets) {
    char line[21];
    std::snprintf(line, sizeof line, "%010zu 00000 n \n", offset);
    out += line;
  }
  return out + "trailer\n<< /Size " + std::to_string(objects.size() + 1) + " /Root 1 0 R >>\nstartxref\n" +
         std::to_string(xref) + "\n%%EOF\n";
}

std::string attachment_fixture(const std::string& name) {
  return read_file(source_dir() / "tests" / "data" / "attachments" / name);
}

nlohmann::json attachment_item(const std::string& title, const std::string& bytes, const std::string& declared) {
  return {{"title", title}, {"content_type", declared}, {"data", openssl_base64(bytes)}};
}

std::string referral_json(const std::string& given_name, const std::string& birth_date, const std::string& diagnosis,
                          const std::string& urgency) {
  return R"({"patient":{"given_name":")" + given_name + R"(","family_name":"Testpatient","birth_date":")" + birth_date +
         R"(","sex":"female","postal_code":"72401"},"diagnosis":{"name":")" + diagnosis +
         R"("},"referrer":{"name":"Dana Whitfield","credential":"MD","npi":"1234567893",)"
         R"("organization":"Delta Pediatrics","phone":"+1 870 555 0100","email":"dwhitfield@example.org"},)"
         R"("urgency":")" +
         urgency + R"("})";
}

namespace {

// One statement on its own connection: its first row's first column, or
// with `changes` the rows it changed when it returns no row; -1 otherwise.
long long one_value(const fs::path& db, const std::string& sql, int open_flags, bool changes) {
  sqlite3* handle = nullptr;
  if (sqlite3_open_v2(db.c_str(), &handle, open_flags, nullptr) != SQLITE_OK) {
    sqlite3_close(handle);
    return -1;
  }
  sqlite3_busy_timeout(handle, 5000);
  sqlite3_stmt* stmt = nullptr;
  long long n = -1;
  if (sqlite3_prepare_v2(handle, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK) {
    const int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) n = sqlite3_column_int64(stmt, 0);
    if (rc == SQLITE_DONE && changes) n = sqlite3_changes(handle);
  }
  sqlite3_finalize(stmt);
  sqlite3_close(handle);
  return n;
}

}  // namespace

long long count_rows(const fs::path& db, const std::string& sql) {
  return one_value(db, sql, SQLITE_OPEN_READONLY, false);
}

long long scalar(const fs::path& db, const std::string& sql) { return one_value(db, sql, SQLITE_OPEN_READWRITE, true); }

std::vector<std::filesystem::path> open_spools(Daemon& daemon) {
  std::vector<std::filesystem::path> out;
  const std::string dir = daemon.database().parent_path().string() + "/";
  std::error_code ec;
  for (const auto& fd :
       std::filesystem::directory_iterator("/proc/" + std::to_string(daemon.process()->pid()) + "/fd", ec)) {
    std::error_code lec;
    const std::string target = std::filesystem::read_symlink(fd.path(), lec).string();
    if (!lec && target.starts_with(dir) && target.ends_with(" (deleted)")) out.push_back(fd.path());
  }
  return out;
}

bool send_all(RawClient& client, std::string_view bytes) {
  // RawClient::send does not wait: what the socket did not take is offered again.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!bytes.empty() && std::chrono::steady_clock::now() < deadline) {
    const auto piece = bytes.substr(0, 4096);
    if (!client.send(piece)) return false;
    bytes.remove_prefix(piece.size());
  }
  return bytes.empty();
}

bool send_whole(RawClient& client, std::string_view bytes) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!bytes.empty() && std::chrono::steady_clock::now() < deadline) {
    const auto taken = client.send_some(bytes);
    if (!taken) return false;
    if (*taken == 0) std::this_thread::sleep_for(1ms);
    bytes.remove_prefix(*taken);
  }
  return bytes.empty();
}

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return done();
}

std::vector<std::string> query_column(const fs::path& db, const std::string& sql) {
  sqlite3* handle = nullptr;
  std::vector<std::string> values;
  std::string error;
  if (sqlite3_open_v2(db.c_str(), &handle, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(handle, 5000);
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(handle, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK) {
      int rc = SQLITE_ROW;
      while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const auto* text = sqlite3_column_text(stmt, 0);
        values.emplace_back(text != nullptr ? reinterpret_cast<const char*>(text) : "");
      }
      if (rc != SQLITE_DONE) error = sqlite3_errmsg(handle);
    } else {
      error = sqlite3_errmsg(handle);
    }
    sqlite3_finalize(stmt);
  } else {
    error = "cannot open";
  }
  sqlite3_close(handle);
  if (!error.empty()) throw std::runtime_error(db.string() + ": " + sql + ": " + error);
  return values;
}

std::optional<std::string> query_text(const fs::path& db, const std::string& sql) {
  try {
    auto values = query_column(db, sql);
    if (!values.empty()) return std::move(values.front());
  } catch (const std::runtime_error&) {
    // an unreadable database reads as no value
  }
  return std::nullopt;
}

int shell(const std::string& command) {
  const int status = std::system(command.c_str());
  if (status == -1) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace referrald::test
