// The development target: each delivery becomes a JSON file in a directory,
// written to a temporary name, made durable and renamed into place, mode
// 0600. A repeat of the same delivery replaces its own file, so a retry
// never doubles. Deliveries sent while a write is under way wait for the
// next one and are written together, with one data barrier and one
// directory fsync for all of them (replace_files). What the file holds and
// the outcomes: docs/channels.md#spool.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "dispatch/adapter.hpp"

namespace referrald {

class SpoolAdapter final : public Adapter {
 public:
  SpoolAdapter(const TargetConfig& target, boost::asio::any_io_executor blocking);
  boost::asio::awaitable<Outcome> send(const Delivery& delivery) override;

  // Writes the files of these deliveries now, together (blocking); an
  // outcome for each, in order. Each identity at most once. For tests:
  // send() writes through its queue's batches.
  std::vector<Outcome> write(const std::vector<const Delivery*>& deliveries) const;

  // The file's text for a delivery.
  static std::string render(const Delivery& delivery);

 private:
  struct Queue;
  std::filesystem::path directory_;
  boost::asio::any_io_executor blocking_;
  std::shared_ptr<Queue> queue_;
};

}  // namespace referrald
