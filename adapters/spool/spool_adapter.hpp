// The development target: each delivery becomes a JSON file in a directory,
// written to a temporary name, fsynced and renamed into place, mode 0600. A
// repeat of the same delivery replaces its own file, so a retry never doubles.
// What the file holds and the outcomes: docs/channels.md#spool.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <filesystem>

#include "config/config.hpp"
#include "dispatch/adapter.hpp"

namespace referrald {

class SpoolAdapter final : public Adapter {
 public:
  SpoolAdapter(const TargetConfig& target, boost::asio::any_io_executor blocking);
  boost::asio::awaitable<Outcome> send(const Delivery& delivery) override;

  // Writes the file now (blocking); for tests and for send().
  Outcome write(const Delivery& delivery) const;

 private:
  std::filesystem::path directory_;
  boost::asio::any_io_executor blocking_;
};

}  // namespace referrald
