#include "support/peers.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <thread>

namespace referrald::test {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

void make_certificate(const fs::path& dir) {
  fs::create_directories(dir);
  const std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -keyout " + (dir / "key.pem").string() + " -out " +
                          (dir / "cert.pem").string() +
                          " -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1"
                          " >/dev/null 2>&1";
  if (shell(cmd) != 0) throw std::runtime_error("openssl could not make a test certificate");
}

std::string output_of(const std::string& command) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

// ---------------------------------------------------------------- SMTP --

MailServer::MailServer(Options options) : port_(free_port()) {
  if (options.tls) make_certificate(dir_.path());
  std::vector<std::string> argv{python3_path,       (source_dir() / "tests" / "peers" / "smtp_server.py").string(),
                                "--port",           std::to_string(port_),
                                "--maildir",        maildir().string(),
                                "--envelopes",      envelopes().string(),
                                "--user",           "referrald",
                                "--password",       "s3cret",
                                "--tempfail",       std::to_string(options.tempfail),
                                "--tempfail-while", (dir_ / "tempfail-all").string(),
                                "--slow-while",     (dir_ / "slow-all").string()};
  if (options.tls) {
    argv.insert(argv.end(), {"--cert", (dir_ / "cert.pem").string(), "--key", (dir_ / "key.pem").string()});
  }
  process_ = std::make_unique<Process>(argv, dir_ / "server.log");
  const auto deadline = std::chrono::steady_clock::now() + 15s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!process_->running()) throw std::runtime_error("smtp_server.py exited:\n" + process_->log());
    if (process_->log().find("READY") != std::string::npos) return;
    std::this_thread::sleep_for(20ms);
  }
  throw std::runtime_error("smtp_server.py did not become ready within 15 s:\n" + process_->log());
}

MailServer::~MailServer() { process_->kill9(); }

std::string MailServer::log() const { return process_->log(); }

std::vector<fs::path> MailServer::messages() const {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(maildir() / "new", ec)) out.push_back(e.path());
  return out;
}

std::map<std::string, int> MailServer::message_ids() const {
  std::map<std::string, int> copies;
  for (const auto& mail : messages()) ++copies[message_id_of(mail)];
  return copies;
}

std::string smtp_target(const MailServer& server, const fs::path& secrets, const SmtpTarget& target) {
  fs::create_directories(secrets);
  write_file(secrets / "smtp-password", target.password);
  std::string to;
  for (const auto& a : target.to) to += (to.empty() ? "\"" : ", \"") + a + "\"";
  return "\n[[target]]\nname = \"" + target.name +
         "\"\ntype = \"smtp\"\n"
         "url = \"smtp://127.0.0.1:" +
         std::to_string(server.port()) +
         "\"\n"
         "ca_file = \"" +
         (target.ca_file.empty() ? server.ca_file() : target.ca_file).string() +
         "\"\n"
         "username = \"referrald\"\n"
         "password_file = \"" +
         (secrets / "smtp-password").string() +
         "\"\n"
         "from = \"Referral Office <referrald@hospital.example>\"\n"
         "to = [" +
         to +
         "]\n"
         "timeout = \"10s\"\n";
}

// ------------------------------------------------------------- HylaFAX --

void MailServer::refuse_temporarily(bool on) {
  if (on) {
    write_file(dir_ / "tempfail-all", "");
  } else {
    fs::remove(dir_ / "tempfail-all");
  }
}

void MailServer::confirm_slowly(bool on) {
  if (on) {
    write_file(dir_ / "slow-all", "");
  } else {
    fs::remove(dir_ / "slow-all");
  }
}

std::string message_id_of(const fs::path& mail) {
  const std::string text = read_file(mail);
  const auto at = text.find("\nMessage-ID: <");
  if (at == std::string::npos) return {};
  const auto start = at + std::string("\nMessage-ID: <").size();
  return text.substr(start, text.find('>', start) - start);
}

nlohmann::json mail_parts(const fs::path& mail, const fs::path& work) {
  write_file(work / "parts.py", R"PY(
import email, email.policy, hashlib, json, sys
msg = email.message_from_binary_file(open(sys.argv[1], 'rb'), policy=email.policy.default)
parts = []
for part in msg.walk():
    if part.is_multipart():
        continue
    body = part.get_payload(decode=True)
    parts.append({'type': part.get_content_type(), 'filename': part.get_filename(),
                  'sha256': hashlib.sha256(body).hexdigest(), 'text': part.get_content() if part.get_content_maintype() == 'text' else ''})
print(json.dumps({'defects': len(msg.defects), 'parts': parts}))
)PY");
  return nlohmann::json::parse(
      output_of(std::string(python3_path) + " " + (work / "parts.py").string() + " " + mail.string()));
}

std::string QueuedJob::get(const std::string& key) const {
  const auto it = fields.find(key);
  return it == fields.end() ? std::string() : it->second;
}

