#include "util/sd_notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace referrald {

SystemdNotifier::SystemdNotifier() {
  const char* socket_path = std::getenv("NOTIFY_SOCKET");
  if (socket_path != nullptr && socket_path[0] != '\0') {
    address_ = socket_path;
    if (address_[0] == '@') address_[0] = '\0';  // abstract namespace
    if (address_.size() < sizeof(sockaddr_un::sun_path)) {
      fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    }
  }
  const char* usec = std::getenv("WATCHDOG_USEC");
  const char* pid = std::getenv("WATCHDOG_PID");
  const bool for_us = pid == nullptr || std::strtol(pid, nullptr, 10) == ::getpid();
  if (usec != nullptr && for_us) {
    const long long value = std::strtoll(usec, nullptr, 10);
    // Well under half the timeout, as sd_watchdog_enabled(3) advises.
    if (value > 0) watchdog_interval_ = std::chrono::microseconds(value / 3);
  }
}

SystemdNotifier::~SystemdNotifier() {
  if (fd_ >= 0) ::close(fd_);
}

bool SystemdNotifier::notify(std::string_view message) const {
  if (fd_ < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, address_.data(), address_.size());
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address_.size());
  const auto sent =
      ::sendto(fd_, message.data(), message.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&addr), len);
  return sent == static_cast<ssize_t>(message.size());
}

bool SystemdNotifier::ready(std::string_view status_text) const {
  return notify("READY=1\nSTATUS=" + std::string(status_text));
}

bool SystemdNotifier::reloading() const {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  const long long usec = static_cast<long long>(ts.tv_sec) * 1000000LL + ts.tv_nsec / 1000;
  return notify("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec));
}

bool SystemdNotifier::stopping() const { return notify("STOPPING=1"); }
bool SystemdNotifier::watchdog() const { return notify("WATCHDOG=1"); }
bool SystemdNotifier::status(std::string_view text) const { return notify("STATUS=" + std::string(text)); }

}  // namespace referrald
