// The systemd notification protocol (sd_notify(3)) without libsystemd: one
// AF_UNIX datagram of KEY=VALUE lines to $NOTIFY_SOCKET.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace referrald {

class SystemdNotifier {
 public:
  // Reads NOTIFY_SOCKET and WATCHDOG_USEC/WATCHDOG_PID from the environment.
  SystemdNotifier();
  ~SystemdNotifier();
  SystemdNotifier(const SystemdNotifier&) = delete;
  SystemdNotifier& operator=(const SystemdNotifier&) = delete;

  bool enabled() const { return fd_ >= 0; }
  // Sends the message; false if there is no socket or the send failed.
  bool notify(std::string_view message) const;

  bool ready(std::string_view status) const;
  bool reloading() const;  // RELOADING=1 with MONOTONIC_USEC
  bool stopping() const;
  bool watchdog() const;
  bool status(std::string_view text) const;

  // How often to send WATCHDOG=1 (a third of WATCHDOG_USEC), when systemd asks for it.
  std::optional<std::chrono::microseconds> watchdog_interval() const { return watchdog_interval_; }

 private:
  int fd_ = -1;
  std::string address_;
  std::optional<std::chrono::microseconds> watchdog_interval_;
};

}  // namespace referrald