HylafaxServer::HylafaxServer() : spool_(dir_ / "spool") {
  // faxq and hfaxd run as uucp: they must reach the spool inside our 0700 temp dir.
  fs::permissions(dir_.path(), fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  const auto script = source_dir() / "tests" / "peers" / "hylafax-spool.sh";
  if (shell(script.string() + " prepare " + spool_.string() + " >" + (dir_ / "prepare.log").string() + " 2>&1") != 0) {
    throw std::runtime_error("hylafax-spool.sh prepare failed:\n" + read_file(dir_ / "prepare.log"));
  }
  fax_port_ = free_port();
  do snpp_port_ = free_port();
  while (snpp_port_ == fax_port_);
}

void HylafaxServer::start() {
  faxq_ = std::make_unique<Process>(std::vector<std::string>{"/usr/sbin/faxq", "-D", "-q", spool_.string()},
                                    dir_ / "faxq.log");
  for (int i = 0; i < 500 && !fs::is_fifo(spool_ / "FIFO"); ++i) std::this_thread::sleep_for(10ms);
  if (!fs::is_fifo(spool_ / "FIFO")) throw std::runtime_error("faxq did not create its FIFO");
  // hfaxd binds its SNPP socket without SO_REUSEADDR: a fresh port for every start.
  hfaxd_ = std::make_unique<Process>(
      std::vector<std::string>{"/usr/sbin/hfaxd", "-d", "-q", spool_.string(), "-l", "127.0.0.1", "-i",
                               std::to_string(fax_port_), "-s", std::to_string(snpp_port_)},
      dir_ / "hfaxd.log");
  if (!wait_for_port(fax_port_, 10s) || !wait_for_port(snpp_port_, 10s)) {
    throw std::runtime_error("hfaxd is not listening on " + std::to_string(fax_port_) + " and " +
                             std::to_string(snpp_port_));
  }
}

std::vector<QueuedJob> HylafaxServer::jobs() const {
  std::vector<QueuedJob> out;
  // faxq moves a finished job from sendq to doneq: one that moves between
  // the two listings is seen in both and counted once.
  std::set<std::string> seen;
  for (const char* queue : {"sendq", "doneq"}) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(spool_ / queue, ec)) {
      const auto name = entry.path().filename().string();
      if (name.size() < 2 || name[0] != 'q' || name.find_first_not_of("0123456789", 1) != std::string::npos) {
        continue;
      }
      QueuedJob job;
      job.file = entry.path();
      std::istringstream in(read_file(entry.path()));
      for (std::string line; std::getline(in, line);) {
        const auto colon = line.find(':');
        if (colon != std::string::npos) job.fields.emplace(line.substr(0, colon), line.substr(colon + 1));
      }
      if (!seen.insert(job.get("jobid")).second) continue;
      out.push_back(std::move(job));
    }
  }
  return out;
}

std::vector<QueuedJob> HylafaxServer::jobs_where(const std::string& key, const std::string& value) const {
  std::vector<QueuedJob> out;
  for (auto& job : jobs()) {
    if (job.get(key) == value) out.push_back(std::move(job));
  }
  return out;
}

void HylafaxServer::shut_down(bool on) {
  const auto file = spool_ / "etc" / "shutdown";
  if (!on) {
    fs::remove(file);
    return;
  }
  // A shutdown time long past, deny and disconnect at once (HHMM 0000).
  write_file(file, "2020 01 01 00 00 0000 0000\nreferral office test: server shut down\n");
  fs::permissions(file, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                            fs::perms::others_read);  // hfaxd runs as uucp
}

FaultProxy::FaultProxy(unsigned short upstream) : port_(free_port()) {
  do control_port_ = free_port();
  while (control_port_ == port_);
  process_ = std::make_unique<Process>(
      std::vector<std::string>{python3_path, (source_dir() / "tests" / "peers" / "fault_proxy.py").string(), "--port",
                               std::to_string(port_), "--upstream", std::to_string(upstream), "--control",
                               std::to_string(control_port_)},
      dir_ / "proxy.log");
  const auto deadline = std::chrono::steady_clock::now() + 15s;
  while (process_->log().find("READY") == std::string::npos) {
    if (!process_->running() || std::chrono::steady_clock::now() > deadline) {
      throw std::runtime_error("fault_proxy.py did not become ready:\n" + process_->log());
    }
    std::this_thread::sleep_for(20ms);
  }
}

FaultProxy::~FaultProxy() { process_->kill9(); }

std::string FaultProxy::command(const std::string& line) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  timeval tv{5, 0};  // the proxy answers at once; a hang here is a broken proxy
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(control_port_);
  std::string answer;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string out = line + "\n";
    if (::write(fd, out.data(), out.size()) == static_cast<ssize_t>(out.size())) {
      char c = 0;
      while (::read(fd, &c, 1) == 1 && c != '\n') answer += c;
    }
  }
  ::close(fd);
  if (answer.empty() || answer.rfind("error", 0) == 0) {
    throw std::runtime_error("fault_proxy.py refused \"" + line + "\": " + answer + "\n" + process_->log());
  }
  return answer;
}

}  // namespace referrald::test
